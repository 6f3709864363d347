"""The SQS delivery: settle a received message by visibility, never by republishing a copy."""

from __future__ import annotations

import math
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from kombu.message import Message

from kombu_worker_sdk.observability import tracing
from kombu_worker_sdk.transport.delivery import Delivery
from kombu_worker_sdk.transport.names import queue_name
from kombu_worker_sdk.transport.sqs.acks import AckBatcher
from kombu_worker_sdk.transport.sqs.options import translate
from kombu_worker_sdk.transport.sqs.publisher import SQS_MAX_VISIBILITY, SqsPublisher
from kombu_worker_sdk.transport.sqs.queues import check_queues


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
    def traceparent(self) -> str | None:
        # Present only because the receive asks for it (fetch_message_attributes in options.py):
        # SQS returns no message attributes that ReceiveMessage does not name.
        attribute = self.sqs_message.get("MessageAttributes", {}).get(tracing.TRACEPARENT, {})
        value = attribute.get("StringValue")
        return value if isinstance(value, str) else None

    def trace_fields(self) -> dict[str, Any]:
        return tracing.delivery_fields(
            self.traceparent, self.sqs_message.get("MessageId"), queue_name(self.queue_url), "aws_sqs"
        )

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
        if self.traceparent:  # a redriven copy continues the trace it came with
            attributes[tracing.TRACEPARENT] = self.traceparent
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
