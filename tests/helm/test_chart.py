"""The Helm chart: `helm lint` and `helm template` on several value sets, checked as YAML.

helm is found at $KWS_HELM, else at .cache/bin/helm (scripts/install_helm.sh puts it there).
Without helm these tests skip, except under CI=true, where they fail.

Core objects (Deployment, ServiceAccount, Secret, PodDisruptionBudget, Service, and the Job
inside a ScaledJob) are checked against the Kubernetes schemas by kubernetes-validate, which
ships its schemas and needs no network. KEDA objects are checked field by field here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
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


def _find_helm() -> str | None:
    candidate = os.environ.get("KWS_HELM") or str(ROOT / ".cache" / "bin" / "helm")
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    return shutil.which(candidate) if os.environ.get("KWS_HELM") else None


@pytest.fixture(scope="session")
def helm() -> str:
    path = _find_helm()
    if path is None:
        msg = "helm not found: run scripts/install_helm.sh or set KWS_HELM"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
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
    proc = _run(helm, "template", release, str(CHART), *args)
    assert proc.returncode == 0, proc.stderr
    return Rendered(proc.stdout)


def render_error(helm: str, *args: str) -> str:
    proc = _run(helm, "template", "my-service", str(CHART), *args)
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
    auths = rendered.all("TriggerAuthentication")
    if "authenticationRef" in trigger:
        assert meta.get("identityOwner") != "operator"
        (auth,) = auths
        assert auth["apiVersion"] == KEDA_API
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        identity = auth["spec"]["podIdentity"]
        assert identity["provider"] == "aws"
        assert not ("roleArn" in identity and "identityOwner" in identity)
    else:
        assert meta["identityOwner"] == "operator"
        assert auths == []
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


# ----------------------------------------------------------------------------- lint


def test_ci_values_files_exist() -> None:
    names = {p.name for p in CI_VALUES}
    assert {"default-values.yaml", "gpu-values.yaml", "scaledjob-values.yaml"} <= names


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_lint_ci_values(helm: str, values: Path) -> None:
    proc = _run(helm, "lint", "--strict", str(CHART), "--values", str(values))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lint_seed_command(helm: str) -> None:
    proc = _run(helm, "lint", "--strict", str(CHART), *SEED_ARGS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_ci_values_render_valid_objects(helm: str, values: Path) -> None:
    rendered = render(helm, "--values", str(values))
    check_labels(rendered)
    validate_core(rendered)
    settings = yaml.safe_load(values.read_text())
    if settings.get("keda", {}).get("enabled", True):
        check_keda(rendered, queue_url=settings["queues"]["input"])
    else:
        assert not rendered.kinds() & {"ScaledObject", "ScaledJob", "TriggerAuthentication"}


# ------------------------------------------------------------------- the seed command


@pytest.mark.parametrize(
    "gpu_arg",
    ["resources.limits.nvidia.com/gpu=1", r"resources.limits.nvidia\.com/gpu=1"],
    ids=["unescaped-dots", "escaped-dots"],
)
def test_seed_command_gpu_forms(helm: str, gpu_arg: str) -> None:
    rendered = render(helm, *BASE, "--set", gpu_arg)
    container = rendered.container()
    assert container["resources"] == {"limits": {GPU: 1}}
    tolerations = rendered.pod_spec()["tolerations"]
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in tolerations
    validate_core(rendered)


def test_seed_command_helm_install_dry_run(helm: str) -> None:
    """The README's `helm install` itself, client-side only (no cluster needed on helm 4)."""
    version = _run(helm, "version", "--short").stdout.strip()
    if version.startswith("v3."):
        pytest.skip(f"helm {version} --dry-run=client still asks a cluster for its version")
    proc = _run(helm, "install", "my-service", str(CHART), "--dry-run=client", "-o", "json", *SEED_ARGS)
    assert proc.returncode == 0, proc.stderr
    release = json.loads(proc.stdout)
    rendered = Rendered(release["manifest"])
    assert rendered.kinds() == {
        "ServiceAccount",
        "Deployment",
        "ScaledObject",
        "TriggerAuthentication",
    }
    container = rendered.container()
    assert container["image"] == "my-service:0.1.0"
    assert container["command"] == ["kombu-worker"]
    assert container["args"] == ["--hooks", "service.hooks:ServiceHooks"]
    assert container["resources"]["limits"] == {GPU: 1}
    env = rendered.env()
    assert env["QUEUE_URL"] == QUEUE
    assert env["BROKER_URL"] == "sqs://"
    assert env["AWS_REGION"] == "us-east-1"
    assert "DB_DSN" not in env
    assert "WORKER_CONFIG" not in env
    trigger = check_keda(rendered)
    assert trigger["metadata"]["scaleOnInFlight"] == "true"
    scaled = rendered.one("ScaledObject")["spec"]
    assert scaled["minReplicaCount"] == 0
    assert "replicas" not in rendered.one("Deployment")["spec"], "KEDA owns the replica count"
    notes = release["info"]["notes"]
    assert "my-service" in notes and "/healthz" in notes
    check_labels(rendered)
    validate_core(rendered)


