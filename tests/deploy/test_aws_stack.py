"""deploy/aws deployed to moto's CloudFormation, and a real worker on what the stacks made.

One run (module fixture) deploys the pipeline stack and two step stacks, runs a worker on
the first step with every botocore call recorded (recorder/sitecustomize.py), sends one good
and one poison message, and runs ``kombu-worker check``. The tests then read that run: DONE
and dead-lettered, and the recorded calls against ``kombu-worker iam-policy`` and against the
role the stack created.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from kombu_worker_sdk.deploy.actions import action_of
from tests import servers
from tests.conftest import wait_for
from tests.deploy import iam_eval
from tests.deploy.cfn import deploy_pipeline, step_env
from tests.integration.stack import REPO, Stack

pytestmark = pytest.mark.integration
RECORDER = Path(__file__).parent / "recorder"
HOOKS = "tests.deploy.aws_hooks:StackHooks"


@dataclass
class Run:
    stack: Stack
    outputs: dict[str, Any]
    env: dict[str, str]
    calls: list[dict[str, Any]]
    exit_codes: list[int]
    check: Any


def task(stack: Stack, task_id: str, **params: Any) -> dict[str, Any]:
    return {
        "job_id": f"job-{task_id}",
        "task_id": task_id,
        "input_uri": f"s3://{stack.bucket}/inputs/photo.txt",
        "output_prefix": f"s3://{stack.bucket}/jobs/job-{task_id}/first/",
        "params": params,
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("aws-stack")
    stack, outputs = deploy_pipeline(tmp, max_attempts=2, visibility_timeout=10)
    log = tmp / "botocore-calls.jsonl"
    env = step_env(
        stack,
        outputs["first"],
        PYTHONPATH=f"{RECORDER}{os.pathsep}{REPO}",
        KWS_TEST_BOTOCORE_LOG=str(log),
    )
    try:
        assert stack.cli("db", "upgrade", env=env).returncode == 0
        stack.s3.put_object(Bucket=stack.bucket, Key="inputs/photo.txt", Body=b"twelve bytes")
        stack.send("in", task(stack, "good"))
        stack.send("in", task(stack, "poison", always_fail=True))
        stack.start_worker(HOOKS, env=env)
        wait_for(lambda: stack.task_status("good") == "DONE", timeout=90, interval=0.2)
        wait_for(lambda: stack.task_status("poison") == "FAILED", timeout=90, interval=0.2)
        wait_for(lambda: stack.depth("in") == 0, timeout=60, interval=0.2)
        check = stack.cli("check", env=env)
        codes = stack.stop_workers()
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        yield Run(stack, outputs, env, calls, codes, check)
    finally:
        stack.kill_workers()


def test_one_message_ends_done_and_the_poison_one_in_the_stacks_dead_letter_queue(run: Run) -> None:
    stack = run.stack
    assert run.exit_codes == [0], stack.logs()
    assert json.loads(
        stack.s3.get_object(Bucket=stack.bucket, Key="jobs/job-good/first/result.json")["Body"].read()
    ) == {"input_bytes": 12}
    children = [json.loads(m["Body"]) for m in stack.receive_all("next")]
    assert [c["task_id"] for c in children] == ["good-next"]
    dead = stack.receive_all("dlq")
    assert [json.loads(m["Body"])["task_id"] for m in dead] == ["poison"]
    attributes = dead[0]["MessageAttributes"]
    assert attributes["attempts"]["StringValue"] == run.outputs["first"]["MaxAttempts"] == "2"
    assert "transient failure on attempt 2" in attributes["error"]["StringValue"]


def test_check_passes_on_the_stacks_resources(run: Run) -> None:
    assert run.check.returncode == 0, run.check.stdout + run.check.stderr
    assert [line.split()[0] for line in run.check.stdout.splitlines()] == ["ok"] * 5


def resource_of(run: Run, call: dict[str, Any]) -> str:
    """The ARN a recorded call acted on, from the stack's outputs (not from the SDK's own mapping)."""
    if call["service"] == "sqs":
        arns = {
            run.outputs["first"]["QueueUrl"]: run.outputs["first"]["QueueArn"],
            run.outputs["first"]["DeadLetterQueueUrl"]: run.outputs["first"]["DeadLetterQueueArn"],
            run.outputs["second"]["QueueUrl"]: run.outputs["second"]["QueueArn"],
        }
        return arns[call["QueueUrl"]]
    bucket_arn = run.outputs["shared"]["BucketArn"]
    assert call["Bucket"] == run.outputs["shared"]["BucketName"]
    return f"{bucket_arn}/{call['Key']}" if "Key" in call else bucket_arn


def used(run: Run) -> set[tuple[str, str]]:
    """(IAM action, ARN) of every recorded call; an operation missing from actions.CALLS fails."""
    unknown = sorted(
        {(c["service"], c["operation"]) for c in run.calls if action_of(c["service"], c["operation"]) is None}
    )
    assert not unknown, f"the worker made calls that deploy/actions.py does not list: {unknown}"
    return {(str(action_of(c["service"], c["operation"])), resource_of(run, c)) for c in run.calls}


def printed_policy(run: Run, *args: str) -> dict[str, Any]:
    printed = run.stack.cli("iam-policy", *args, env=run.env)
    assert printed.returncode == 0, printed.stderr
    policy: dict[str, Any] = json.loads(printed.stdout)
    return policy


def test_iam_policy_allows_every_call_the_worker_and_kombu_really_made(run: Run) -> None:
    operations = {(c["service"], c["operation"]) for c in run.calls}
    # The run went through every path the policy is for: Kombu's receive and ack, batched
    # acks and sends, retries, the redrive check, S3 read, write, list, and check's calls.
    assert {
        ("sqs", "ReceiveMessage"),
        ("sqs", "DeleteMessageBatch"),
        ("sqs", "DeleteMessage"),
        ("sqs", "ChangeMessageVisibility"),
        ("sqs", "GetQueueAttributes"),
        ("sqs", "SendMessageBatch"),
        ("s3", "GetObject"),
        ("s3", "PutObject"),
        ("s3", "ListObjectsV2"),
        ("s3", "HeadBucket"),
    } <= operations
    policy = printed_policy(run)
    denied = sorted(pair for pair in used(run) if not iam_eval.allows(policy, *pair))
    assert not denied, f"iam-policy denies calls the worker made: {denied}"


def test_iam_policy_grants_nothing_the_run_did_not_use(run: Run) -> None:
    made = used(run)
    unused = sorted(
        (action, pattern)
        for action, pattern in iam_eval.grants(printed_policy(run))
        if not any(a == action and fnmatchcase(r, pattern) for a, r in made)
    )
    assert not unused, f"iam-policy grants what no call used: {unused}"


def test_the_stacks_worker_role_is_the_printed_policy(run: Run) -> None:
    iam = servers.boto_client("iam")
    role = run.outputs["first"]["WorkerRoleArn"].rsplit("/", 1)[1]
    document = iam.get_role_policy(RoleName=role, PolicyName="kombu-worker")["PolicyDocument"]
    # moto returns an inline policy deployed by CloudFormation as Python's repr of the
    # document, with None where the template's Fn::If chose AWS::NoValue (CloudFormation
    # itself drops those items).
    deployed = ast.literal_eval(document) if isinstance(document, str) else document
    deployed["Statement"] = [s for s in deployed["Statement"] if s is not None]
    assert iam_eval.grants(deployed) == iam_eval.grants(printed_policy(run))


def test_keda_can_read_the_depth_of_every_step_queue_and_nothing_more(run: Run) -> None:
    printed = printed_policy(run, "--keda")
    assert iam_eval.grants(printed) == {("sqs:GetQueueAttributes", run.outputs["first"]["QueueArn"])}
    role = run.outputs["shared"]["KedaRoleArn"].rsplit("/", 1)[1]
    document = servers.boto_client("iam").get_role_policy(RoleName=role, PolicyName="keda-read-queue-depth")
    deployed = document["PolicyDocument"]
    deployed = ast.literal_eval(deployed) if isinstance(deployed, str) else deployed
    for step in ("first", "second"):
        assert iam_eval.allows(deployed, "sqs:GetQueueAttributes", run.outputs[step]["QueueArn"])
        assert not iam_eval.allows(deployed, "sqs:ReceiveMessage", run.outputs[step]["QueueArn"])


def test_the_deployed_queue_and_bucket_carry_the_step_parameters(run: Run) -> None:
    stack, first = run.stack, run.outputs["first"]
    attributes = stack.sqs.get_queue_attributes(QueueUrl=first["QueueUrl"], AttributeNames=["All"])[
        "Attributes"
    ]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": first["DeadLetterQueueArn"],
        "maxReceiveCount": 2,
    }
    assert attributes["VisibilityTimeout"] == first["VisibilityTimeout"] == "10"
    assert attributes["SqsManagedSseEnabled"] == "true"
    rules = stack.s3.get_bucket_encryption(Bucket=stack.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
