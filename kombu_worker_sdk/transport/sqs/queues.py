"""Start-up checks of the SQS queues a worker uses: it starts only if it can do what it is told.

A worker whose dead-letter queue does not exist cannot dead-letter a bad message:
the send fails, the message comes back, and it is "redelivered" for ever. So the
worker refuses to start, in one line, unless every queue it will use exists.

Where dead letters go, in order:

1. ``dead_letter_queue`` (``DLQ_URL``) when it is set: it must exist.
2. Otherwise the input queue's own RedrivePolicy target, so that a bad message is
   moved at once, with its error attached, to where SQS would move it after
   ``maxReceiveCount`` receives.
3. Otherwise ``<queue>-dlq``, which must exist.

A queue the worker may not inspect (AccessDenied) is not refused: only a queue
known to be missing is.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import ConfigError


def check_queues(runtime: Any, client: Any) -> None:
    """Refuse a missing input, next or dead-letter queue; align attempts with the redrive policy."""
    config: WorkerConfig = runtime.config
    policy = _redrive_policy(_attributes(client, config.queue, "input queue (QUEUE_URL)"))
    if config.next_queue:
        _attributes(client, config.next_queue, "next queue (NEXT_QUEUE_URL)")
    url = dead_letter_queue(config, client, policy)
    if not config.dead_letter_queue and url != config.effective_dead_letter_queue:
        config.dead_letter_queue = url
        runtime.logger.info("dead letters go to the input queue's redrive target %s", url)
    align_attempts_with_redrive(runtime, policy)


def dead_letter_queue(config: WorkerConfig, client: Any, policy: dict[str, Any] | None = None) -> str:
    """Where this worker sends dead letters (see the module docstring); refuses a missing queue."""
    if config.dead_letter_queue:
        _attributes(client, config.dead_letter_queue, "dead-letter queue (DLQ_URL / dead_letter_queue)")
        return config.dead_letter_queue
    if policy is None:
        policy = _redrive_policy(_attributes(client, config.queue, "input queue (QUEUE_URL)"))
    target = policy.get("deadLetterTargetArn")
    if isinstance(target, str) and target:
        return _url_of_arn(client, target)
    derived = config.effective_dead_letter_queue
    _attributes(
        client,
        derived,
        "dead-letter queue",
        hint="create it, set DLQ_URL (dead_letter_queue), or give the input queue a RedrivePolicy",
    )
    return derived


def align_attempts_with_redrive(runtime: Any, policy: dict[str, Any]) -> None:
    """A redrive policy that moves messages before max_attempts would skip our FAILED mark."""
    config = runtime.config
    try:
        limit = int(policy.get("maxReceiveCount", 0) or 0)
    except (TypeError, ValueError):
        return
    if 0 < limit < config.max_attempts:
        runtime.logger.warning(
            "queue redrive policy moves messages after %d receives; max_attempts lowered from %d",
            limit,
            config.max_attempts,
        )
        config.max_attempts = limit


def _attributes(
    client: Any, url: str, role: str, *, hint: str = "create it or fix the URL"
) -> dict[str, str]:
    """The queue's attributes; ConfigError if it does not exist, {} if we may not look."""
    try:
        response = client.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    except client.exceptions.QueueDoesNotExist:
        raise ConfigError(f"{role} {url} does not exist: {hint}") from None
    except (BotoCoreError, ClientError):
        return {}  # no permission to look (or a transient error): receiving will tell
    attributes: dict[str, str] = response.get("Attributes", {})
    return attributes


def _redrive_policy(attributes: dict[str, str]) -> dict[str, Any]:
    try:
        policy = json.loads(attributes.get("RedrivePolicy") or "{}")
    except ValueError:
        return {}
    return policy if isinstance(policy, dict) else {}


def _url_of_arn(client: Any, arn: str) -> str:
    """arn:aws:sqs:REGION:ACCOUNT:NAME → the queue's URL (the same-region endpoint)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ConfigError(f"input queue's RedrivePolicy names {arn!r}, which is not an SQS queue ARN")
    try:
        response = client.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])
    except client.exceptions.QueueDoesNotExist:
        raise ConfigError(
            f"input queue's RedrivePolicy dead-letter target {arn} does not exist: create it or set DLQ_URL"
        ) from None
    except (BotoCoreError, ClientError) as exc:
        raise ConfigError(f"cannot find the input queue's redrive target {arn}: {exc}; set DLQ_URL") from None
    url: str = response["QueueUrl"]
    return url
