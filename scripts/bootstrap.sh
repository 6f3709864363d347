# Sourced by demo.sh and test.sh: make .venv with Python >= 3.11 on a fresh Debian machine.
# Installs Debian's python3-venv (and npm for helm, when asked) if they are missing and we are root.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"

apt_install() {
    if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "missing: $* (install it, or run as root so this script can)" >&2
        exit 1
    fi
}

ensure_venv() {
    if [[ ! -x .venv/bin/python ]]; then
        "$PYTHON" -m venv .venv 2>/dev/null || { rm -rf .venv; apt_install python3-venv; "$PYTHON" -m venv .venv; }
    fi
    pip_install --upgrade pip
}

pip_install() {
    local log
    log="$(mktemp)"
    if ! .venv/bin/python -m pip install -q "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
    grep -v "^WARNING: Location" "$log" || true
    rm -f "$log"
}
