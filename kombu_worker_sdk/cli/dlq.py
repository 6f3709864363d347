"""Dead letters: look at them without consuming them, and move them back once fixed.

``kombu-worker dlq redrive`` and the dashboard's redrive buttons both call
:func:`redrive`; ``ids`` picks messages (SQS MessageIds, or the embedded
transport's file names), None takes them all.

On SQS it receives from the dead-letter queue, sends each body unchanged to the
input queue, and deletes from the dead-letter queue only what was sent, so a
crash mid-way duplicates at worst (task ids make that harmless) and loses
nothing. A redriven task that had FAILED may be claimed again. Messages received
but not picked are made visible again at once (ChangeMessageVisibility 0).
On Kombu's filesystem transport each message is one file: a file is claimed by
renaming it (atomic, as Kombu's own ``_get`` moves it), published, then removed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kombu import Connection

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import ConfigError
from kombu_worker_sdk.observability.tracing import TRACEPARENT
from kombu_worker_sdk.transport import broker_connection
from kombu_worker_sdk.transport.publish import KombuPublisher

#: How long a peeked SQS message stays hidden before it is made visible again (it is reset to 0
#: right after the peek; this bounds how long a crashed peek hides it).
PEEK_VISIBILITY_SECONDS = 10
CLAIMS_FOLDER = ".redrive"


@dataclass(frozen=True)
class DeadLetter:
    """One dead-letter message as the worker left it: its body and the error beside it."""

    message_id: str
    body: str
    attributes: dict[str, str] = field(default_factory=dict)
    receive_count: int | None = None
    sent_at: float | None = None  # epoch seconds

    @property
    def error(self) -> str:
        return self.attributes.get("error") or self.attributes.get("x-error") or ""

    @property
    def task_id(self) -> str:
        return self.attributes.get("task_id") or self.attributes.get("x-task-id") or ""


def redrive(config: WorkerConfig, *, limit: int | None = None, ids: Collection[str] | None = None) -> int:
    """Move up to ``limit`` dead letters (all, when None; only ``ids`` when given) back."""
    if config.is_sqs_broker:
        return _redrive_sqs(config, limit, ids)
    if config.effective_broker_url.startswith("filesystem://"):
        return _redrive_files(config, limit, ids)
    if ids is not None:
        raise ConfigError("picking dead letters by id needs the filesystem:// or sqs:// broker")
    return _redrive_kombu(config, limit)


def peek(config: WorkerConfig, *, limit: int = 100) -> list[DeadLetter]:
    """Up to ``limit`` dead letters, oldest first, left in the queue."""
    if config.is_sqs_broker:
        return _peek_sqs(config, limit)
    if config.effective_broker_url.startswith("filesystem://"):
        return [letter for _path, letter in _dead_letter_files(config, limit)]
    return []  # memory:// lives in another process: nothing to see from here


# -- SQS -------------------------------------------------------------------
def _peek_sqs(config: WorkerConfig, limit: int) -> list[DeadLetter]:
    from kombu_worker_sdk.transport.sqs.options import new_client
    from kombu_worker_sdk.transport.sqs.publisher import SqsPublisher

    client = new_client(config)
    source = SqsPublisher(config, client).url_for(config.effective_dead_letter_queue)
    seen: dict[str, DeadLetter] = {}
    handles: list[str] = []
    try:
        while len(seen) < limit:
            got = _receive(client, source, min(10, limit - len(seen)), PEEK_VISIBILITY_SECONDS, not seen)
            if not got:
                break
            for message in got:
                handles.append(message["ReceiptHandle"])
                seen.setdefault(message["MessageId"], _sqs_letter(message))
    finally:
        _make_visible(client, source, handles)
    return sorted(seen.values(), key=lambda letter: letter.sent_at or 0)


def _redrive_sqs(config: WorkerConfig, limit: int | None, ids: Collection[str] | None) -> int:
    from kombu_worker_sdk.transport.sqs.options import new_client
    from kombu_worker_sdk.transport.sqs.publisher import SqsPublisher
    from kombu_worker_sdk.transport.sqs.queues import dead_letter_queue

    client = new_client(config)
    publisher = SqsPublisher(config, client)
    source = dead_letter_queue(config, client)  # where the worker sends them (DLQ_URL or redrive target)
    target = publisher.url_for(config.queue)
    wanted = set(ids) if ids is not None else None
    moved = 0
    skipped: list[str] = []
    try:
        while (limit is None or moved < limit) and (wanted is None or wanted):
            batch = min(10, (limit - moved) if limit is not None else 10)
            messages = _receive(client, source, batch, 60, True)
            if not messages:
                break
            picked = [m for m in messages if wanted is None or m["MessageId"] in wanted]
            skipped.extend(m["ReceiptHandle"] for m in messages if m not in picked)
            if not picked:
                continue
            publisher._send_batch(
                target, [_traced(_entry(str(i), m["Body"], target), m) for i, m in enumerate(picked)]
            )
            client.delete_message_batch(
                QueueUrl=source,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(picked)],
            )
            moved += len(picked)
            if wanted is not None:
                wanted -= {m["MessageId"] for m in picked}
    finally:
        _make_visible(client, source, skipped)
    return moved


def _receive(client: Any, url: str, count: int, visibility: int, wait: bool) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = client.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=count,
        WaitTimeSeconds=1 if wait else 0,
        VisibilityTimeout=visibility,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return messages


def _make_visible(client: Any, url: str, handles: list[str]) -> None:
    """Give received messages back at once, rather than after their visibility timeout."""
    for start in range(0, len(handles), 10):
        chunk = handles[start : start + 10]
        client.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(chunk)],
        )


def _sqs_letter(message: dict[str, Any]) -> DeadLetter:
    attrs = message.get("Attributes", {})
    sent = attrs.get("SentTimestamp")
    return DeadLetter(
        message_id=message["MessageId"],
        body=message["Body"],
        attributes={
            k: str(v.get("StringValue", "")) for k, v in message.get("MessageAttributes", {}).items()
        },
        receive_count=int(attrs["ApproximateReceiveCount"]) if "ApproximateReceiveCount" in attrs else None,
        sent_at=int(sent) / 1000 if sent else None,
    )


def _traced(entry: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """A redriven letter keeps the W3C traceparent it was dead-lettered with (tracing's parent)."""
    value = message.get("MessageAttributes", {}).get(TRACEPARENT, {}).get("StringValue")
    if value:
        entry["MessageAttributes"] = {TRACEPARENT: {"DataType": "String", "StringValue": value}}
    return entry


def _trace_header(headers: dict[str, Any]) -> dict[str, Any]:
    value = headers.get(TRACEPARENT)
    return {TRACEPARENT: value} if isinstance(value, str) and value else {}


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


# -- Kombu's filesystem transport --------------------------------------------
def queue_folder(config: WorkerConfig) -> Path:
    """Where the filesystem transport keeps message files (see runtime.broker_connection)."""
    return (config.data_dir / "queue").resolve()


def message_files(config: WorkerConfig, queue: str) -> list[Path]:
    """The queue's message files, oldest first: Kombu names them ``<ms>_<uuid>.<queue>.msg``."""
    try:
        names = sorted(os.listdir(queue_folder(config)))
    except FileNotFoundError:
        return []
    return [queue_folder(config) / n for n in names if n.partition(".")[2] == f"{queue}.msg"]


def _dead_letter_files(config: WorkerConfig, limit: int | None) -> Iterator[tuple[Path, DeadLetter]]:
    count = 0
    for path in message_files(config, config.effective_dead_letter_queue):
        if limit is not None and count >= limit:
            return
        try:
            letter = _file_letter(path)
        except (OSError, ValueError):
            continue  # taken meanwhile, or half-written
        count += 1
        yield path, letter


def _file_letter(path: Path) -> DeadLetter:
    payload = json.loads(path.read_text(encoding="utf-8"))
    body = payload.get("body", "")
    if payload.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body).decode("utf-8", "replace")
    headers = payload.get("headers") or {}
    attempts = headers.get("x-attempts")
    return DeadLetter(
        message_id=path.name,
        body=str(body),
        attributes={str(k): str(v) for k, v in headers.items()},
        receive_count=int(attempts) if isinstance(attempts, int) else None,
        sent_at=path.stat().st_mtime,
    )


