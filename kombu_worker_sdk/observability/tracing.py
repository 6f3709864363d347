"""Tracing hooks the pipeline and the transports call: a no-op unless OpenTelemetry is on.

Nothing here imports OpenTelemetry. With no ``OTEL_*`` variable set the active tracing is
:class:`Tracing`, whose methods return at once, so a worker without the ``[otel]`` extra pays
nothing. :func:`~.tracing_env.install_from_env` swaps in :class:`~.otel.OtelTracing` when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces endpoint, or ``OTEL_TRACES_EXPORTER``) is set.

The W3C ``traceparent`` travels beside each message (an SQS message attribute, a Kombu
header on the embedded transports), never in the body: the body's ``trace_id`` stays the
contract for producers that cannot set attributes, and the trace is derived from it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kombu_worker_sdk.message import TaskMessage

#: A message as publishers take it: a TaskMessage or a dict with its fields.
Message = Any

TRACEPARENT = "traceparent"
#: The message attributes the SQS receive asks for (Kombu's ``fetch_message_attributes``).
ATTRIBUTE_NAMES = (TRACEPARENT,)
#: Where the delivery leaves what the task span needs (``TaskRun.extras``).
DELIVERY_KEY = "otel.delivery"
StageCall = Callable[[], dict[int, BaseException]]


class TaskRun(Protocol):
    """What tracing reads of the pipeline's run (``pipeline.TaskRun``), defined here, low."""

    @property
    def extras(self) -> dict[str, Any]: ...

    @property
    def attempt(self) -> int: ...

    @property
    def message(self) -> TaskMessage | None: ...

    @property
    def children(self) -> Sequence[TaskMessage]: ...

    @property
    def outcome(self) -> Any: ...

    @property
    def log(self) -> Any: ...

    @property
    def runtime(self) -> Any: ...


class Tracing:
    """The no-op tracing: every hook returns at once and nothing is recorded."""

    enabled = False

    def run_stage(self, stage: str, runs: Sequence[TaskRun], call: StageCall) -> dict[int, BaseException]:
        """Run one stage call over ``runs``; the errors map is returned unchanged."""
        return call()

    def end_task(self, run: TaskRun) -> None:
        """The run has its outcome and its after-hooks ran."""

    def outgoing(self, msgs: Sequence[Message]) -> list[str | None] | None:
        """The traceparent to send beside each message, or None for none at all.

        Off, a producer's own OpenTelemetry (an app that imported it) still parents what
        it sends, through its current span; nothing is imported that the app did not.
        """
        if "opentelemetry.trace" not in sys.modules:
            return None
        parent = current_traceparent()
        return [parent] * len(msgs) if parent else None

    def log_ids(self) -> tuple[str, str] | None:
        """(trace_id, span_id) of the current span, for log lines that have none."""
        return None

    def shutdown(self) -> None:
        """Flush what is buffered (the worker is stopping)."""


def task_id_of(msg: Message) -> str | None:
    """A published message's task id, whether it is a TaskMessage or a dict."""
    task_id = msg.get("task_id")  # TaskMessage.get reads its fields like a dict
    return task_id if isinstance(task_id, str) else None


def current_traceparent() -> str | None:
    """The W3C traceparent of OpenTelemetry's current span, if there is a valid one."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


_active: Tracing = Tracing()


def active() -> Tracing:
    """The tracing in force for this process."""
    return _active


def install(tracing: Tracing) -> Tracing:
    """Make ``tracing`` the process's tracing (tests install one with an in-memory exporter)."""
    global _active
    previous, _active = _active, tracing
    return previous


def delivery_fields(
    traceparent: str | None, message_id: str | None, destination: str, system: str
) -> dict[str, Any]:
    """What a delivery hands the task span: kept only while tracing is on."""
    return {
        "traceparent": traceparent,
        "message_id": message_id,
        "destination": destination,
        "system": system,
    }
