"""Publishing task messages: ``ctx.sqs.publish(queue, msgs)`` and the fan-out stage.

What the SDK publishes is the plain JSON task body, so consumers in any
language (and ``aws sqs receive-message``) can read it. The embedded publisher
sends through Kombu on its own producer connection; the SQS publisher
(``publish_sqs.py``) batches with SendMessageBatch.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kombu import Connection, Producer, Queue

from kombu_worker_sdk.errors import BackendUnavailableError, MessageTooLargeError, PublishError
from kombu_worker_sdk.message import TaskMessage
from kombu_worker_sdk.observability import tracing


def as_task(msg: TaskMessage | Mapping[str, Any]) -> TaskMessage:
    """A message as a validated TaskMessage (dicts are checked against the contract)."""
    return msg if isinstance(msg, TaskMessage) else TaskMessage.model_validate(dict(msg))


def encode(msg: TaskMessage | Mapping[str, Any]) -> str:
    """The JSON body of a message (dicts are validated as task messages first)."""
    return json.dumps(as_task(msg).to_body(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def trace_headers(traces: Sequence[str | None] | None) -> list[dict[str, Any]] | None:
    """One header dict per body, the traceparent where there is one; None when untraced."""
    if traces is None:
        return None
    return [{tracing.TRACEPARENT: t} if t else {} for t in traces]


class Publisher(ABC):
    """Sends task messages to a queue by name or URL."""

    def __init__(self, max_message_bytes: int = 262_144):
        self.max_message_bytes = max_message_bytes

    def publish(self, queue: str, msgs: Iterable[TaskMessage | Mapping[str, Any]]) -> int:
        """Send every message to ``queue``; returns how many were sent.

        With tracing on, each body goes with the W3C traceparent of the span that produced it.
        """
        items = list(msgs)
        bodies = self.check(queue, items)
        if bodies:
            self._send(queue, bodies, tracing.active().outgoing(items))
        return len(bodies)

    def check(self, queue: str, msgs: Iterable[TaskMessage | Mapping[str, Any]]) -> list[str]:
        """Encode ``msgs`` and refuse, before anything is sent or registered, what cannot go.

        Raises ConfigError when ``queue`` cannot be routed and MessageTooLargeError
        (naming the task and the limit) for a body over ``max_message_bytes``.
        """
        self.check_route(queue)
        bodies = []
        for msg in msgs:
            body = encode(msg)
            size = len(body.encode("utf-8"))
            if size > self.max_message_bytes:
                task_id = msg.task_id if isinstance(msg, TaskMessage) else msg.get("task_id")
                raise MessageTooLargeError(
                    f"task {task_id!r} is {size} bytes, over max_message_bytes={self.max_message_bytes}"
                )
            bodies.append(body)
        return bodies

    def check_route(self, queue: str) -> None:
        """Raise ConfigError if this publisher cannot reach ``queue``; embedded queues always can."""

    @abstractmethod
    def _send(self, queue: str, bodies: list[str], traces: Sequence[str | None] | None = None) -> None:
        """Send encoded bodies; ``traces`` (when given) is each body's traceparent or None."""

    @abstractmethod
    def publish_raw(self, queue: str, body: bytes | str, attributes: Mapping[str, Any]) -> None:
        """Send a body exactly as received (a dead-letter copy), with attributes beside it."""

    def close(self) -> None:
        """Release connections; the default has none."""


class KombuPublisher(Publisher):
    """Publishes through Kombu (embedded transports), serialised as JSON only."""

    def __init__(self, connection: Connection, max_message_bytes: int = 262_144):
        super().__init__(max_message_bytes)
        self.connection = connection
        self._producer: Producer | None = None
        self._lock = threading.Lock()  # Kombu producers are not thread-safe

    def _send(self, queue: str, bodies: list[str], traces: Sequence[str | None] | None = None) -> None:
        self._publish_many(queue, bodies, {}, "application/json", trace_headers(traces))

    def _publish_many(
        self,
        queue: str,
        bodies: list[str],
        headers: dict[str, Any],
        content_type: str,
        per_body: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Publish each body with ``headers`` and, when given, its own ``per_body`` headers."""
        with self._lock:
            try:
                producer = self._producer or Producer(self.connection.default_channel)
                self._producer = producer
                for i, body in enumerate(bodies):
                    producer.publish(
                        body,
                        routing_key=queue,
                        content_type=content_type,
                        content_encoding="utf-8",
                        headers={**headers, **per_body[i]} if per_body else headers,
                        declare=[Queue(queue, routing_key=queue)],
                        retry=True,
                    )
            except self.connection.connection_errors as exc:
                self._producer = None
                raise BackendUnavailableError(f"cannot publish to {queue!r}: {exc}") from exc
            except OSError as exc:
                raise PublishError(f"cannot publish to {queue!r}: {exc}") from exc

    def publish_raw(self, queue: str, body: bytes | str, attributes: Mapping[str, Any]) -> None:
        raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        # Opaque on purpose: a dead letter may not be valid JSON, and no consumer should
        # decode it by accident. ``dlq redrive`` sends it back as JSON.
        self._publish_many(queue, [raw], dict(attributes), "application/octet-stream")

    def close(self) -> None:
        with self._lock:
            self._producer = None
            self.connection.release()


class MemoryPublisher(Publisher):
    """Keeps what is published, per queue; for unit tests of hooks."""

    def __init__(self, max_message_bytes: int = 262_144):
        super().__init__(max_message_bytes)
        self.sent: dict[str, list[dict[str, Any]]] = {}
        self.raw: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        #: The traceparent each task was sent with, by task_id (tracing on only).
        self.traceparents: dict[str, str] = {}
        self._lock = threading.Lock()

    def _send(self, queue: str, bodies: list[str], traces: Sequence[str | None] | None = None) -> None:
        decoded = [json.loads(b) for b in bodies]
        with self._lock:
            self.sent.setdefault(queue, []).extend(decoded)
            for body, trace in zip(decoded, traces or [], strict=False):
                if trace:
                    self.traceparents[body["task_id"]] = trace

    def publish_raw(self, queue: str, body: bytes | str, attributes: Mapping[str, Any]) -> None:
        raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        with self._lock:
            self.raw.setdefault(queue, []).append((raw, dict(attributes)))

    def all(self) -> list[dict[str, Any]]:
        return [m for msgs in self.sent.values() for m in msgs]
