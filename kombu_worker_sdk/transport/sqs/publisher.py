"""The SQS publisher: plain-JSON bodies through batched SendMessageBatch calls.

Queues are predefined from their URLs, so the worker needs no ListQueues or
CreateQueue permission. Endpoint, region and credentials come from the
standard AWS environment (AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL, AWS_REGION /
AWS_DEFAULT_REGION, the credential chain), so one worker runs against AWS or a
local endpoint unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import ConfigError, PublishError
from kombu_worker_sdk.observability.tracing import TRACEPARENT
from kombu_worker_sdk.transport.publish import Publisher
from kombu_worker_sdk.transport.sqs.options import new_client, queue_urls, translate
from kombu_worker_sdk.transport.sqs.sends import CoalescingSender

SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 1_048_576
SQS_MAX_VISIBILITY = 43_200  # 12 hours
PUBLISH_ATTEMPTS = 5


class SqsPublisher(Publisher):
    """Plain-JSON bodies via SendMessageBatch: 10 entries and 1 MiB a call, failed entries retried."""

    def __init__(self, config: WorkerConfig, client: Any = None):
        super().__init__(config.max_message_bytes)
        self.config = config
        self.client = client or new_client(config)
        self._urls = queue_urls(config)
        self._lock = threading.Lock()
        # Only concurrent messages can share batches; alone, a window would just add latency.
        self._coalescer = CoalescingSender(self._send_batches) if config.concurrency > 1 else None

    def url_for(self, queue: str) -> str:
        if queue.startswith(("https://", "http://")):
            return queue
        try:
            return self._urls[queue]
        except KeyError:
            # A routing mistake, not an outage: ConfigError is permanent, so nothing is retried.
            raise ConfigError(
                f"queue {queue!r} is not configured: give it as an SQS queue URL "
                "(NEXT_QUEUE_URL / next_queue, or a full URL in the message's queue)"
            ) from None

    def check_route(self, queue: str) -> None:
        self.url_for(queue)

    def _send(self, queue: str, bodies: list[str], traces: Sequence[str | None] | None = None) -> None:
        url = self.url_for(queue)
        entries = [self._entry(i, body, url) for i, body in enumerate(bodies)]
        for entry, trace in zip(entries, traces or [], strict=False):
            if trace:  # W3C trace context beside the body: the body stays the plain contract
                entry["MessageAttributes"] = {TRACEPARENT: {"DataType": "String", "StringValue": trace}}
        if self._coalescer is not None and len(entries) < SQS_BATCH_ENTRIES:
            self._coalescer.send(url, entries)
        else:
            self._send_batches(url, entries)

    def _send_batches(self, url: str, entries: list[dict[str, Any]]) -> None:
        for batch in batches(entries):
            self._send_batch(url, batch)

    def publish_raw(self, queue: str, body: bytes | str, attributes: Mapping[str, Any]) -> None:
        raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        entry: dict[str, Any] = {"Id": "0", "MessageBody": raw or "(empty body)"}
        entry["MessageAttributes"] = {
            key: {"DataType": "String", "StringValue": sqs_text(str(value))[:1024] or "-"}
            for key, value in attributes.items()
        }
        url = self.url_for(queue)
        if url.endswith(".fifo"):
            entry["MessageGroupId"] = "dead-letters"
            entry["MessageDeduplicationId"] = hashlib.sha256(raw.encode()).hexdigest()
        self._send_batch(url, [entry])

    def _entry(self, index: int, body: str, url: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"Id": str(index), "MessageBody": body}
        if url.endswith(".fifo"):
            data = json.loads(body)
            entry["MessageGroupId"] = str(data[self.config.fifo_group_by])[:128]
            entry["MessageDeduplicationId"] = dedup_id(data["task_id"])
        return entry

    def _send_batch(self, url: str, entries: list[dict[str, Any]]) -> None:
        """Send one batch, retrying only the entries SQS reports as failed."""
        pending = entries
        for _ in range(PUBLISH_ATTEMPTS):
            try:
                response = self.client.send_message_batch(QueueUrl=url, Entries=pending)
            except (BotoCoreError, ClientError) as exc:
                raise translate(exc, f"SendMessageBatch to {url}") from exc
            failed = {f["Id"]: f for f in response.get("Failed", [])}
            if not failed:
                return
            permanent = [f for f in failed.values() if f.get("SenderFault")]
            if permanent:
                raise PublishError(f"SQS refused {len(permanent)} message(s): {permanent[0].get('Message')}")
            pending = [e for e in pending if e["Id"] in failed]
        raise PublishError(f"{len(pending)} message(s) still failing after {PUBLISH_ATTEMPTS} attempts")


def batches(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split entries into SendMessageBatch calls of ≤10 entries and ≤1 MiB."""
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_size = len(entry["MessageBody"].encode("utf-8"))
        if current and (len(current) == SQS_BATCH_ENTRIES or size + entry_size > SQS_BATCH_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        out.append(current)
    return out


_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def sqs_text(text: str) -> str:
    """Escape characters SQS refuses in string values (an error text may quote hostile input)."""
    return _NOT_SQS_TEXT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def dedup_id(task_id: str) -> str:
    """SQS deduplication ids are ≤128 chars of a restricted set: hash anything else."""
    allowed = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    ok = len(task_id) <= 128 and all(c.isalnum() or c in allowed for c in task_id)
    return task_id if ok else hashlib.sha256(task_id.encode()).hexdigest()
