"""OpenTelemetry spans of one fan-out/fan-in job (issue 12 §3), through the real consumer and lanes.

split → 3 parts → join (a fan-in barrier), on the embedded memory:// transport, with an
in-memory span exporter: one trace, each task a CONSUMER span parented to the task that
published it (through the ``traceparent`` header), each stage a span inside its task's span.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from kombu_worker_sdk import WorkerHooks
from kombu_worker_sdk.observability import tracing
from kombu_worker_sdk.observability.otel import OtelTracing, trace_id_of
from kombu_worker_sdk.pipeline import CORE_ORDER
from tests.conftest import wait_for
from tests.sample_hooks import split_message

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
BATCHED = {"batch_size": 4, "batch_wait_ms": 20, "concurrency": 2}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    previous = tracing.install(OtelTracing.with_exporter(spans))
    yield spans
    tracing.install(previous)


def task_spans(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    found = {}
    for span in spans.get_finished_spans():
        if span.kind is SpanKind.CONSUMER and span.attributes:
            found[str(span.attributes["kombu_worker.task_id"])] = span
    return found


def run_job(
    make_worker: Any, spans: InMemorySpanExporter, job: str, trace_id: str = TRACE, **settings: Any
) -> Any:
    running = make_worker(**settings)
    running.send({**split_message(job, parts=3), "trace_id": trace_id})
    wait_for(lambda: len(task_spans(spans)) == 5)
    return running


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


@pytest.mark.parametrize("settings", [{}, BATCHED], ids=["one-by-one", "batched"])
def test_one_job_is_one_trace_with_each_task_parented_to_its_producer(
    make_worker: Any, exporter: InMemorySpanExporter, settings: dict[str, Any]
) -> None:
    running = run_job(make_worker, exporter, "tj", **settings)
    tasks = task_spans(exporter)
    assert set(tasks) == {"tj-split", "tj-part-000", "tj-part-001", "tj-part-002", "tj-join"}
    everything = exporter.get_finished_spans()
    assert {s.context.trace_id for s in everything if s.context} == {int(TRACE, 16)}, "one trace"
    split, join = tasks["tj-split"], tasks["tj-join"]
    assert split.parent is None, "the first task is the root: its trace comes from the body"
    parts = [tasks[f"tj-part-00{i}"] for i in range(3)]
    for part in parts:
        assert part.parent is not None and part.parent.span_id == span_id(split)
        assert part.parent.is_remote, "the parent came with the message, not from this thread"
    assert join.parent is not None and join.parent.span_id in {span_id(p) for p in parts}
    for task in tasks.values():
        assert task.attributes is not None
        assert task.attributes["messaging.system"] == "kombu"
        assert task.attributes["messaging.destination.name"] == running.config.queue
        assert task.attributes["messaging.operation"] == "process"
        assert task.attributes["kombu_worker.disposition"] == "ack"
        assert task.name == f"process {running.config.queue}"


def test_each_stage_is_a_span_inside_its_task_span(make_worker: Any, exporter: InMemorySpanExporter) -> None:
    run_job(make_worker, exporter, "ts", **BATCHED)
    tasks = task_spans(exporter)
    stages = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.INTERNAL]
    for task in tasks.values():
        inside = sorted((s for s in stages if s.parent and s.parent.span_id == span_id(task)), key=start)
        assert [s.name for s in inside] == list(CORE_ORDER)
        assert all(start(task) <= start(s) <= end(s) <= end(task) for s in inside)
        assert all(s.status.status_code is not StatusCode.ERROR for s in inside)


def start(span: ReadableSpan) -> int:
    assert span.start_time is not None
    return span.start_time


def end(span: ReadableSpan) -> int:
    assert span.end_time is not None
    return span.end_time


def test_a_body_trace_id_that_is_not_hex_still_names_one_trace(
    make_worker: Any, exporter: InMemorySpanExporter
) -> None:
    run_job(make_worker, exporter, "tn", trace_id="order-42")
    assert {s.context.trace_id for s in exporter.get_finished_spans() if s.context} == {
        trace_id_of("order-42")
    }


def test_the_hooks_log_lines_carry_the_task_span_ids(
    make_worker: Any, exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    run_job(make_worker, exporter, "tl")
    tasks = task_spans(exporter)
    lines = [r for r in caplog.records if r.getMessage().startswith("processing tl-")]
    assert len(lines) == 5
    for record in lines:
        span = tasks[record.getMessage().removeprefix("processing ")]
        assert span.context is not None
        assert record.trace_id == TRACE  # type: ignore[attr-defined]
        assert record.span_id == f"{span.context.span_id:016x}"  # type: ignore[attr-defined]


def test_a_producers_traceparent_parents_the_task_and_stays_on_its_dead_letter(
    make_worker: Any, exporter: InMemorySpanExporter
) -> None:
    running = make_worker(max_attempts=1)
    producer = f"00-{TRACE}-00f067aa0ba902b7-01"
    body = json.dumps(split_message("tf", parts=1, permanent=True))
    running.send_raw(body, headers={"traceparent": producer}, content_type="application/json")
    wait_for(lambda: "tf-split" in task_spans(exporter))
    task = task_spans(exporter)["tf-split"]
    assert task.parent is not None and task.parent.span_id == 0x00F067AA0BA902B7
    assert task.context is not None and task.context.trace_id == int(TRACE, 16)
    assert task.status.status_code is StatusCode.ERROR and task.attributes is not None
    assert task.attributes["kombu_worker.disposition"] == "dead_letter"
    hooks = [s for s in exporter.get_finished_spans() if s.name == "hooks"]
    assert hooks[0].status.status_code is StatusCode.ERROR
    assert [e.name for e in hooks[0].events] == ["exception"]
    assert hooks[0].events[0].attributes is not None
    assert hooks[0].events[0].attributes["exception.type"].endswith("PermanentError")
    letters = wait_for(running.dead_letters)
    assert [headers["traceparent"] for _, headers in letters] == [producer]


class LeakyHooks(WorkerHooks):
    def load_pipeline(self, ctx: Any) -> None:
        return None

    def process(self, ctx: Any, msg: Any) -> Any:
        raise RuntimeError("cannot reach postgresql://app:s3cret@db:5432/jobs")

    def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
        return []


def test_exported_errors_carry_no_url_password(make_worker: Any, exporter: InMemorySpanExporter) -> None:
    running = make_worker(LeakyHooks(), max_attempts=1)
    running.send(split_message("tp", parts=1))
    wait_for(lambda: "tp-split" in task_spans(exporter))
    exported = [(s.status.description or "", s.events) for s in exporter.get_finished_spans()]
    texts = [text for text, _ in exported] + [
        str(dict(e.attributes or {})) for _, events in exported for e in events
    ]
    assert any("postgresql://app:***@db:5432/jobs" in t for t in texts)
    assert not any("s3cret" in t for t in texts)