def _redrive_files(config: WorkerConfig, limit: int | None, ids: Collection[str] | None) -> int:
    claims = queue_folder(config) / CLAIMS_FOLDER
    claims.mkdir(parents=True, exist_ok=True)
    publisher = KombuPublisher(broker_connection(config), config.max_message_bytes)
    moved = 0
    try:
        for path, letter in _dead_letter_files(config, None):
            if limit is not None and moved >= limit:
                break
            if ids is not None and letter.message_id not in ids:
                continue
            claimed = claims / path.name
            try:
                os.rename(path, claimed)  # atomic: of two redrives, one gets the file
            except FileNotFoundError:
                continue
            try:
                publisher._publish_many(
                    config.queue, [letter.body], _trace_header(letter.attributes), "application/json"
                )
            except BaseException:
                os.rename(claimed, path)  # not sent: put it back
                raise
            claimed.unlink()
            moved += 1
    finally:
        publisher.close()
    return moved


def _redrive_kombu(config: WorkerConfig, limit: int | None) -> int:
    """memory:// (and any other Kombu transport): take messages in order through Kombu."""
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
                publisher._publish_many(
                    config.queue, [body], _trace_header(message.headers or {}), "application/json"
                )
                message.ack()
                moved += 1
        finally:
            queue.close()
            publisher.close()
    return moved
