"""SendMessageBatch logic with a stand-in client: batching, partial failures, size limits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import MessageTooLargeError, PublishError
from kombu_worker_sdk.transport.names import queue_name
from kombu_worker_sdk.transport.sqs.publisher import SqsPublisher, batches, dedup_id

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/next"


class FlakyClient:
    """Fails the given entry ids once (transiently), like SQS's partial batch failures."""

    def __init__(self, fail_once: set[str] = frozenset(), sender_fault: set[str] = frozenset()):  # type: ignore[assignment]
        self.fail_once = set(fail_once)
        self.sender_fault = sender_fault
        self.calls: list[list[str]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        ids = [e["Id"] for e in Entries]
        self.calls.append(ids)
        failed = [
            {"Id": i, "SenderFault": False, "Code": "InternalError"} for i in ids if i in self.fail_once
        ]
        failed += [
            {"Id": i, "SenderFault": True, "Message": "bad body"} for i in ids if i in self.sender_fault
        ]
        self.fail_once -= set(ids)
        return {
            "Failed": failed,
            "Successful": [{"Id": i} for i in ids if i not in {f["Id"] for f in failed}],
        }


def publisher(client: Any, **config: Any) -> SqsPublisher:
    return SqsPublisher(WorkerConfig(queue=URL, next_queue=URL, region="us-east-1", **config), client)


def msgs(n: int, size: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "job_id": "j",
            "task_id": f"j-{i:03d}",
            "input_uri": "s3://b/i",
            "output_prefix": f"s3://b/{i}/",
            "params": {"pad": "x" * size},
        }
        for i in range(n)
    ]


def test_batches_of_ten_and_only_failed_entries_are_retried() -> None:
    client = FlakyClient(fail_once={"3", "12"})
    assert publisher(client).publish(URL, msgs(23)) == 23
    assert [len(c) for c in client.calls] == [10, 1, 10, 1, 3]
    assert client.calls[1] == ["3"] and client.calls[3] == ["12"]


def test_sender_faults_are_not_retried() -> None:
    client = FlakyClient(sender_fault={"1"})
    with pytest.raises(PublishError, match="refused 1 message"):
        publisher(client).publish(URL, msgs(2))
    assert len(client.calls) == 1


def test_too_large_is_refused_before_any_request() -> None:
    client = FlakyClient()
    with pytest.raises(MessageTooLargeError, match=r"is 5\d+ bytes, over max_message_bytes=2048"):
        publisher(client, max_message_bytes=2048).publish(URL, msgs(1, size=5000))
    assert client.calls == []


def test_batches_respect_the_one_mebibyte_limit() -> None:
    entries = [{"Id": str(i), "MessageBody": "x" * 200_000} for i in range(12)]
    sizes = [len(b) for b in batches(entries)]
    assert sizes == [5, 5, 2]


def test_fifo_ids_and_queue_names() -> None:
    client = FlakyClient()
    fifo = URL + ".fifo"
    pub = SqsPublisher(WorkerConfig(queue=fifo, region="us-east-1"), client)
    entry = pub._entry(0, json.dumps(msgs(1)[0]), fifo)
    assert entry["MessageGroupId"] == "j" and entry["MessageDeduplicationId"] == "j-000"
    assert len(dedup_id("é" * 200)) == 64
    assert queue_name(URL) == "next" and queue_name("plain") == "plain"


def test_concurrent_publishers_share_batches_and_each_waits_for_its_own() -> None:
    import threading

    from kombu_worker_sdk.transport.sqs.sends import CoalescingSender

    sent: list[list[str]] = []
    gate = threading.Barrier(6)

    def send_batch(url: str, entries: list[dict[str, Any]]) -> None:
        if any(e["MessageBody"] == "poison" for e in entries):
            raise PublishError("refused")
        sent.append([e["MessageBody"] for e in entries])

    sender = CoalescingSender(send_batch, window=0.2)
    errors: dict[int, BaseException] = {}

    def publish(i: int) -> None:
        gate.wait()
        bodies = ["poison"] if i == 5 else [f"{i}-{k}" for k in range(3)]
        try:
            sender.send(URL, [{"Id": str(k), "MessageBody": b} for k, b in enumerate(bodies)])
        except PublishError as exc:
            errors[i] = exc

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    delivered = sorted(b for batch in sent for b in batch)
    assert all(len(batch) <= 10 for batch in sent)
    assert len(sent) < 5, "five callers' entries must share batches"
    assert 5 in errors  # the poisoned caller hears of its failure
    assert set(delivered) | {b for i in errors if i != 5 for b in [f"{i}-{k}" for k in range(3)]} == {
        f"{i}-{k}" for i in range(5) for k in range(3)
    }
