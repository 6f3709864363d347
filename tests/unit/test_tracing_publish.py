"""What a producer's publish carries beside the body (issue 12 §3), with a stand-in SQS client.

A producer app that uses OpenTelemetry itself (a web handler in a span) sends the span's
traceparent as an SQS message attribute, with the SDK's tracing on or off; with no span
there is no attribute at all, and the body is the same plain JSON either way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.observability import tracing
from kombu_worker_sdk.observability.otel import OtelTracing
from kombu_worker_sdk.transport.publish import MemoryPublisher, encode
from kombu_worker_sdk.transport.sqs.publisher import SqsPublisher

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/in"


class RecordingClient:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.entries.extend(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def message(task: str) -> dict[str, Any]:
    return {"job_id": "j", "task_id": task, "input_uri": "s3://b/in", "output_prefix": "s3://b/o/"}


@pytest.fixture(params=["sdk-tracing-off", "sdk-tracing-on"])
def sdk_tracing(request: pytest.FixtureRequest) -> Iterator[str]:
    previous = tracing.active()
    if request.param == "sdk-tracing-on":
        tracing.install(OtelTracing.with_exporter(InMemorySpanExporter()))
    yield request.param
    tracing.install(previous)


def app_span_traceparent(send: Any) -> str:
    """Run ``send`` inside a span of the producer app's own tracer; its traceparent."""
    tracer = TracerProvider().get_tracer("producer-app")
    with tracer.start_as_current_span("POST /jobs") as span:
        send()
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def test_an_app_span_goes_beside_each_sqs_body(sdk_tracing: str) -> None:
    client = RecordingClient()
    publisher = SqsPublisher(WorkerConfig(queue=URL, region="us-east-1"), client)
    expected = app_span_traceparent(lambda: publisher.publish(URL, [message("a"), message("b")]))
    assert [e["MessageAttributes"]["traceparent"] for e in client.entries] == [
        {"DataType": "String", "StringValue": expected}
    ] * 2
    assert [json.loads(e["MessageBody"])["task_id"] for e in client.entries] == ["a", "b"]


def test_no_span_means_no_attribute_and_the_same_body(sdk_tracing: str) -> None:
    client = RecordingClient()
    SqsPublisher(WorkerConfig(queue=URL, region="us-east-1"), client).publish(URL, [message("a")])
    assert client.entries == [{"Id": "0", "MessageBody": encode(message("a"))}]


def test_the_memory_publisher_keeps_each_tasks_traceparent(sdk_tracing: str) -> None:
    publisher = MemoryPublisher()
    expected = app_span_traceparent(lambda: publisher.publish("q", [message("a")]))
    assert publisher.traceparents == {"a": expected}
