"""Issue 10 section 8: the chart's defaults work on a real cluster (KEDA >= 2.13, Kubernetes 1.33).

Each value below renders YAML that looks fine but that KEDA or the API server refuses on a
cluster; the chart must refuse it first, in one line, or render the form KEDA accepts. The KEDA
objects are validated against KEDA's own CRD schemas (tests/helm/data/keda-v2.20.2/).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helm import keda_crds
from tests.helm.chart import BASE, CHART, CI_VALUES, SEED_ARGS, Rendered, check_keda, render, run_helm

ROLE = "arn:aws:iam::123456789012:role/my-service"
KEDA_IDENTITY = {"provider": "aws", "identityOwner": "keda"}
WORKLOAD_IDENTITY = {"provider": "aws", "identityOwner": "workload"}


def refusal(helm: str, *args: str) -> str:
    """The one line helm prints for a refused render (it must exit non-zero)."""
    proc = run_helm(helm, "template", "my-service", str(CHART), *BASE, *args)
    assert proc.returncode != 0, f"helm template should have refused {args}:\n{proc.stdout[:500]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def keda_identity(rendered: Rendered) -> dict[str, str]:
    """The TriggerAuthentication's podIdentity, after checking the pairing KEDA resolves."""
    check_keda(rendered)
    assert keda_crds.validate_keda(rendered.docs) == 2
    identity: dict[str, str] = rendered.one("TriggerAuthentication")["spec"]["podIdentity"]
    return identity


# ------------------------------------------------------------ the default install scales


def test_default_install_uses_an_identity_keda_can_resolve(helm: str) -> None:
    """The seed command has no role: KEDA reads the queue as itself, not as a role-less workload."""
    rendered = render(helm, *SEED_ARGS)
    assert keda_identity(rendered) == KEDA_IDENTITY
    assert "annotations" not in rendered.one("ServiceAccount")["metadata"]


