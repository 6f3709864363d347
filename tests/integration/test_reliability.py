"""At-least-once without loss or duplicate effects, against moto's SQS and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.conftest import wait_for
from tests.integration.stack import Stack, new_stack

pytestmark = pytest.mark.integration


def leaf(stack: Stack, task: str, **params: Any) -> dict[str, Any]:
    return {
        "job_id": task.split("-")[0],
        "task_id": task,
        "input_uri": f"s3://{stack.bucket}/in",
        "output_prefix": f"s3://{stack.bucket}/jobs/{task}/",
        "params": {"step": "leaf", **params},
    }


def markers(folder: Path, task: str) -> int:
    return sum(1 for name in os.listdir(folder) if name.startswith(task + "."))


@pytest.fixture
def short_visibility(tmp_path: Path) -> Stack:
    stack = new_stack(tmp_path, "in", "next")
    for url in stack.queues.values():
        stack.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "2"})
    return stack


def test_step_three_times_longer_than_visibility_runs_once(short_visibility: Stack, tmp_path: Path) -> None:
    stack = short_visibility
    done_dir = tmp_path / "done"
    done_dir.mkdir()
    stack.send("in", leaf(stack, "hb1-a", sleep=6, marker_dir=str(done_dir)))
    worker = stack.env(KOMBU_WORKER_VISIBILITY_TIMEOUT="2")
    stack.start_worker(env=worker)
    stack.start_worker(env=worker)  # a second worker would grab the message if visibility lapsed
    try:
        wait_for(lambda: stack.task_status("hb1-a") == "DONE", timeout=60, interval=0.2)
        assert stack.stop_workers() == [0, 0]
    finally:
        stack.kill_workers()
    assert markers(done_dir, "hb1-a") == 1
    assert stack.query("SELECT attempts FROM kw_tasks WHERE task_id = 'hb1-a'") == [(1,)]
    assert stack.depth("in") == 0


def test_transient_failure_retries_by_visibility_with_receive_count(stack: Stack) -> None:
    stack.send("in", leaf(stack, "rt1-a", fail_times=1))
    stack.start_worker(env=stack.env(KOMBU_WORKER_MAX_ATTEMPTS="3"))
    wait_for(lambda: stack.task_status("rt1-a") == "DONE", timeout=60, interval=0.2)
    assert stack.stop_workers() == [0]
    metrics = json.loads(
        stack.s3.get_object(Bucket=stack.bucket, Key="jobs/rt1-a/metrics.json")["Body"].read()
    )
    assert metrics["sdk"]["attempt"] == 2, "the attempt number is SQS's ApproximateReceiveCount"
    assert stack.depth("dlq") == 0 and stack.depth("in") == 0


@pytest.mark.parametrize("redrive_policy", [False, True])
def test_giving_up_fails_the_task_and_dead_letters_once(tmp_path: Path, redrive_policy: bool) -> None:
    stack = new_stack(tmp_path, "in", "next")
    if redrive_policy:
        stack.set_redrive(2)
    stack.send("in", leaf(stack, "gu1-a", fail_times=99))
    stack.start_worker(env=stack.env(KOMBU_WORKER_MAX_ATTEMPTS="5" if redrive_policy else "2"))
    try:
        wait_for(lambda: stack.task_status("gu1-a") == "FAILED", timeout=60, interval=0.2)
        wait_for(lambda: stack.depth("dlq") >= 1, timeout=30, interval=0.2)
        assert stack.stop_workers() == [0]
    finally:
        stack.kill_workers()
    letters = stack.receive_all("dlq")
    assert len(letters) == 1
    assert json.loads(letters[0]["Body"])["task_id"] == "gu1-a"
    assert letters[0]["MessageAttributes"]["error"]["StringValue"].startswith("HookError")
    error, attempts = stack.query("SELECT error, attempts FROM kw_tasks WHERE task_id = 'gu1-a'")[0]
    assert "transient failure on attempt 2" in error and attempts == 2
    assert stack.job("gu1") == ("FAILED", 1, 0, 1)
    assert stack.depth("in") == 0


def test_graceful_shutdown_finishes_in_flight_and_releases_prefetched(stack: Stack, tmp_path: Path) -> None:
    started = tmp_path / "started"
    started.mkdir()
    for i in range(3):
        stack.send("in", leaf(stack, f"gs1-{i}", sleep=2, started_dir=str(started)))
    proc = stack.start_worker(env=stack.env(KOMBU_WORKER_PREFETCH="3", KOMBU_WORKER_WAIT_TIME_SECONDS="0"))
    wait_for(lambda: os.listdir(started), timeout=30)
    wait_for(lambda: stack.depth("in") == 3 and _visible(stack) == 0, timeout=15)  # all three prefetched
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    statuses = dict(stack.query("SELECT task_id, status FROM kw_tasks"))
    assert list(statuses.values()).count("DONE") == len(os.listdir(started)) == 1
    assert "PROCESSING" not in statuses.values()
    assert _visible(stack) == 2, "prefetched messages are released at once, not after the visibility timeout"


def _visible(stack: Stack) -> int:
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=stack.queues["in"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def test_overrun_grace_hands_task_back_and_second_signal_stops_at_once(stack: Stack, tmp_path: Path) -> None:
    started = tmp_path / "started"
    started.mkdir()
    stack.send("in", leaf(stack, "og1-a", sleep=60, started_dir=str(started)))
    proc = stack.start_worker(env=stack.env(KOMBU_WORKER_SHUTDOWN_GRACE_SECONDS="1"))
    wait_for(lambda: os.listdir(started), timeout=30)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0  # the step sleeps 60 s: only the 1 s grace can end it this soon
    assert stack.task_status("og1-a") == "PENDING"
    wait_for(lambda: _visible(stack) == 1, timeout=10)
    second = stack.start_worker(env=stack.env())
    wait_for(lambda: len(os.listdir(started)) == 2, timeout=30)
    second.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # not synchronisation: two signals a person sends in a row
    second.send_signal(signal.SIGINT)
    assert second.wait(10) == 130


def test_outages_of_postgres_and_sqs_lose_and_duplicate_nothing(stack: Stack, tmp_path: Path) -> None:
    done_dir = tmp_path / "done"
    done_dir.mkdir()
    for i in range(6):
        stack.send("in", leaf(stack, f"ou1-{i}", sleep=0.3, marker_dir=str(done_dir)))
    stack.start_worker(env=stack.env(KOMBU_WORKER_WAIT_TIME_SECONDS="1"))
    wait_for(lambda: markers(done_dir, "ou1-0") == 1, timeout=60, interval=0.05)
    servers.stop_postgres()
    try:
        time.sleep(3)  # the outage itself: the worker must ride it out
    finally:
        servers.start_postgres()
    wait_for(lambda: all(stack.task_status(f"ou1-{i}") == "DONE" for i in range(6)), timeout=90, interval=0.3)
    servers.restart_moto(down_seconds=3)
    stack.sqs, stack.s3 = servers.boto_client("sqs"), servers.boto_client("s3")
    for url in stack.queues.values():  # moto forgets everything on restart: same names, same URLs
        stack.sqs.create_queue(QueueName=url.rsplit("/", 1)[-1])
    stack.s3.create_bucket(Bucket=stack.bucket)
    for i in range(6, 9):
        stack.send("in", leaf(stack, f"ou1-{i}", marker_dir=str(done_dir)))
    wait_for(
        lambda: all(stack.task_status(f"ou1-{i}") == "DONE" for i in range(6, 9)), timeout=90, interval=0.3
    )
    assert stack.stop_workers() == [0]
    assert [markers(done_dir, f"ou1-{i}") for i in range(9)] == [1] * 9
    logs = stack.logs()
    assert logs.count("backend unavailable, holding messages") <= 2, logs[-3000:]
    assert "reachable again" in logs or "consume loop failed" in logs
