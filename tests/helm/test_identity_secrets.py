"""ServiceAccount (IRSA), the DB_DSN Secret, and the identity KEDA reads the queue with."""

from __future__ import annotations

import json

from tests.helm.chart import (
    BASE,
    check_keda,
    render,
    render_error,
    validate_core,
)


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
    # Without a role on the ServiceAccount, KEDA uses its own identity (issue 10 section 8:
    # `workload` there fails with "annotation 'eks.amazonaws.com/role-arn' not found").
    rendered = render(helm, *BASE)
    trigger = check_keda(rendered)
    assert "identityOwner" not in trigger["metadata"]
    auth = rendered.one("TriggerAuthentication")
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "identityOwner": "keda"}

    role = "arn:aws:iam::123456789012:role/keda-reader"
    rendered = render(helm, *BASE, "--set", f"keda.podIdentity.roleArn={role}")
    check_keda(rendered)
    auth = rendered.one("TriggerAuthentication")
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "roleArn": role}


def test_operator_identity(helm: str) -> None:
    # The supported form of the operator's identity (KEDA >= 2.13): a TriggerAuthentication with
    # identityOwner keda, not the trigger's deprecated `identityOwner: operator`.
    rendered = render(helm, *BASE, "--set", "keda.authentication=operator")
    trigger = check_keda(rendered)
    assert "identityOwner" not in trigger["metadata"]
    auth = rendered.one("TriggerAuthentication")
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "identityOwner": "keda"}