@pytest.mark.parametrize(
    "role_args",
    [
        ["--set", f"serviceAccount.roleArn={ROLE}"],
        ["--set-json", f'serviceAccount.annotations={{"eks.amazonaws.com/role-arn":"{ROLE}"}}'],
    ],
    ids=["roleArn", "annotation"],
)
def test_irsa_role_makes_keda_use_the_workload_role(helm: str, role_args: list[str]) -> None:
    """With a role on the ServiceAccount, identityOwner workload finds the annotation KEDA reads."""
    rendered = render(helm, *BASE, *role_args)
    assert keda_identity(rendered) == WORKLOAD_IDENTITY
    account = rendered.one("ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE
    assert rendered.pod_spec()["serviceAccountName"] == account["metadata"]["name"]


def test_workload_identity_without_a_role_is_refused(helm: str) -> None:
    line = refusal(helm, "--set", "keda.podIdentity.identityOwner=workload")
    assert "keda.podIdentity.identityOwner=workload needs serviceAccount.roleArn" in line


def test_workload_identity_with_an_existing_service_account_is_left_to_it(helm: str) -> None:
    """The chart cannot see an existing ServiceAccount's annotations, so it trusts the choice."""
    rendered = render(
        helm,
        *BASE,
        "--set",
        "keda.podIdentity.identityOwner=workload",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=irsa-worker",
    )
    assert keda_identity(rendered) == WORKLOAD_IDENTITY


def test_keda_role_arn_is_never_paired_with_an_identity_owner(helm: str) -> None:
    """KEDA's webhook refuses roleArn together with identityOwner workload."""
    keda_role = "arn:aws:iam::123456789012:role/keda-reader"
    rendered = render(
        helm,
        *BASE,
        "--set",
        f"serviceAccount.roleArn={ROLE}",
        "--set",
        f"keda.podIdentity.roleArn={keda_role}",
    )
    assert keda_identity(rendered) == {"provider": "aws", "roleArn": keda_role}


# --------------------------------------------------------------- operator mode, supported form


@pytest.mark.parametrize("mode", ["scaledObject", "scaledJob"])
def test_operator_mode_renders_the_supported_form(helm: str, mode: str) -> None:
    rendered = render(helm, *BASE, "--set", "keda.authentication=operator", "--set", f"keda.mode={mode}")
    trigger = check_keda(rendered)
    assert "identityOwner" not in trigger["metadata"], "deprecated since KEDA 2.13"
    auth = rendered.one("TriggerAuthentication")
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    assert auth["spec"]["podIdentity"] == KEDA_IDENTITY
    keda_crds.validate_keda(rendered.docs)


# --------------------------------------------------- KEDA objects against KEDA's CRD schema


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_ci_values_pass_keda_crd_schemas(helm: str, values: Path) -> None:
    rendered = render(helm, "--values", str(values))
    settings = yaml.safe_load(values.read_text())
    keda = settings.get("keda", {})
    expected = 0 if keda.get("enabled", True) is False else 1
    expected += 1 if keda.get("mode", "scaledObject") == "scaledObject" and expected else 0
    assert keda_crds.validate_keda(rendered.docs) == expected


def test_crd_validation_catches_what_keda_refuses(helm: str) -> None:
    """The validator is not a rubber stamp: the deprecated/unknown forms fail it."""
    rendered = render(helm, *BASE)
    auth = rendered.one("TriggerAuthentication")
    auth["spec"]["podIdentity"]["identityOwner"] = "operator"
    assert any("identityOwner" in e for e in keda_crds.errors(auth))
    scaled = rendered.one("ScaledObject")
    scaled["spec"]["triggers"][0]["metadata"]["queueLength"] = 5
    scaled["spec"]["identityOwner"] = "operator"
    found = keda_crds.errors(scaled)
    assert any("queueLength" in e for e in found), found
    assert any("identityOwner" in e and "Additional properties" in e for e in found), found


def test_vendored_crd_has_the_replica_rule_the_chart_enforces() -> None:
    spec = keda_crds.crd("ScaledObject")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert any("self.minReplicaCount <= " in r for r in rules), rules


# ------------------------------------------------------ values the API server would refuse


@pytest.mark.parametrize("mode", ["scaledObject", "scaledJob"])
def test_min_replicas_above_max_is_refused(helm: str, mode: str) -> None:
    line = refusal(
        helm,
        "--set",
        f"keda.mode={mode}",
        "--set",
        "keda.minReplicaCount=5",
        "--set",
        "keda.maxReplicaCount=2",
    )
    assert "keda.minReplicaCount (5) must not exceed keda.maxReplicaCount (2)" in line


def test_min_equal_to_max_renders(helm: str) -> None:
    rendered = render(helm, *BASE, "--set", "keda.minReplicaCount=3", "--set", "keda.maxReplicaCount=3")
    spec = rendered.one("ScaledObject")["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (3, 3)


def test_name_too_long_for_the_keda_hpa_is_refused(helm: str) -> None:
    line = refusal(helm, "--set", f"fullnameOverride={'a' * 55}")
    assert "is 55 characters; at most 54 fit, because KEDA names the HPA keda-hpa-<name>" in line


def test_longest_name_gives_a_63_character_hpa_name(helm: str) -> None:
    name = "n" * 54
    rendered = render(helm, *BASE, "--set", f"fullnameOverride={name}")
    scaled_name = rendered.one("ScaledObject")["metadata"]["name"]
    assert scaled_name == name
    assert len(f"keda-hpa-{scaled_name}") == 63


@pytest.mark.parametrize(
    "gpu_args",
    [["--set", r"resources.requests.nvidia\.com/gpu=1"], ["--set", "resources.requests.nvidia.com/gpu=1"]],
    ids=["escaped-dots", "unescaped-dots"],
)
def test_gpu_in_requests_without_limits_is_refused(helm: str, gpu_args: list[str]) -> None:
    line = refusal(helm, *gpu_args)
    assert "resources.requests.nvidia.com/gpu is set without resources.limits.nvidia.com/gpu" in line


def test_gpu_requests_unequal_to_limits_is_refused(helm: str) -> None:
    line = refusal(
        helm, "--set", "resources.requests.nvidia.com/gpu=1", "--set", "resources.limits.nvidia.com/gpu=2"
    )
    assert "resources.requests.nvidia.com/gpu (1) differs from resources.limits.nvidia.com/gpu (2)" in line


def test_gpu_requests_equal_to_limits_renders(helm: str) -> None:
    rendered = render(
        helm,
        *BASE,
        "--set",
        "resources.requests.nvidia.com/gpu=1",
        "--set",
        "resources.limits.nvidia.com/gpu=1",
    )
    resources = rendered.container()["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
