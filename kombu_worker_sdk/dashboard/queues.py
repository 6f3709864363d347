"""Queue depths for each step's input queue and its dead-letter queue.

On SQS they are GetQueueAttributes' approximate counts. SQS has no attribute for the
age of the oldest message (that is CloudWatch's ApproximateAgeOfOldestMessage), and
receiving from an input queue would raise its messages' receive counts, so the age is
shown only for the embedded transport. Kombu's filesystem transport keeps one file per
visible message (a received one is moved out of the folder), so visible is a file count,
the oldest age comes from file times, and in flight is what live workers on that queue
report in their heartbeat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kombu_worker_sdk.cli.dlq import message_files
from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.state.monitor import WorkerRecord


@dataclass(frozen=True)
class QueueStats:
    name: str
    role: str  # "input" or "dead letters"
    visible: int | None
    inflight: int | None
    delayed: int | None
    oldest_seconds: float | None
    error: str = ""


def step_config(config: WorkerConfig, queue: str) -> WorkerConfig:
    """The config for one step's queue: its DLQ is the configured one only for config.queue."""
    if queue == config.queue:
        return config
    return config.model_copy(update={"queue": queue, "dead_letter_queue": None})


def queue_stats(config: WorkerConfig, queues: list[str], workers: list[WorkerRecord]) -> list[QueueStats]:
    out: list[QueueStats] = []
    for queue in queues:
        step = step_config(config, queue)
        for name, role in ((queue, "input"), (step.effective_dead_letter_queue, "dead letters")):
            if config.is_sqs_broker:
                out.append(_sqs_stats(config, name, role))
            else:
                out.append(_file_stats(step, name, role, workers))
    return out


def _file_stats(config: WorkerConfig, name: str, role: str, workers: list[WorkerRecord]) -> QueueStats:
    if not config.effective_broker_url.startswith("filesystem://"):
        return QueueStats(name, role, None, None, None, None, "memory:// queues live inside one process")
    times = []
    for path in message_files(config, name):
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue  # received meanwhile
    inflight = sum(w.inflight for w in workers if w.queue == name) if role == "input" else 0
    oldest = time.time() - min(times) if times else None
    return QueueStats(name, role, len(times), inflight, None, oldest)


def _sqs_stats(config: WorkerConfig, name: str, role: str) -> QueueStats:
    from botocore.exceptions import BotoCoreError, ClientError

    from kombu_worker_sdk.transport.sqs.options import new_client
    from kombu_worker_sdk.transport.sqs.publisher import SqsPublisher

    try:
        client = new_client(config)
        url = SqsPublisher(config, client).url_for(name)
        attrs = client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
    except (BotoCoreError, ClientError) as exc:
        return QueueStats(
            name, role, None, None, None, None, f"GetQueueAttributes failed: {type(exc).__name__}"
        )
    except Exception as exc:  # e.g. a queue given by name on SQS (PublishError)
        return QueueStats(name, role, None, None, None, None, str(exc)[:200])
    return QueueStats(
        name,
        role,
        int(attrs.get("ApproximateNumberOfMessages", 0)),
        int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        None,
    )
