"""KEDA ScaledObject / ScaledJob settings, names, and values the schema refuses."""

from __future__ import annotations

import pytest

from tests.helm.chart import (
    BASE,
    GPU,
    QUEUE,
    SEED_ARGS,
    check_keda,
    check_labels,
    render,
    render_error,
    validate_core,
)


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