def test_gpu_off(helm: str) -> None:
    rendered = render(helm, *BASE)
    container = rendered.container()
    assert GPU not in container.get("resources", {}).get("limits", {})
    assert "tolerations" not in rendered.pod_spec()


def test_gpu_with_requests_and_user_tolerations(helm: str) -> None:
    rendered = render(
        helm,
        *BASE,
        "--set",
        "resources.limits.nvidia.com/gpu=2",
        "--set",
        "resources.requests.cpu=2",
        "--set",
        "resources.limits.memory=8Gi",
        "--set-string",
        "nodeSelector.gpu=true",
        "--set-json",
        'tolerations=[{"key":"dedicated","operator":"Equal","value":"ml","effect":"NoSchedule"}]',
        "--set-json",
        'affinity={"nodeAffinity":{}}',
    )
    resources = rendered.container()["resources"]
    assert resources == {"limits": {GPU: 2, "memory": "8Gi"}, "requests": {"cpu": 2}}
    spec = rendered.pod_spec()
    assert spec["nodeSelector"] == {"gpu": "true"}
    assert spec["affinity"] == {"nodeAffinity": {}}
    assert [t["key"] for t in spec["tolerations"]] == ["dedicated", GPU]
    validate_core(rendered)


def test_gpu_toleration_can_be_turned_off(helm: str) -> None:
    rendered = render(helm, *SEED_ARGS, "--set", "gpuToleration=false")
    assert "tolerations" not in rendered.pod_spec()


# ------------------------------------------------------------------ worker contract


def test_environment_from_values(helm: str) -> None:
    rendered = render(
        helm,
        *BASE,
        "--set",
        "hooks=analysis.hooks:AnalysisHooks",
        "--set",
        "workerConfig=vastra",
        "--set",
        "queues.next=https://sqs/next",
        "--set",
        "queues.deadLetter=https://sqs/dlq",
        "--set",
        "bucket=results",
        "--set",
        "aws.region=eu-west-1",
        "--set",
        "brokerUrl=sqs://@localhost:4566",
        "--set",
        "worker.concurrency=4",
        "--set",
        "worker.visibilityTimeout=600",
        "--set",
        "worker.config.max_attempts=5",
        "--set",
        "worker.config.log_level=DEBUG",
        "--set-json",
        'extraArgs=["--concurrency","4"]',
        "--set-json",
        'env=[{"name":"EXTRA","value":"1"}]',
        "--set-json",
        'envFrom=[{"configMapRef":{"name":"shared"}}]',
    )
    container = rendered.container()
    assert container["args"] == ["--hooks", "analysis.hooks:AnalysisHooks", "--concurrency", "4"]
    env = rendered.env()
    expected = {
        "QUEUE_URL": QUEUE,
        "NEXT_QUEUE_URL": "https://sqs/next",
        "DLQ_URL": "https://sqs/dlq",
        "BUCKET": "results",
        "WORKER_CONFIG": "vastra",
        "BROKER_URL": "sqs://@localhost:4566",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "KOMBU_WORKER_CONCURRENCY": "4",
        "KOMBU_WORKER_VISIBILITY_TIMEOUT": "600",
        "KOMBU_WORKER_MAX_ATTEMPTS": "5",
        "KOMBU_WORKER_LOG_LEVEL": "DEBUG",
        "EXTRA": "1",
    }
    assert expected.items() <= env.items()
    assert all(isinstance(v, str) for v in env.values() if not isinstance(v, dict))
    assert container["envFrom"] == [{"configMapRef": {"name": "shared"}}]
    assert check_keda(rendered)["metadata"]["awsRegion"] == "eu-west-1"
    validate_core(rendered)


