"""Idempotency, retries, permanent errors and dead letters, through the real Kombu consumer."""

from __future__ import annotations

import json
import pickle
from typing import Any

from kombu_worker_sdk.state import TaskStatus
from kombu_worker_sdk.storage import MemoryStorage
from kombu_worker_sdk.testing import LocalRunner
from tests.conftest import wait_for
from tests.sample_hooks import StepHooks, split_message


def leaf(job: str, **params: Any) -> dict[str, Any]:
    return {**split_message(job), "params": {"step": "leaf", **params}}


def test_transient_failure_is_retried_then_succeeds(make_worker: Any) -> None:
    running = make_worker(max_attempts=3)
    running.send(leaf("r1", fail_times=2))
    wait_for(lambda: running.status("r1-split") == "DONE")
    record = running.runtime.state.get_task("r1-split")
    assert record is not None and record.attempts == 3
    assert running.storage.read("s3://bucket/jobs/r1/split/metrics.json")
    assert json.loads(running.storage.read("s3://bucket/jobs/r1/split/metrics.json"))["sdk"]["attempt"] == 3
    assert running.dead_letters() == []


def test_retries_exhausted_fail_the_task_and_dead_letter_it(make_worker: Any) -> None:
    running = make_worker(max_attempts=2)
    running.send(leaf("r2", fail_times=5))
    wait_for(lambda: running.status("r2-split") == "FAILED")
    record = running.runtime.state.get_task("r2-split")
    assert record is not None and record.attempts == 2
    assert "transient failure on attempt 2" in (record.error or "")
    letters = wait_for(running.dead_letters)
    assert json.loads(letters[0][0])["task_id"] == "r2-split"
    assert letters[0][1]["x-task-id"] == "r2-split" and "HookError" in letters[0][1]["x-error"]
    job = running.runtime.state.get_job("r2")
    assert job is not None and job.status == "FAILED"


def test_permanent_error_skips_retries(make_worker: Any) -> None:
    running = make_worker(max_attempts=5)
    running.send(leaf("p1", permanent=True))
    wait_for(lambda: running.status("p1-split") == "FAILED")
    assert running.runtime.state.get_task("p1-split").attempts == 1  # type: ignore[union-attr]
    assert len(wait_for(running.dead_letters)) == 1


def test_bad_messages_are_dead_lettered_and_the_worker_keeps_going(make_worker: Any) -> None:
    running = make_worker()
    running.send_raw("not json at all", content_type="application/json", content_encoding="utf-8")
    running.send_raw(
        pickle.dumps({"job_id": "x"}),
        content_type="application/x-python-serialize",
        content_encoding="binary",
    )
    bad = {**leaf("v1"), "params": "not-a-dict"}
    running.send_raw(json.dumps(bad), content_type="application/json", content_encoding="utf-8")
    running.send(leaf("ok1"))
    wait_for(lambda: running.status("ok1-split") == "DONE")
    letters: list[Any] = []
    wait_for(lambda: letters.extend(running.dead_letters()) or len(letters) >= 3)
    errors = sorted(h["x-error"].split(":")[0] for _, h in letters)
    assert errors == ["DecodeError", "DecodeError", "InvalidMessageError"]
    record = running.runtime.state.get_task("v1-split")
    assert record is not None and record.status is TaskStatus.FAILED
    assert running.worker.settled == 4


def test_redelivery_of_done_task_writes_nothing_and_republishes_pending_children() -> None:
    runner = LocalRunner(StepHooks())
    first = runner.run(split_message("i1", parts=2))
    assert len(first.published) == 2
    writes = len(runner.storage.puts)
    again = runner.run(split_message("i1", parts=2))
    assert again.disposition == "ack" and "already DONE" in again.outcome.reason
    assert [m["task_id"] for m in again.published] == ["i1-part-000", "i1-part-001"]
    assert len(runner.storage.puts) == writes
    for child in first.published:
        runner.run(child)
    final = runner.run(split_message("i1", parts=2))
    assert final.published == [], "children no longer PENDING are not republished"


class CountingHooks(StepHooks):
    calls = 0

    def process(self, ctx: Any, msg: Any) -> Any:
        CountingHooks.calls += 1
        return super().process(ctx, msg)


def test_crash_after_result_write_resumes_fanout_without_rerunning_process() -> None:
    storage = MemoryStorage()
    runner = LocalRunner(CountingHooks(), storage=storage)
    msg = split_message("i2", parts=3)
    # Simulate the crash: metrics and result written, the DB commit and publish never happened.
    storage.put("s3://bucket/jobs/i2/split/metrics.json", b'{"latency_ms": 5}', "application/json")
    storage.put("s3://bucket/jobs/i2/split/result.json", b'{"step": "split"}', "application/json")
    CountingHooks.calls = 0
    result = runner.run(msg)
    assert CountingHooks.calls == 0
    assert result.status == "DONE"
    assert [m["task_id"] for m in result.published] == [f"i2-part-{i:03d}" for i in range(3)]


def test_duplicate_task_id_with_other_content_is_refused_without_failing_the_original() -> None:
    runner = LocalRunner(StepHooks())
    assert runner.run(leaf("d1")).status == "DONE"
    clash = {**leaf("d1"), "input_uri": "s3://bucket/other.txt"}
    result = runner.run(clash)
    assert result.disposition == "dead_letter"
    assert "TaskConflictError" in result.outcome.reason
    assert result.status == "DONE"


def test_publish_next_without_next_queue_is_an_error() -> None:
    from kombu_worker_sdk.config import WorkerConfig

    runner = LocalRunner(StepHooks(), WorkerConfig(worker_id="t", max_attempts=1))
    result = runner.run(split_message("n1", parts=1))
    assert result.disposition == "dead_letter" and "no next queue is configured" in result.outcome.reason
