"""The READMEs state what a real cluster needs: the minimum KEDA version and the IRSA trust policy.

The trust policy is parsed out of each README's text (not a copy) and checked against what the
chart renders: the worker's ServiceAccount subject and the KEDA operator's, because with
identityOwner workload KEDA assumes the worker's role with its own web identity token
(kedacore/keda pkg/scalers/aws/aws_config_cache.go, retrievePodIdentityCredentials).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.helm.chart import BASE, CHART, ROOT, render

ROLE = "arn:aws:iam::123456789012:role/my-service"
KEDA_SUBJECT = "system:serviceaccount:keda:keda-operator"


def chart_readme() -> str:
    return (CHART / "README.md").read_text(encoding="utf-8")


def project_deploy_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0]


DOCS = {"chart-README": chart_readme, "README-Deploy": project_deploy_section}


def trust_policy(text: str) -> dict[str, Any]:
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, flags=re.S)]
    policies = [b for b in blocks if "Statement" in b]
    assert len(policies) == 1, f"expected one trust policy, found {len(policies)}"
    policy: dict[str, Any] = policies[0]
    return policy


@pytest.mark.parametrize("doc", DOCS.values(), ids=DOCS.keys())
def test_minimum_keda_version_is_stated(doc: Any) -> None:
    text = doc()
    assert "KEDA 2.13 or newer" in text
    assert "podIdentity.provider: aws" in text


@pytest.mark.parametrize("doc", DOCS.values(), ids=DOCS.keys())
def test_trust_policy_admits_the_worker_and_keda(helm: str, doc: Any) -> None:
    (statement,) = trust_policy(doc())["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    provider_arn = statement["Principal"]["Federated"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:oidc-provider/.+", provider_arn), provider_arn
    issuer = provider_arn.split(":oidc-provider/", 1)[1]
    condition = statement["Condition"]["StringEquals"]
    assert condition[f"{issuer}:aud"] == "sts.amazonaws.com"
    subjects = condition[f"{issuer}:sub"]
    # The README's example release: `helm install my-service ...` in namespace default.
    rendered = render(helm, *BASE, "--set", f"serviceAccount.roleArn={ROLE}", "--namespace", "default")
    account = rendered.one("ServiceAccount")["metadata"]["name"]
    assert rendered.one("TriggerAuthentication")["spec"]["podIdentity"]["identityOwner"] == "workload"
    assert sorted(subjects) == sorted([f"system:serviceaccount:default:{account}", KEDA_SUBJECT])