def test_health_port_and_probes(helm: str) -> None:
    rendered = render(helm, *BASE, "--set", "worker.healthPort=9000")
    container = rendered.container()
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert rendered.env()["KOMBU_WORKER_HEALTH_PORT"] == "9000"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    annotations = rendered.pod_template()["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9000"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_probes_can_be_disabled(helm: str) -> None:
    rendered = render(
        helm,
        *BASE,
        "--set",
        "probes.startup.enabled=false",
        "--set",
        "probes.readiness.enabled=false",
        "--set",
        "metrics.podAnnotations=false",
    )
    container = rendered.container()
    assert "startupProbe" not in container and "readinessProbe" not in container
    assert "livenessProbe" in container
    assert "prometheus.io/scrape" not in (rendered.pod_template()["metadata"]["annotations"] or {})


def test_termination_grace_follows_shutdown_grace(helm: str) -> None:
    default = render(helm, *BASE)
    assert default.pod_spec()["terminationGracePeriodSeconds"] == 30 + 15
    assert default.env()["KOMBU_WORKER_SHUTDOWN_GRACE_SECONDS"] == "30"
    custom = render(
        helm,
        *BASE,
        "--set",
        "worker.shutdownGraceSeconds=120",
        "--set",
        "worker.terminationMarginSeconds=10",
    )
    assert custom.pod_spec()["terminationGracePeriodSeconds"] == 130
    assert custom.env()["KOMBU_WORKER_SHUTDOWN_GRACE_SECONDS"] == "120"


def test_service_and_service_monitor(helm: str) -> None:
    assert "Service" not in render(helm, *BASE).kinds()
    rendered = render(helm, *BASE, "--set", "metrics.serviceMonitor.enabled=true")
    service = rendered.one("Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pod_labels = rendered.pod_template()["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    monitor = rendered.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    validate_core(rendered)


# ---------------------------------------------------------------- identity, secrets


def test_service_account_irsa(helm: str) -> None:
    role = "arn:aws:iam::123456789012:role/worker"
    rendered = render(helm, *BASE, "--set", f"serviceAccount.roleArn={role}")
    account = rendered.one("ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": role}
    assert rendered.pod_spec()["serviceAccountName"] == account["metadata"]["name"]


def test_existing_service_account(helm: str) -> None:
    rendered = render(
        helm, *BASE, "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=shared"
    )
    assert "ServiceAccount" not in rendered.kinds()
    assert rendered.pod_spec()["serviceAccountName"] == "shared"


def test_db_dsn_from_existing_secret(helm: str) -> None:
    rendered = render(helm, *BASE, "--set", "db.existingSecret=pipeline-db", "--set", "db.secretKey=DB_DSN")
    assert "Secret" not in rendered.kinds()
    assert rendered.env()["DB_DSN"] == {"secretKeyRef": {"name": "pipeline-db", "key": "DB_DSN"}}
    validate_core(rendered)


def test_db_dsn_from_created_secret(helm: str) -> None:
    dsn = "postgresql://worker:s3cret@db:5432/pipeline"
    rendered = render(helm, *BASE, "--set", f"db.dsn={dsn}")
    secret = rendered.one("Secret")
    assert secret["stringData"] == {"dsn": dsn}
    ref = rendered.env()["DB_DSN"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "dsn"}
    annotations = rendered.pod_template()["metadata"]["annotations"]
    assert "checksum/db-secret" in annotations
    assert dsn not in json.dumps(rendered.one("Deployment")), "the DSN must stay in the Secret"
    validate_core(rendered)


def test_db_dsn_and_existing_secret_conflict(helm: str) -> None:
    err = render_error(helm, *BASE, "--set", "db.dsn=postgresql://x", "--set", "db.existingSecret=s")
    assert "not both" in err


def test_pod_identity_trigger_authentication(helm: str) -> None:
    rendered = render(helm, *BASE)
    trigger = check_keda(rendered)
    assert "identityOwner" not in trigger["metadata"]
    auth = rendered.one("TriggerAuthentication")
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "identityOwner": "workload"}

    role = "arn:aws:iam::123456789012:role/keda-reader"
    rendered = render(helm, *BASE, "--set", f"keda.podIdentity.roleArn={role}")
    check_keda(rendered)
    auth = rendered.one("TriggerAuthentication")
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "roleArn": role}


