"""OpenTelemetry tracing (the ``[otel]`` extra): a CONSUMER span per task, a span per stage.

Imported only by :func:`~.tracing.install_from_env` (or a test), so a worker without the
extra never loads OpenTelemetry. The stages of one task run on different lanes (threads),
so the task span lives on the run (``TaskRun.extras``), never in a thread's "current span":
each stage span is started with it as explicit parent. Stage spans are recorded after
their call, with its start and end times, because one call may carry a micro-batch.
"""

from __future__ import annotations

import hashlib
import os
import time
import traceback
from collections.abc import Sequence
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kombu_worker_sdk.errors import ConfigError, HoldMessage, SkipMessage
from kombu_worker_sdk.masking import mask_url
from kombu_worker_sdk.observability.tracing import (
    DELIVERY_KEY,
    Message,
    StageCall,
    TaskRun,
    Tracing,
    current_traceparent,
    task_id_of,
)
from kombu_worker_sdk.version import __version__

TASK_SPAN = "otel.task_span"
#: The trace id a new root span must take (derived from the body's ``trace_id``).
_root_trace_id: ContextVar[int | None] = ContextVar("kombu_worker_root_trace_id", default=None)
#: The runs whose stage is being called on this thread: their children's traceparents.
_producing: ContextVar[Sequence[TaskRun] | None] = ContextVar("kombu_worker_producing", default=None)


class BodyTraceIds(RandomIdGenerator):
    """Random ids, except that a task with no traceparent keeps its body's trace."""

    def generate_trace_id(self) -> int:
        return _root_trace_id.get() or super().generate_trace_id()


def trace_id_of(body_trace_id: str) -> int:
    """The 128-bit trace id of a body's ``trace_id``: itself if it is 32 hex digits, else a hash."""
    text = body_trace_id.lower()
    if len(text) == 32 and all(c in "0123456789abcdef" for c in text) and int(text, 16):
        return int(text, 16)
    return int(hashlib.sha256(body_trace_id.encode()).hexdigest()[:32], 16) or 1


