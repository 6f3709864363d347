"""Shared helpers for the Helm chart tests: find helm, render the chart, check what it renders.

helm is found at $KWS_HELM, else at .cache/bin/helm (scripts/install_helm.sh puts it there).
Without helm the tests skip, except under CI=true, where they fail (see conftest.py).

Core objects (Deployment, ServiceAccount, Secret, PodDisruptionBudget, Service, and the Job
inside a ScaledJob) are checked against the Kubernetes schemas by kubernetes-validate, which
ships its schemas and needs no network. KEDA objects are checked field by field here, and
against KEDA's own CRD schemas by keda_crds.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests import servers

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "worker-chart"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
K8S_VERSION = "1.33"
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/my-service"
# The seed README's command, with $QUEUE_URL filled in.
SEED_ARGS = [
    "--set",
    "image.repository=my-service",
    "--set",
    f"queues.input={QUEUE}",
    "--set",
    "resources.limits.nvidia.com/gpu=1",
]
BASE = ["--set", "image.repository=my-service", "--set", f"queues.input={QUEUE}"]
GPU = "nvidia.com/gpu"
KEDA_API = "keda.sh/v1alpha1"
# Every metadata key the KEDA aws-sqs-queue scaler understands.
SQS_TRIGGER_KEYS = {
    "queueURL",
    "queueURLFromEnv",
    "queueLength",
    "activationQueueLength",
    "awsRegion",
    "awsEndpoint",
    "identityOwner",
    "scaleOnInFlight",
    "scaleOnDelayed",
}
CORE_KINDS = {"Deployment", "ServiceAccount", "Secret", "PodDisruptionBudget", "Service"}


def find_helm() -> str | None:
    candidate = os.environ.get("KWS_HELM") or str(ROOT / ".cache" / "bin" / "helm")
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    return shutil.which(candidate) if os.environ.get("KWS_HELM") else None


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


class Rendered:
    """The documents of one `helm template`, by kind."""

    def __init__(self, text: str) -> None:
        self.docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(text) if d]

    def kinds(self) -> set[str]:
        return {d["kind"] for d in self.docs}

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}: {sorted(self.kinds())}"
        return found[0]

    def pod_spec(self) -> dict[str, Any]:
        return self.pod_template()["spec"]

    def pod_template(self) -> dict[str, Any]:
        if "ScaledJob" in self.kinds():
            return self.one("ScaledJob")["spec"]["jobTargetRef"]["template"]
        return self.one("Deployment")["spec"]["template"]

    def container(self) -> dict[str, Any]:
        containers = self.pod_spec()["containers"]
        assert [c["name"] for c in containers] == ["worker"]
        return containers[0]

    def env(self) -> dict[str, Any]:
        """Container env as name -> value (or the valueFrom dict)."""
        out: dict[str, Any] = {}
        for item in self.container()["env"]:
            assert item["name"] not in out, f"duplicate env {item['name']}"
            out[item["name"]] = item.get("value", item.get("valueFrom"))
        return out


def render(helm: str, *args: str, release: str = "my-service") -> Rendered:
    proc = run_helm(helm, "template", release, str(CHART), *args)
    assert proc.returncode == 0, proc.stderr
    return Rendered(proc.stdout)


def render_error(helm: str, *args: str) -> str:
    proc = run_helm(helm, "template", "my-service", str(CHART), *args)
    assert proc.returncode != 0, f"helm template should have failed for {args}"
    return proc.stderr


def validate_core(rendered: Rendered) -> None:
    """Check core objects against the Kubernetes OpenAPI schemas (strict: no unknown fields)."""
    kv = servers.require_module("kubernetes_validate")
    checked = 0
    for doc in rendered.docs:
        if doc["kind"] in CORE_KINDS:
            kv.validate(doc, K8S_VERSION, strict=True)
            checked += 1
        elif doc["kind"] == "ScaledJob":
            job = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": doc["metadata"]["name"]},
                "spec": doc["spec"]["jobTargetRef"],
            }
            kv.validate(job, K8S_VERSION, strict=True)
            checked += 1
    assert checked


def check_keda(rendered: Rendered, queue_url: str = QUEUE) -> dict[str, Any]:
    """Field checks for ScaledObject / ScaledJob / TriggerAuthentication; returns the trigger."""
    scalers = rendered.all("ScaledObject") + rendered.all("ScaledJob")
    assert len(scalers) == 1
    scaler = scalers[0]
    spec = scaler["spec"]
    assert scaler["apiVersion"] == KEDA_API
    if scaler["kind"] == "ScaledObject":
        target = spec["scaleTargetRef"]
        assert target["name"] == rendered.one("Deployment")["metadata"]["name"]
        assert target.get("kind", "Deployment") == "Deployment"
        assert isinstance(spec["cooldownPeriod"], int)
    else:
        assert "Deployment" not in rendered.kinds()
        assert spec["jobTargetRef"]["template"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}
    for key in ("minReplicaCount", "maxReplicaCount", "pollingInterval"):
        assert isinstance(spec[key], int), key
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    meta = trigger["metadata"]
    assert set(meta) <= SQS_TRIGGER_KEYS, set(meta) - SQS_TRIGGER_KEYS
    assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values must be strings"
    assert meta["queueURL"] == queue_url
    assert int(meta["queueLength"]) >= 1
    assert int(meta["activationQueueLength"]) >= 0
    assert meta["awsRegion"]
    assert meta["scaleOnInFlight"] in {"true", "false"}
    # KEDA >= 2.13: the identity is a TriggerAuthentication (podIdentity provider aws); the
    # trigger-level `identityOwner` is the deprecated form and must never be rendered.
    assert "identityOwner" not in meta
    (auth,) = rendered.all("TriggerAuthentication")
    assert auth["apiVersion"] == KEDA_API
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    identity = auth["spec"]["podIdentity"]
    assert identity["provider"] == "aws"
    assert not ("roleArn" in identity and "identityOwner" in identity)
    return trigger


def check_labels(rendered: Rendered, release: str = "my-service") -> None:
    for doc in rendered.docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == release
        assert labels["app.kubernetes.io/name"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"].startswith("kombu-worker-")
    if "Deployment" in rendered.kinds():
        deployment = rendered.one("Deployment")
        selector = deployment["spec"]["selector"]["matchLabels"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
