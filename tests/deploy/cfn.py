"""Deploy deploy/aws/*.yaml to moto's CloudFormation and build a test Stack on what it made.

moto answers a queue's ``Ref`` in AWS form (https://sqs.us-east-1.amazonaws.com/ACCOUNT/NAME),
not as its own endpoint's URL. The worker is given those URLs unchanged, exactly as on AWS:
boto3 sends every SQS call to AWS_ENDPOINT_URL (moto) and puts the URL only in the request's
QueueUrl parameter, where moto finds the queue by the account and name in its path.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from tests import servers
from tests.integration.stack import REPO, Stack

TEMPLATES = REPO / "deploy" / "aws"
IN_PROGRESS = "_IN_PROGRESS"


def deploy(cfn: Any, name: str, template: str, **parameters: Any) -> dict[str, str]:
    """create_stack, wait for it to settle, and return its outputs (CREATE_COMPLETE or fail)."""
    cfn.create_stack(
        StackName=name,
        TemplateBody=(TEMPLATES / template).read_text(encoding="utf-8"),
        Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    deadline = time.monotonic() + 60
    while True:
        found = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if not found["StackStatus"].endswith(IN_PROGRESS) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert found["StackStatus"] == "CREATE_COMPLETE", (
        name,
        found["StackStatus"],
        found.get("StackStatusReason"),
    )
    return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}


def deploy_pipeline(tmp: Path, *, max_attempts: int, visibility_timeout: int) -> tuple[Stack, dict[str, Any]]:
    """The pipeline stack and two step stacks (first → second); a Stack on the first step."""
    moto = servers.require_moto()
    servers.require_postgres()
    cfn = servers.boto_client("cloudformation")
    pipeline = f"kw{uuid.uuid4().hex[:10]}"
    shared = deploy(cfn, f"{pipeline}-shared", "pipeline.yaml", PipelineName=pipeline)
    common = {"PipelineName": pipeline, "BucketName": shared["BucketName"]}
    second = deploy(cfn, f"{pipeline}-second", "step.yaml", StepName="second", **common)
    first = deploy(
        cfn,
        f"{pipeline}-first",
        "step.yaml",
        StepName="first",
        NextQueueArn=second["QueueArn"],
        MaxAttempts=max_attempts,
        VisibilityTimeout=visibility_timeout,
        **common,
    )
    queues = {"in": first["QueueUrl"], "next": second["QueueUrl"], "dlq": first["DeadLetterQueueUrl"]}
    stack = Stack(
        moto,
        servers.fresh_database(),
        shared["BucketName"],
        queues,
        tmp,
        servers.boto_client("sqs"),
        servers.boto_client("s3"),
    )
    outputs = {"pipeline": pipeline, "shared": shared, "first": first, "second": second}
    return stack, outputs


def step_env(stack: Stack, first: dict[str, str], **extra: str) -> dict[str, str]:
    """The worker's environment as the Helm chart sets it from the step stack's outputs."""
    return stack.env(
        KOMBU_WORKER_MAX_ATTEMPTS=first["MaxAttempts"],
        KOMBU_WORKER_VISIBILITY_TIMEOUT=first["VisibilityTimeout"],
        **extra,
    )