def traceparent_of(span: Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


class OtelTracing(Tracing):
    """Spans for every task and stage, through one tracer provider."""

    enabled = True

    def __init__(self, provider: TracerProvider):
        self.provider = provider
        self.tracer = provider.get_tracer("kombu_worker_sdk", __version__)
        self.propagator = TraceContextTextMapPropagator()

    @classmethod
    def from_env(cls, service_name: str) -> OtelTracing:
        """OTLP/HTTP (the exporter reads its OTEL_EXPORTER_OTLP_* variables) or the console."""
        processors: list[SpanProcessor] = []
        for name in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(","):
            processors.append(BatchSpanProcessor(_exporter(name.strip().lower())))
        return cls.with_processors(processors, service_name)

    @classmethod
    def with_exporter(cls, exporter: SpanExporter, service_name: str = "kombu-worker") -> OtelTracing:
        """Export every span as it ends (tests: an in-memory exporter)."""
        return cls.with_processors([SimpleSpanProcessor(exporter)], service_name)

    @classmethod
    def with_processors(cls, processors: Sequence[SpanProcessor], service_name: str) -> OtelTracing:
        name = os.environ.get("OTEL_SERVICE_NAME") or service_name
        provider = TracerProvider(
            resource=Resource.create({"service.name": name}), id_generator=BodyTraceIds()
        )
        for processor in processors:
            provider.add_span_processor(processor)
        return cls(provider)

    # -- the pipeline's hooks ---------------------------------------------
    def run_stage(self, stage: str, runs: Sequence[TaskRun], call: StageCall) -> dict[int, BaseException]:
        started = time.time_ns()
        token = _producing.set(runs)
        attached = self._attach(runs)
        try:
            errors = call()
        finally:
            if attached is not None:
                otel_context.detach(attached)
            _producing.reset(token)
        ended = time.time_ns()
        for i, run in enumerate(runs):
            self._stage_span(stage, self._task_span(run, started), started, ended, errors.get(i))
            self._bind_logs(run)
        return errors

    def end_task(self, run: TaskRun) -> None:
        span: Span | None = run.extras.pop(TASK_SPAN, None)
        if span is None:
            return
        outcome = run.outcome
        if run.message is not None:
            span.set_attributes(
                {"kombu_worker.job_id": run.message.job_id, "kombu_worker.task_id": run.message.task_id}
            )
        if outcome is not None:
            span.set_attribute("kombu_worker.disposition", outcome.disposition.value)
            if outcome.disposition.value != "ack" and not isinstance(outcome.error, HoldMessage):
                span.set_status(Status(StatusCode.ERROR, outcome.reason[:500]))
        span.end()

    def outgoing(self, msgs: Sequence[Message]) -> list[str | None] | None:
        runs = _producing.get()
        return [self._parent_of(task_id_of(msg), runs) for msg in msgs]

    def log_ids(self) -> tuple[str, str] | None:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"

    def shutdown(self) -> None:
        self.provider.shutdown()

    # -- spans ------------------------------------------------------------
    def _task_span(self, run: TaskRun, started: int) -> Span:
        """The run's CONSUMER span, started (at its first stage's start) when first needed."""
        span: Span | None = run.extras.get(TASK_SPAN)
        if span is None:
            span = run.extras[TASK_SPAN] = self._start_task(run, started)
        return span

    def _start_task(self, run: TaskRun, started: int) -> Span:
        fields: dict[str, Any] = run.extras.get(DELIVERY_KEY) or {}
        parent = self._remote_parent(fields.get("traceparent"))
        destination = fields.get("destination") or run.runtime.config.queue
        attributes: dict[str, Any] = {
            "messaging.system": fields.get("system") or "kombu",
            "messaging.destination.name": destination,
            "messaging.operation": "process",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "kombu_worker.attempt": run.attempt,
            "kombu_worker.worker_id": run.runtime.worker_id,
        }
        if fields.get("message_id"):
            attributes["messaging.message.id"] = fields["message_id"]
        body_trace = run.message.trace_id if run.message is not None else None
        token = _root_trace_id.set(trace_id_of(body_trace) if parent is None and body_trace else None)
        try:
            return self.tracer.start_span(
                f"process {destination}",
                context=parent or otel_context.Context(),  # a root: never an ambient span
                kind=SpanKind.CONSUMER,
                attributes=attributes,
                start_time=started,
            )
        finally:
            _root_trace_id.reset(token)

    def _remote_parent(self, traceparent: str | None) -> otel_context.Context | None:
        """The producer's span from a W3C traceparent; None if absent or malformed."""
        if not traceparent:
            return None
        context = self.propagator.extract({"traceparent": traceparent}, context=otel_context.Context())
        return context if trace.get_current_span(context).get_span_context().is_valid else None

    def _stage_span(
        self, stage: str, task: Span, started: int, ended: int, error: BaseException | None
    ) -> None:
        span = self.tracer.start_span(
            stage,
            context=trace.set_span_in_context(task),
            kind=SpanKind.INTERNAL,
            attributes={"kombu_worker.stage": stage},
            start_time=started,
        )
        if error is not None:
            span.set_attribute(
                "kombu_worker.signal" if isinstance(error, SkipMessage) else "error.type",
                type(error).__name__,
            )
            if not isinstance(error, SkipMessage):
                message = mask_url(str(error))[:2000]  # spans leave the process: no URL passwords
                stack = mask_url("".join(traceback.format_exception(error)))
                span.record_exception(error, {"exception.message": message, "exception.stacktrace": stack})
                span.set_status(Status(StatusCode.ERROR, message[:500]))
        span.end(end_time=ended)

    @staticmethod
    def _attach(runs: Sequence[TaskRun]) -> Token[otel_context.Context] | None:
        """One run with a span: make it current for this call (user loggers, user OTel)."""
        if len(runs) != 1 or TASK_SPAN not in runs[0].extras:
            return None
        return otel_context.attach(trace.set_span_in_context(runs[0].extras[TASK_SPAN]))

    @staticmethod
    def _bind_logs(run: TaskRun) -> None:
        """The run's log lines (the hooks' ``ctx.logger`` too) carry its trace and span ids."""
        span: Span = run.extras[TASK_SPAN]
        context = span.get_span_context()
        extra = run.log.extra
        if isinstance(extra, dict):
            extra["trace_id"] = f"{context.trace_id:032x}"
            extra["span_id"] = f"{context.span_id:016x}"

    @staticmethod
    def _parent_of(task_id: str | None, runs: Sequence[TaskRun] | None) -> str | None:
        """The span of the run that produced the task (its ``publish_next`` returned it)."""
        if runs:
            for run in reversed(runs):
                span = run.extras.get(TASK_SPAN)
                if span is not None and any(child.task_id == task_id for child in run.children):
                    return traceparent_of(span)
            if len(runs) == 1 and TASK_SPAN in runs[0].extras:
                return traceparent_of(runs[0].extras[TASK_SPAN])
        return current_traceparent()


def _exporter(name: str) -> SpanExporter:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers, timeout from OTEL_EXPORTER_OTLP_*
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r}: this worker exports 'otlp' or 'console'")
