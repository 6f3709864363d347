"""Every AWS call a running step makes, and the IAM action that allows it: the one list.

``kombu-worker iam-policy`` and the CloudFormation templates grant exactly these.
``tests/deploy/test_actions.py`` keeps the list honest twice over: every boto3 client call
written in the package must name an operation listed here, and every operation recorded
from a real worker run against moto (Kombu's own calls included) must be listed here and
allowed by the printed policy.

SQS has no IAM actions for its batch calls: SendMessageBatch is authorized by
``sqs:SendMessage``, DeleteMessageBatch by ``sqs:DeleteMessage``. S3's ListObjectsV2 and
HeadBucket are both ``s3:ListBucket`` on the bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Target(StrEnum):
    """The resource a call acts on, as the policy names it."""

    INPUT = "input queue"
    NEXT = "next queue"
    DEAD_LETTER = "dead-letter queue"
    READ = "objects read"
    WRITE = "objects written"
    BUCKET = "bucket"


class Caller(StrEnum):
    """Who makes the call: the policy for a worker pod includes WORKER, KOMBU and CHECK."""

    WORKER = "worker"  # the SDK's own code in a running worker
    KOMBU = "kombu"  # Kombu's SQS transport, on the worker's behalf
    CHECK = "check"  # kombu-worker check (a person, or a readiness gate)
    REDRIVE = "redrive"  # kombu-worker dlq redrive (an operator, not the pod)


@dataclass(frozen=True)
class AwsCall:
    service: str  # boto3 service name
    operation: str  # botocore operation name (the API name)
    action: str  # the IAM action that authorizes it
    target: Target
    caller: Caller
    why: str


def _sqs(operation: str, action: str, target: Target, caller: Caller, why: str) -> AwsCall:
    return AwsCall("sqs", operation, f"sqs:{action}", target, caller, why)


def _s3(operation: str, action: str, target: Target, caller: Caller, why: str) -> AwsCall:
    return AwsCall("s3", operation, f"s3:{action}", target, caller, why)


IN, NX, DL = Target.INPUT, Target.NEXT, Target.DEAD_LETTER
W, K, C, R = Caller.WORKER, Caller.KOMBU, Caller.CHECK, Caller.REDRIVE

CALLS: tuple[AwsCall, ...] = (
    _sqs("ReceiveMessage", "ReceiveMessage", IN, K, "Kombu's long poll, with ApproximateReceiveCount"),
    _sqs("DeleteMessageBatch", "DeleteMessage", IN, W, "acks, up to 10 a call (transport/sqs/acks.py)"),
    _sqs("DeleteMessage", "DeleteMessage", IN, K, "Kombu's ack after a dead-letter copy is sent"),
    _sqs("ChangeMessageVisibility", "ChangeMessageVisibility", IN, W, "retries, heartbeat, release"),
    _sqs("ChangeMessageVisibility", "ChangeMessageVisibility", IN, K, "Kombu releases unread messages"),
    _sqs("GetQueueAttributes", "GetQueueAttributes", IN, W, "RedrivePolicy, to align max_attempts"),
    _sqs("GetQueueAttributes", "GetQueueAttributes", IN, K, "Kombu reads RedrivePolicy on a reject"),
    _sqs("SendMessageBatch", "SendMessage", NX, W, "publish_next's children"),
    _sqs("SendMessageBatch", "SendMessage", DL, W, "dead-letter copies with their error"),
    _sqs("GetQueueAttributes", "GetQueueAttributes", IN, C, "kombu-worker check"),
    _sqs("GetQueueAttributes", "GetQueueAttributes", NX, C, "kombu-worker check"),
    _sqs("GetQueueAttributes", "GetQueueAttributes", DL, C, "kombu-worker check"),
    _sqs("GetQueueUrl", "GetQueueUrl", DL, W, "start-up: the URL of the RedrivePolicy's target"),
    _sqs("ReceiveMessage", "ReceiveMessage", DL, R, "dlq redrive reads dead letters"),
    _sqs("ChangeMessageVisibilityBatch", "ChangeMessageVisibility", DL, R, "a peek gives them back"),
    _sqs("DeleteMessageBatch", "DeleteMessage", DL, R, "dlq redrive removes what it moved"),
    _sqs("SendMessageBatch", "SendMessage", IN, R, "dlq redrive sends them back"),
    _s3("GetObject", "GetObject", Target.READ, W, "ctx.storage.read/open of input_uri"),
    _s3("PutObject", "PutObject", Target.WRITE, W, "result and metrics under output_prefix"),
    _s3("ListObjectsV2", "ListBucket", Target.BUCKET, W, "the idempotency check (MaxKeys=1)"),
    _s3("HeadBucket", "ListBucket", Target.BUCKET, C, "kombu-worker check and readiness"),
)

#: What a worker pod's role needs: its own calls, Kombu's, and ``kombu-worker check``.
POD_CALLERS = frozenset({Caller.WORKER, Caller.KOMBU, Caller.CHECK})
#: KEDA's aws-sqs-queue scaler reads queue depth and nothing else.
KEDA_ACTIONS = ("sqs:GetQueueAttributes",)
#: A customer-managed KMS key: SQS SSE and S3 SSE-KMS need both to send/put and receive/get.
KMS_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


def actions_for(target: Target, callers: frozenset[Caller] = POD_CALLERS) -> list[str]:
    """The IAM actions on ``target`` that ``callers`` need, sorted, without repeats."""
    return sorted({c.action for c in CALLS if c.target is target and c.caller in callers})


def action_of(service: str, operation: str) -> str | None:
    """The IAM action of a botocore operation, or None when the worker is not known to make it."""
    return next((c.action for c in CALLS if (c.service, c.operation) == (service, operation)), None)
