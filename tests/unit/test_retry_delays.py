"""Retry delays are what the broker will apply: whole seconds on SQS, at least one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.pipeline import backoff, retry_delay
from kombu_worker_sdk.transport.sqs.delivery import SqsDelivery


class RecordingClient:
    def __init__(self) -> None:
        self.visibility: list[int] = []

    def change_message_visibility(self, *, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> None:
        self.visibility.append(VisibilityTimeout)


def sqs_delivery(client: RecordingClient) -> SqsDelivery:
    record = {"Body": "{}", "ReceiptHandle": "rh-1", "Attributes": {"ApproximateReceiveCount": "1"}}
    qos = SimpleNamespace(ack=lambda tag: None)
    message: Any = SimpleNamespace(
        delivery_info={"sqs_message": record, "sqs_queue": "http://sqs/q"},
        delivery_tag="t1",
        channel=SimpleNamespace(qos=qos),
        content_type=None,
    )
    publisher: Any = SimpleNamespace(client=client)
    return SqsDelivery(message, publisher, acks=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("delay", "expected"), [(0.0, 1), (0.2, 1), (0.8, 1), (1.0, 1), (1.2, 2), (59.01, 60)]
)
def test_sqs_visibility_rounds_a_retry_delay_up_to_whole_seconds(delay: float, expected: int) -> None:
    client = RecordingClient()
    assert sqs_delivery(client).retry_in(delay) is True
    assert client.visibility == [expected]


def test_the_logged_delay_is_the_one_sqs_applies() -> None:
    sqs = WorkerConfig(broker_url="sqs://", retry_backoff_seconds=0.5, retry_backoff_max_seconds=5)
    assert retry_delay(0.8, sqs) == 1.0 and retry_delay(1.01, sqs) == 2.0
    assert all(backoff(1, sqs) == 1.0 for _ in range(50)), "0.25 to 0.5 s rounds up to 1 s"
    assert {backoff(4, sqs) for _ in range(200)} <= {2.0, 3.0, 4.0}


def test_embedded_transports_keep_sub_second_delays() -> None:
    embedded = WorkerConfig(
        broker_url="memory://", retry_backoff_seconds=0.01, retry_backoff_max_seconds=0.05
    )
    assert retry_delay(0.8, embedded) == 0.8
    assert 0.005 <= backoff(1, embedded) <= 0.01
