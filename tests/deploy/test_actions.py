"""deploy/actions.py cannot drift from the code: every boto3 call written in the package is listed.

(What Kombu calls at run time is checked by recording a real run: test_aws_stack.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import botocore.session
import pytest

import kombu_worker_sdk
from kombu_worker_sdk.deploy.actions import CALLS, POD_CALLERS, Caller, Target, action_of, actions_for

PACKAGE = Path(kombu_worker_sdk.__file__).parent
SERVICES = ("sqs", "s3")


def operations_by_method() -> dict[str, tuple[str, str]]:
    """boto3 method name (send_message_batch) → (service, operation), from botocore's models."""
    session = botocore.session.get_session()
    found: dict[str, tuple[str, str]] = {}
    for service in SERVICES:
        model = session.get_service_model(service)
        for operation in model.operation_names:
            found[botocore.xform_name(operation)] = (service, operation)
    return found


def calls_in_source() -> dict[tuple[str, str], list[str]]:
    methods = operations_by_method()
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in methods
            ):
                where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
                found.setdefault(methods[node.func.attr], []).append(where)
    return found


def test_every_boto3_call_in_the_package_is_listed_with_its_iam_action() -> None:
    found = calls_in_source()
    assert ("sqs", "SendMessageBatch") in found and ("s3", "PutObject") in found  # the scan sees calls
    unlisted = {op: where for op, where in found.items() if action_of(*op) is None}
    assert not unlisted, f"add these calls to kombu_worker_sdk/deploy/actions.py: {unlisted}"


def test_every_listed_call_is_a_real_operation_and_action() -> None:
    session = botocore.session.get_session()
    for call in CALLS:
        assert call.operation in session.get_service_model(call.service).operation_names, call
        assert call.action.startswith(f"{call.service}:"), call


@pytest.mark.parametrize(
    ("target", "actions"),
    [
        (
            Target.INPUT,
            [
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
            ],
        ),
        (Target.NEXT, ["sqs:GetQueueAttributes", "sqs:SendMessage"]),
        (Target.DEAD_LETTER, ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"]),
        (Target.BUCKET, ["s3:ListBucket"]),
    ],
)
def test_a_pods_actions_per_resource(target: Target, actions: list[str]) -> None:
    assert actions_for(target) == actions


def test_redrive_is_not_part_of_a_pods_role() -> None:
    assert Caller.REDRIVE not in POD_CALLERS
    assert actions_for(Target.DEAD_LETTER, POD_CALLERS | {Caller.REDRIVE}) == [
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:ReceiveMessage",
        "sqs:SendMessage",
    ]
