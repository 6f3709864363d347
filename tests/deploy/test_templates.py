"""deploy/aws/*.yaml: cfn-lint accepts them, and they say what the SDK and iam-policy say."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.deploy.actions import KEDA_ACTIONS
from kombu_worker_sdk.deploy.iam import PolicyOptions, worker_policy
from tests import servers
from tests.deploy.cfn import TEMPLATES

ALL = sorted(TEMPLATES.glob("*.yaml"))


def cfn_lint() -> str:
    """The cfn-lint next to this Python (the test extra), else on PATH; skip locally, fail in CI."""
    beside = Path(sys.executable).parent / "cfn-lint"
    found = str(beside) if beside.exists() else shutil.which("cfn-lint")
    if found is None:
        message = "cfn-lint is not installed (pip install -e '.[test]')"
        if servers.in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([cfn_lint(), str(path)], capture_output=True, text=True, timeout=300)


def load(name: str) -> Any:
    from cfnlint.decode import decode_str  # understands !Ref, !Sub, !If ...

    template, problems = decode_str((TEMPLATES / name).read_text(encoding="utf-8"))
    assert not problems, problems
    return template


def test_there_is_a_step_and_a_pipeline_template() -> None:
    assert [p.name for p in ALL] == ["pipeline.yaml", "step.yaml"]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_cfn_lint_accepts_the_template(path: Path) -> None:
    result = lint(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_refuses_a_broken_step_template(tmp_path: Path) -> None:
    broken = tmp_path / "step.yaml"
    text = (TEMPLATES / "step.yaml").read_text(encoding="utf-8")
    broken.write_text(text.replace("maxReceiveCount: !Ref MaxAttempts", "maxReceiveCount: !Ref MaxAttempt"))
    result = lint(broken)
    assert result.returncode != 0 and "MaxAttempt" in result.stdout


def test_step_defaults_and_redrive_follow_the_worker_config() -> None:
    template = load("step.yaml")
    defaults = WorkerConfig()
    assert template["Parameters"]["MaxAttempts"]["Default"] == defaults.max_attempts
    assert template["Parameters"]["VisibilityTimeout"]["Default"] == defaults.visibility_timeout
    queue = template["Resources"]["Queue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "MaxAttempts"}
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert queue["VisibilityTimeout"] == {"Ref": "VisibilityTimeout"}
    outputs = template["Outputs"]
    assert {"QueueUrl", "DeadLetterQueueUrl", "WorkerRoleArn", "MaxAttempts", "VisibilityTimeout"} <= set(
        outputs
    )


def statements_by_sid(statements: list[Any]) -> dict[str, list[str]]:
    """Sid → actions, taking the chosen branch of each Fn::If (all conditions true)."""
    found: dict[str, list[str]] = {}
    for statement in statements:
        chosen = statement["Fn::If"][1] if "Fn::If" in statement else statement
        actions = chosen["Action"]
        found[chosen["Sid"]] = sorted([actions] if isinstance(actions, str) else actions)
    return found


def test_the_step_role_grants_what_iam_policy_prints() -> None:
    role = load("step.yaml")["Resources"]["WorkerRole"]["Properties"]
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    aws = "https://sqs.us-east-1.amazonaws.com/123456789012"
    # A deployed step gets DLQ_URL from the stack's outputs, so it never needs GetQueueUrl.
    config = WorkerConfig(
        queue=f"{aws}/p-first",
        next_queue=f"{aws}/p-second",
        dead_letter_queue=f"{aws}/p-first-dlq",
        bucket="b",
    )
    printed = worker_policy(config, PolicyOptions(kms_keys=["arn:aws:kms:us-east-1:123456789012:key/k"]))
    assert statements_by_sid(statements) == {s["Sid"]: s["Action"] for s in printed["Statement"]}


def test_the_pipeline_bucket_is_encrypted_private_and_expires_intermediate_outputs() -> None:
    resources = load("pipeline.yaml")["Resources"]
    bucket = resources["Bucket"]["Properties"]
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-intermediate-outputs"]["Prefix"] == {"Ref": "IntermediatePrefix"}
    keda = resources["KedaRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert [s["Action"] for s in keda] == list(KEDA_ACTIONS)
