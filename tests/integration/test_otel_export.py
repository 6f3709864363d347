"""OTLP/HTTP from real worker processes on SQS (moto) + S3 + PostgreSQL (issue 12 §3).

Three ``kombu-worker`` subprocesses (split → parts → join), each with only
``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a small receiver this test runs on 127.0.0.1.
The receiver decodes what arrives as OpenTelemetry's ``ExportTraceServiceRequest``: one
trace, each step's task spans parented (through the SQS ``traceparent`` attribute) to the
task that sent them, messaging attributes from the SQS record, stage spans inside.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("opentelemetry.proto")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from kombu_worker_sdk.pipeline import CORE_ORDER
from tests.conftest import wait_for
from tests.integration.stack import Stack
from tests.integration.test_sqs_pipeline import split

pytestmark = pytest.mark.integration
TRACE = "0af7651916cd43dd8448eb211c80319c"


@dataclass
class Received:
    service: str
    span: Span


class Collector:
    """An OTLP/HTTP trace receiver: POST /v1/traces with a protobuf body."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self.paths: set[str] = set()
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                collector.take(self.path, self.headers.get("Content-Type", ""), body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, path: str, content_type: str, body: bytes) -> None:
        assert content_type == "application/x-protobuf"
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            self.paths.add(path)
            for resource_spans in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(Received(attrs["service.name"], s) for s in scope_spans.spans)

    def tasks(self) -> dict[str, Received]:
        with self.lock:
            return {
                attribute(r.span, "kombu_worker.task_id"): r for r in self.spans if r.span.kind == CONSUMER
            }


CONSUMER = Span.SpanKind.SPAN_KIND_CONSUMER


def attribute(span: Span, key: str) -> Any:
    for item in span.attributes:
        if item.key == key:
            value = item.value
            return value.string_value if value.HasField("string_value") else value.int_value
    return None


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def test_three_workers_export_one_trace_parented_across_sqs(stack: Stack, collector: Collector) -> None:
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    stack.send("in", {**split(stack, "o1", parts=3), "trace_id": TRACE})  # plain boto3: no attribute
    steps = {"split": ("in", "next"), "parts": ("next", "last"), "join": ("last", None)}
    for name, (queue, next_queue) in steps.items():
        stack.start_worker(
            env=stack.env(queue, next_queue, OTEL_SERVICE_NAME=f"step-{name}", **otel), log_name=name
        )
    wait_for(lambda: (stack.job("o1") or ("",))[0] == "DONE", timeout=90, interval=0.3)
    wait_for(lambda: len(collector.tasks()) == 5, timeout=60, interval=0.2)
    assert stack.stop_workers() == [0, 0, 0]
    assert collector.paths == {"/v1/traces"}

    tasks = collector.tasks()
    assert {r.span.trace_id.hex() for r in collector.spans} == {TRACE}, "one trace, from the body"
    split_span = tasks["o1-split"].span
    parts = [tasks[f"o1-part-00{i}"].span for i in range(3)]
    join = tasks["o1-join"].span
    assert split_span.parent_span_id == b"", "the first task is the root"
    assert all(p.parent_span_id == split_span.span_id for p in parts), "parented across SQS"
    assert join.parent_span_id in {p.span_id for p in parts}
    services = {task: r.service for task, r in tasks.items()}
    assert services == {
        "o1-split": "step-split",
        **{f"o1-part-00{i}": "step-parts" for i in range(3)},
        "o1-join": "step-join",
    }
    queue_names = {"o1-split": "in", "o1-join": "last", **{f"o1-part-00{i}": "next" for i in range(3)}}
    for task_id, received in tasks.items():
        span = received.span
        assert attribute(span, "messaging.system") == "aws_sqs"
        assert (
            attribute(span, "messaging.destination.name")
            == stack.queues[queue_names[task_id]].rsplit("/", 1)[-1]
        )
        assert attribute(span, "messaging.operation") == "process"
        assert len(attribute(span, "messaging.message.id") or "") >= 32  # the SQS MessageId
        inside = [
            r.span.name
            for r in collector.spans
            if r.span.parent_span_id == span.span_id and r.span.kind == Span.SpanKind.SPAN_KIND_INTERNAL
        ]
        assert sorted(inside) == sorted(CORE_ORDER)


def test_a_producers_sqs_traceparent_parents_the_task_and_follows_its_dead_letter_back(
    stack: Stack, collector: Collector
) -> None:
    producer = f"00-{TRACE}-b7ad6b7169203331-01"
    stack.sqs.send_message(
        QueueUrl=stack.queues["in"],
        MessageBody=json.dumps(split(stack, "o2", parts=1, permanent=True)),
        MessageAttributes={"traceparent": {"DataType": "String", "StringValue": producer}},
    )
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    stack.start_worker(env=stack.env("in", "next", **otel))
    wait_for(lambda: "o2-split" in collector.tasks(), timeout=60, interval=0.2)
    assert stack.stop_workers() == [0]
    span = collector.tasks()["o2-split"].span
    assert span.trace_id.hex() == TRACE and span.parent_span_id.hex() == "b7ad6b7169203331"
    assert span.status.code == span.status.STATUS_CODE_ERROR
    assert attribute(span, "kombu_worker.disposition") == "dead_letter"
    assert stack.cli("dlq", "redrive", env=stack.env("in", "next")).returncode == 0
    redriven = stack.receive_all("in")
    assert [m["MessageAttributes"]["traceparent"]["StringValue"] for m in redriven] == [producer]