def test_operator_identity(helm: str) -> None:
    rendered = render(helm, *BASE, "--set", "keda.authentication=operator")
    trigger = check_keda(rendered)
    assert trigger["metadata"]["identityOwner"] == "operator"
    assert "authenticationRef" not in trigger
    assert "TriggerAuthentication" not in rendered.kinds()


# ---------------------------------------------------------------------------- KEDA


def test_scaled_object_settings(helm: str) -> None:
    rendered = render(
        helm,
        *BASE,
        "--set",
        "keda.queueURL=https://sqs/other",
        "--set",
        "keda.queueLength=3",
        "--set",
        "keda.activationQueueLength=2",
        "--set",
        "keda.scaleOnInFlight=false",
        "--set",
        "keda.minReplicaCount=1",
        "--set",
        "keda.maxReplicaCount=40",
        "--set",
        "keda.cooldownPeriod=600",
        "--set",
        "keda.pollingInterval=5",
        "--set",
        "keda.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds=60",
    )
    meta = check_keda(rendered, queue_url="https://sqs/other")["metadata"]
    assert meta["queueLength"] == "3"
    assert meta["activationQueueLength"] == "2"
    assert meta["scaleOnInFlight"] == "false"
    spec = rendered.one("ScaledObject")["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 40)
    assert (spec["cooldownPeriod"], spec["pollingInterval"]) == (600, 5)
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 60
    assert rendered.env()["QUEUE_URL"] == QUEUE


def test_keda_disabled(helm: str) -> None:
    rendered = render(helm, *BASE, "--set", "keda.enabled=false", "--set", "replicaCount=3")
    assert not rendered.kinds() & {"ScaledObject", "ScaledJob", "TriggerAuthentication"}
    assert rendered.one("Deployment")["spec"]["replicas"] == 3


def test_scaled_job_mode(helm: str) -> None:
    rendered = render(helm, *SEED_ARGS, "--set", "keda.mode=scaledJob")
    assert rendered.kinds() == {"ServiceAccount", "ScaledJob", "TriggerAuthentication"}
    trigger = check_keda(rendered)
    assert trigger["metadata"]["queueLength"] == "1"
    job = rendered.one("ScaledJob")
    spec = job["spec"]
    assert spec["scalingStrategy"]["strategy"] == "default"
    assert spec["jobTargetRef"]["backoffLimit"] == 0
    assert isinstance(spec["successfulJobsHistoryLimit"], int)
    container = rendered.container()
    assert container["args"] == ["--hooks", "service.hooks:ServiceHooks", "--max-messages", "1"]
    assert container["resources"]["limits"] == {GPU: 1}
    env = rendered.env()
    assert env["KOMBU_WORKER_PREFETCH"] == "1"
    assert env["KOMBU_WORKER_RECEIVE_BATCH_SIZE"] == "1"
    template = rendered.pod_template()
    assert template["spec"]["restartPolicy"] == "Never"
    annotations = template["metadata"]["annotations"]
    assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    validate_core(rendered)


def test_scaled_job_max_messages_and_limits(helm: str) -> None:
    rendered = render(
        helm,
        *BASE,
        "--set",
        "keda.mode=scaledJob",
        "--set",
        "keda.scaledJob.maxMessages=25",
        "--set",
        "keda.scaledJob.activeDeadlineSeconds=7200",
        "--set",
        "keda.scaledJob.scalingStrategy=accurate",
        "--set",
        "worker.config.prefetch=2",
        "--set",
        "podDisruptionBudget.enabled=true",
        "--set",
        "service.enabled=true",
    )
    assert "PodDisruptionBudget" not in rendered.kinds()
    assert "Service" not in rendered.kinds()
    assert check_keda(rendered)["metadata"]["queueLength"] == "25"
    assert rendered.container()["args"][-2:] == ["--max-messages", "25"]
    spec = rendered.one("ScaledJob")["spec"]
    assert spec["jobTargetRef"]["activeDeadlineSeconds"] == 7200
    assert spec["scalingStrategy"]["strategy"] == "accurate"
    env = rendered.env()
    assert env["KOMBU_WORKER_PREFETCH"] == "2"
    assert env["KOMBU_WORKER_RECEIVE_BATCH_SIZE"] == "10"
    validate_core(rendered)


def test_pdb(helm: str) -> None:
    assert "PodDisruptionBudget" not in render(helm, *BASE).kinds()
    rendered = render(helm, *BASE, "--set", "podDisruptionBudget.enabled=true")
    pdb = rendered.one("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    pod_labels = rendered.pod_template()["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    validate_core(rendered)
    rendered = render(
        helm,
        *BASE,
        "--set",
        "podDisruptionBudget.enabled=true",
        "--set",
        "podDisruptionBudget.minAvailable=50%",
    )
    spec = rendered.one("PodDisruptionBudget")["spec"]
    assert spec["minAvailable"] == "50%" and "maxUnavailable" not in spec
    validate_core(rendered)


def test_names_and_overrides(helm: str) -> None:
    rendered = render(helm, *BASE, "--set", "fullnameOverride=detector", release="rel")
    check_labels(rendered, release="rel")
    assert {d["metadata"]["name"] for d in rendered.docs} == {"detector"}
    image = render(helm, *BASE, "--set", "image.tag=2.0").container()["image"]
    assert image == "my-service:2.0"
    digest = "sha256:" + "a" * 64
    image = render(helm, *BASE, "--set", f"image.digest={digest}").container()["image"]
    assert image == f"my-service@{digest}"


# ------------------------------------------------------------------ bad values fail


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "keda.maxReplicaCount=ten"], "maxReplicaCount"),
        (["--set", "hooks="], "hooks"),
        (["--set", "hooks=null"], "hooks"),
        (["--set", "hooks=service.hooks"], "hooks"),
        (["--set", "keda.mode=deployment"], "mode"),
        (["--set", "keda.authentication=keys"], "authentication"),
        (["--set", "worker.healthPort=70000"], "healthPort"),
        (["--set", "worker.shutdownGraceSeconds=soon"], "shutdownGraceSeconds"),
        (["--set", "serviceAccount.roleArn=my-role"], "roleArn"),
        (["--set", "queue.input=typo"], "queue"),
        (["--set", "resources.limits.nvidia.com/gpu=true"], "resources"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_values_fail(helm: str, args: list[str], message: str) -> None:
    assert message in render_error(helm, *BASE, *args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", f"queues.input={QUEUE}"], "image.repository"),
        (["--set", "image.repository=my-service"], "queues.input"),
    ],
    ids=["no-image", "no-queue"],
)
def test_required_values(helm: str, args: list[str], message: str) -> None:
    assert message in render_error(helm, *args)


# ------------------------------------------------------------------ install script


def test_install_script_is_idempotent(helm: str) -> None:
    """With helm in place, the script only reports the version (no download)."""
    if Path(helm) != ROOT / ".cache" / "bin" / "helm":
        pytest.skip("helm comes from KWS_HELM, not .cache/bin")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install_helm.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "already installed" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("v")


def _iter_values_keys(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict) and value:
            yield from _iter_values_keys(value, f"{path}.")


def test_schema_covers_every_default_value() -> None:
    """Every key in values.yaml is described by values.schema.json (no silent typos)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path in _iter_values_keys(values):
        node = schema
        for part in path.split("."):
            props = node.get("properties", {})
            if part in props:
                node = props[part]
            else:
                assert node.get("additionalProperties", True) is not False, path
                break
