"""Amazon SQS: Kombu transport options, the batched publisher and the SQS delivery.

Queues are predefined from their URLs, so the worker needs no ListQueues or
CreateQueue permission. Endpoint, region and credentials come from the
standard AWS environment (AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL, AWS_REGION /
AWS_DEFAULT_REGION, the credential chain), so one worker runs against AWS or a
local endpoint unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from kombu.message import Message

from .config import WorkerConfig
from .delivery import Delivery
from .errors import BackendUnavailableError, ConfigError, PublishError
from .publish import Publisher
from .sqs_acks import AckBatcher
from .sqs_queues import check_queues
from .sqs_sends import CoalescingSender

SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 1_048_576
SQS_MAX_VISIBILITY = 43_200  # 12 hours
PUBLISH_ATTEMPTS = 5


def queue_name(url_or_name: str) -> str:
    """The queue name Kombu knows a queue by: the last path segment of its URL."""
    return urlsplit(url_or_name).path.rstrip("/").rsplit("/", 1)[-1] if "://" in url_or_name else url_or_name


def region_of(config: WorkerConfig) -> str:
    region = config.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError("SQS needs a region: set region in the config, AWS_REGION or AWS_DEFAULT_REGION")
    return region


def queue_urls(config: WorkerConfig) -> dict[str, str]:
    """Every queue this worker touches, by Kombu name → URL; all must be given as URLs."""
    queues = [config.queue, config.next_queue, config.dead_letter_queue]
    urls = {queue_name(q): q for q in queues if q}
    bad = [q for q in urls.values() if not q.startswith(("https://", "http://"))]
    if bad:
        raise ConfigError(f"SQS queues must be given as URLs (QUEUE_URL etc.), got {bad[0]!r}")
    return urls


def sqs_transport_options(config: WorkerConfig) -> dict[str, Any]:
    """Kombu SQS transport options: predefined queues, long polling, receive count."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_SQS") or os.environ.get("AWS_ENDPOINT_URL")
    return {
        "predefined_queues": {name: {"url": url} for name, url in queue_urls(config).items()},
        "region": region_of(config),
        "wait_time_seconds": config.wait_time_seconds,
        "visibility_timeout": config.visibility_timeout,
        # Only used while every prefetch slot is busy: a short nap instead of a spin.
        "polling_interval": 0.05,
        "is_secure": not (endpoint or "https").startswith("http://"),
        "fetch_message_attributes": {"MessageSystemAttributeNames": ["ApproximateReceiveCount"]},
        "client-config": {"retries": {"mode": "standard", "max_attempts": 3}},
    }


def new_client(config: WorkerConfig) -> Any:
    """A boto3 SQS client honouring the standard AWS environment (thread-safe to share)."""
    return boto3.session.Session().client(
        "sqs",
        region_name=region_of(config),
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30),
    )


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

    def _send(self, queue: str, bodies: list[str]) -> None:
        url = self.url_for(queue)
        entries = [self._entry(i, body, url) for i, body in enumerate(bodies)]
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


def translate(exc: Exception, what: str) -> Exception:
    """Connection trouble → BackendUnavailableError; a refusal → PublishError (no secrets)."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "?")
        if code in {"ThrottlingException", "RequestThrottled", "ServiceUnavailable", "InternalError"}:
            return BackendUnavailableError(f"{what}: {code}")
        return PublishError(f"{what}: {code}: {exc.response.get('Error', {}).get('Message', '')}")
    return BackendUnavailableError(f"{what}: {type(exc).__name__}: {exc}")


class SqsDelivery(Delivery):
    """A message received through Kombu's SQS transport.

    Retry and release change the message's visibility instead of republishing a
    copy (Kombu's ``reject(requeue=True)``), so ApproximateReceiveCount keeps
    counting and a queue's redrive policy still fires.
    """

    def __init__(self, message: Message, publisher: SqsPublisher, acks: AckBatcher):
        info = message.delivery_info
        self.sqs_message: dict[str, Any] = info["sqs_message"]
        self.queue_url: str = info["sqs_queue"]
        attempt = int(self.sqs_message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        super().__init__(message, attempt)
        self.publisher = publisher
        self.acks = acks

    @property
    def body(self) -> bytes | str:
        # Read the raw SQS body: Kombu mistakes a body with a "properties" key for its envelope.
        body: str = self.sqs_message["Body"]
        return body

    @property
    def content_type(self) -> str | None:
        return None  # raw SQS bodies carry no content type; envelopes are checked when decoded

    @property
    def receipt_handle(self) -> str:
        handle: str = self.sqs_message["ReceiptHandle"]
        return handle

    def retry_in(self, delay: float) -> bool:
        # Whole seconds, rounded up: int(0.8) would make the message visible at once.
        seconds = min(max(math.ceil(delay), 1), SQS_MAX_VISIBILITY)
        self._settle(lambda: self._set_visibility(seconds))
        return True

    def extend(self, seconds: int) -> None:
        self._change_visibility(min(seconds, SQS_MAX_VISIBILITY))

    def _ack(self) -> None:
        self.acks.add(self.queue_url, self.receipt_handle)
        self._forget()

    def _forget(self) -> None:
        """Free the prefetch slot in Kombu without Kombu's own per-message delete."""
        self.message.channel.qos.ack(self.message.delivery_tag)

    def _dead_letter(self, queue: str, reason: str, task_id: str | None) -> None:
        attributes = {"error": reason, "task_id": task_id or "-", "attempts": self.attempt}
        self.publisher.publish_raw(queue, self.body, attributes)
        self.message.ack()

    def _release(self) -> None:
        self._set_visibility(0)

    def _set_visibility(self, seconds: int) -> None:
        """Change visibility, then forget the message in Kombu without deleting it."""
        try:
            self._change_visibility(seconds)
        finally:
            self._forget()

    def _change_visibility(self, seconds: int) -> None:
        try:
            self.publisher.client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=self.receipt_handle, VisibilityTimeout=seconds
            )
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "ChangeMessageVisibility") from exc


class SqsDeliveries:
    """Makes SqsDelivery objects, and stops Kombu from republishing copies at shutdown."""

    def __init__(self, publisher: SqsPublisher):
        self.publisher = publisher
        self.acks = AckBatcher(publisher.client)

    def __call__(self, message: Message) -> SqsDelivery:
        return SqsDelivery(message, self.publisher, self.acks)

    def close(self) -> None:
        self.acks.close()


def sqs_delivery_factory(runtime: Any) -> SqsDeliveries:
    publisher = runtime.publisher
    if not isinstance(publisher, SqsPublisher):
        publisher = SqsPublisher(runtime.config)
    check_queues(runtime, publisher.client)  # before the first receive: refuse a missing queue
    return SqsDeliveries(publisher)
