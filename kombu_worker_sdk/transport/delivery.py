"""A received message and the transport operations that settle it.

The pipeline decides a disposition; a Delivery carries it out on its
transport. Embedded transports (``filesystem://``, ``memory://``) have no
visibility timeout, so a retry holds the unacked message in-process until its
delay passes; SQS (``transport/sqs/delivery.py``) changes the message's visibility
instead, so ApproximateReceiveCount and the redrive policy keep working.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Protocol

from kombu.message import Message

from kombu_worker_sdk.ids import random_hex
from kombu_worker_sdk.observability import tracing


class ClaimedRun(Protocol):
    """What the heartbeat and shutdown need of the pipeline's run (``pipeline.TaskRun``)."""

    @property
    def claim(self) -> Any: ...

    @property
    def task_id(self) -> str | None: ...

    @property
    def holder(self) -> str: ...


class Delivery(ABC):
    """One message as received, with ack / retry / dead-letter / release."""

    def __init__(self, message: Message, attempt: int = 1):
        self.message = message
        self.attempt = attempt
        self.received_at = time.monotonic()
        self._run: ClaimedRun | None = None
        self.holds = 0  # times held in-process through a backend outage
        self.token = random_hex(12)  # this delivery's claimant id, kept across holds
        self._settled = threading.Event()

    @property
    def run(self) -> ClaimedRun | None:
        """The pipeline's run, set while it works on the message (for the heartbeat)."""
        return self._run

    @run.setter
    def run(self, run: ClaimedRun | None) -> None:
        self._run = run
        extras = getattr(run, "extras", None)
        if isinstance(extras, dict) and tracing.active().enabled:  # what the task span needs
            extras[tracing.DELIVERY_KEY] = self.trace_fields()

    def trace_fields(self) -> dict[str, Any]:
        """The traceparent this message came with, its id and queue (OpenTelemetry's attributes)."""
        return tracing.delivery_fields(self.traceparent, None, self.destination, "kombu")

    @property
    def traceparent(self) -> str | None:
        """The W3C traceparent the producer sent beside the body, if any."""
        value = (self.message.headers or {}).get(tracing.TRACEPARENT)
        return value if isinstance(value, str) else None

    @property
    def destination(self) -> str:
        info = self.message.delivery_info or {}
        return str(info.get("routing_key") or info.get("exchange") or "")

    @property
    @abstractmethod
    def body(self) -> bytes | str:
        """The raw body, before any decoding."""

    @property
    def content_type(self) -> str | None:
        return self.message.content_type or None

    @property
    def settled(self) -> bool:
        return self._settled.is_set()

    def ack(self) -> None:
        self._settle(self._ack)

    def dead_letter(self, queue: str, reason: str, task_id: str | None) -> None:
        self._settle(lambda: self._dead_letter(queue, reason, task_id))

    def release(self) -> None:
        """Give an unstarted message back at once, for another worker to take."""
        self._settle(self._release)

    @abstractmethod
    def retry_in(self, delay: float) -> bool:
        """Arrange a later attempt; True if the transport redelivers it by itself."""

    def extend(self, seconds: int) -> None:
        """Keep the message invisible for ``seconds`` more; embedded queues need nothing."""

    def _settle(self, action: Any) -> None:
        if not self._settled.is_set():
            action()
            self._settled.set()

    @abstractmethod
    def _ack(self) -> None: ...

    @abstractmethod
    def _dead_letter(self, queue: str, reason: str, task_id: str | None) -> None: ...

    @abstractmethod
    def _release(self) -> None: ...
