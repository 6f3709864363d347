"""``kombu-worker dlq redrive``: move dead letters back to the input queue once fixed.

On SQS it receives from the dead-letter queue, sends each body unchanged to the
input queue, and deletes from the dead-letter queue only what was sent, so a
crash mid-way duplicates at worst (task ids make that harmless) and loses
nothing. A redriven task that had FAILED may be claimed again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kombu import Connection

from .config import WorkerConfig
from .publish import KombuPublisher
from .runtime import broker_connection


def redrive(config: WorkerConfig, *, limit: int | None = None) -> int:
    """Move up to ``limit`` dead letters (all, when None) back; returns how many moved."""
    if config.is_sqs_broker:
        return _redrive_sqs(config, limit)
    return _redrive_embedded(config, limit)


def _redrive_sqs(config: WorkerConfig, limit: int | None) -> int:
    from .sqs import SqsPublisher, new_client
    from .sqs_queues import dead_letter_queue

    client = new_client(config)
    publisher = SqsPublisher(config, client)
    source = dead_letter_queue(config, client)  # where the worker sends them (DLQ_URL or redrive target)
    target = publisher.url_for(config.queue)
    moved = 0
    while limit is None or moved < limit:
        batch = min(10, (limit - moved) if limit is not None else 10)
        messages = client.receive_message(
            QueueUrl=source, MaxNumberOfMessages=batch, WaitTimeSeconds=1, VisibilityTimeout=60
        ).get("Messages", [])
        if not messages:
            break
        entries = [_entry(str(i), m["Body"], target) for i, m in enumerate(messages)]
        publisher._send_batch(target, entries)
        client.delete_message_batch(
            QueueUrl=source,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        moved += len(messages)
    return moved


def _entry(entry_id: str, body: str, url: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": body}
    if url.endswith(".fifo"):
        try:
            data = json.loads(body)
            group, dedup = str(data["job_id"]), str(data["task_id"])
        except (ValueError, KeyError, TypeError):
            group = dedup = "redrive"
        entry["MessageGroupId"] = group[:128]
        entry["MessageDeduplicationId"] = hashlib.sha256(f"{dedup}:{body}".encode()).hexdigest()
    return entry


def _redrive_embedded(config: WorkerConfig, limit: int | None) -> int:
    publisher = KombuPublisher(broker_connection(config), config.max_message_bytes)
    moved = 0
    with Connection(
        config.effective_broker_url, transport_options=broker_connection(config).transport_options
    ) as conn:
        queue = conn.SimpleQueue(config.effective_dead_letter_queue)
        try:
            while limit is None or moved < limit:
                try:
                    message = queue.get(block=True, timeout=0.5)
                except queue.Empty:
                    break
                body = (
                    message.body.decode("utf-8", "replace")
                    if isinstance(message.body, bytes)
                    else message.body
                )
                publisher._publish_many(config.queue, [body], {}, "application/json")
                message.ack()
                moved += 1
        finally:
            queue.close()
            publisher.close()
    return moved
