"""The seed README's `helm install` command, and how it asks for a GPU."""

from __future__ import annotations

import json

import pytest

from tests.helm.chart import (
    BASE,
    CHART,
    GPU,
    QUEUE,
    SEED_ARGS,
    Rendered,
    check_keda,
    check_labels,
    render,
    run_helm,
    validate_core,
)


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


def test_seed_command_helm_install_dryrun_helm(helm: str) -> None:
    """The README's `helm install` itself, client-side only (no cluster needed on helm 4)."""
    version = run_helm(helm, "version", "--short").stdout.strip()
    if version.startswith("v3."):
        pytest.skip(f"helm {version} --dry-run=client still asks a cluster for its version")
    proc = run_helm(helm, "install", "my-service", str(CHART), "--dry-run=client", "-o", "json", *SEED_ARGS)
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
