"""Every job ends DONE or FAILED with the reason shown (issue 10 §5), on the embedded backends.

Each path that used to leave a job RUNNING for ever runs through the real Kombu consumer and
pipeline: an oversized child, children with no next queue, ``send`` of an oversized message,
and an oversized input whose ids are readable. Each ends with the job FAILED, the reason in
the state store and in ``kombu-worker status``'s rendering, and the invariant of
``tests/invariants.py`` holding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from kombu_worker_sdk.cli.send import send_messages
from kombu_worker_sdk.cli.status import render_job
from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import ConfigError, MessageTooLargeError
from kombu_worker_sdk.message import TaskMessage
from kombu_worker_sdk.state import SqliteStateStore, TaskStatus, open_state
from kombu_worker_sdk.testing import LocalRunner
from tests.conftest import RunningWorker, wait_for
from tests.fanout_hooks import ChildHooks, root_message
from tests.invariants import stranded_jobs
from tests.sample_hooks import StepHooks, split_message

LIMIT = 1024  # the smallest max_message_bytes the config allows


def memory_counter(running: RunningWorker) -> Any:
    def count(queue: str) -> int:
        with Connection(running.config.broker_url) as conn:
            return int(conn.SimpleQueue(queue).qsize())

    return count


def status_text(running: RunningWorker, job_id: str) -> str:
    state = running.runtime.state
    job = state.get_job(job_id)
    assert job is not None, f"no job {job_id}"
    return render_job(job, state.job_tasks(job_id))


def job_status(running: RunningWorker, job_id: str) -> str | None:
    job = running.runtime.state.get_job(job_id)
    return job.status.value if job else None


def assert_nothing_stranded(running: RunningWorker) -> None:
    assert stranded_jobs(running.runtime.state, memory_counter(running)) == {}


@pytest.mark.parametrize("batch", [{}, {"batch_size": 4, "batch_wait_ms": 20, "concurrency": 2}])
def test_an_oversized_child_fails_its_parent_and_registers_nothing(
    make_worker: Any, batch: dict[str, Any]
) -> None:
    running = make_worker(ChildHooks(), max_message_bytes=LIMIT, max_attempts=3, **batch)
    running.send(root_message("big", child_pad=2 * LIMIT))
    running.send(root_message("small"))  # its neighbour in a batch is unaffected
    wait_for(lambda: running.status("big-root") == "FAILED" and running.status("small-root") == "DONE")
    record = running.runtime.state.get_task("big-root")
    assert record is not None and record.attempts == 1, "a child that cannot be sent is not retried"
    assert (record.error or "").startswith("MessageTooLargeError: child task 'big-child-0' is ")
    assert f"over max_message_bytes={LIMIT}" in (record.error or "")
    assert running.status("big-child-0") is None, "no child was registered"
    job = running.runtime.state.get_job("big")
    assert job is not None and job.status == "FAILED"
    text = status_text(running, "big")
    assert text.startswith("job big: FAILED") and "MessageTooLargeError: child task 'big-child-0'" in text
    letters = wait_for(running.dead_letters)
    assert [h["x-task-id"] for _, h in letters] == ["big-root"]
    wait_for(lambda: job_status(running, "small") == "DONE")
    assert_nothing_stranded(running)


def test_children_with_no_next_queue_fail_at_once_saying_what_to_set(make_worker: Any) -> None:
    running = make_worker(StepHooks(), next_queue=None, max_attempts=3)
    running.send(split_message("nq", parts=2))
    wait_for(lambda: running.status("nq-split") == "FAILED")
    record = running.runtime.state.get_task("nq-split")
    assert record is not None and record.attempts == 1, "a configuration error is not retried"
    assert record.error == (
        "ConfigError: publish_next returned 2 message(s) but no next queue is configured: "
        "set NEXT_QUEUE_URL or next_queue, or return [] from publish_next"
    )
    assert [t.task_id for t in running.runtime.state.job_tasks("nq")] == ["nq-split"]
    assert "ConfigError: publish_next returned 2 message(s)" in status_text(running, "nq")
    assert len(wait_for(running.dead_letters)) == 1
    assert_nothing_stranded(running)


def test_a_child_queue_the_sqs_publisher_cannot_route_fails_the_parent() -> None:
    from kombu_worker_sdk.transport.sqs.publisher import SqsPublisher

    config = WorkerConfig(
        broker_url="sqs://",
        queue="https://sqs.us-east-1.amazonaws.com/123456789012/in",
        next_queue="https://sqs.us-east-1.amazonaws.com/123456789012/next",
        region="us-east-1",
        worker_id="t",
    )
    publisher = SqsPublisher(config, client=object())  # never called: refused before sending
    runner = LocalRunner(ChildHooks(), config, publisher=publisher)  # type: ignore[arg-type]
    result = runner.run(root_message("rq", child_queue="not-a-url"))
    assert result.disposition == "dead_letter" and result.status == "FAILED"
    assert "ConfigError: queue 'not-a-url' is not configured" in result.outcome.reason
    assert runner.state.get_task("rq-child-0") is None


def test_a_registered_child_that_can_no_longer_be_sent_is_failed_not_left_pending() -> None:
    runner = LocalRunner(ChildHooks())
    parent = TaskMessage.model_validate(root_message("lg", children=1))
    child = {**root_message("lg"), "task_id": "lg-child-0", "params": {"leaf": True, "pad": "x" * 2000}}
    from kombu_worker_sdk.message import parse_next

    runner.state.claim(parent, worker_id="earlier", lease_seconds=30)
    runner.state.complete(parent, [parse_next(child, parent=parent)], default_queue="next")
    runner.publisher.max_message_bytes = LIMIT  # the limit was lowered since the child was registered
    result = runner.run(root_message("lg", children=1))
    assert result.disposition == "ack" and result.published == []
    record = runner.state.get_task("lg-child-0")
    assert record is not None and record.status is TaskStatus.FAILED
    assert f"over max_message_bytes={LIMIT}" in (record.error or "")
    assert runner.state.get_job("lg").status == "FAILED"  # type: ignore[union-attr]


def embedded_config(tmp_path: Path) -> WorkerConfig:
    return WorkerConfig(
        broker_url="memory://",
        queue="send-q",
        data_dir=tmp_path,
        db_dsn=f"sqlite:///{tmp_path / 'state.db'}",
        max_message_bytes=LIMIT,
    )


def test_send_refuses_an_oversized_message_before_registering_anything(tmp_path: Path) -> None:
    config = embedded_config(tmp_path)
    small = TaskMessage.model_validate(root_message("s1"))
    big = TaskMessage.model_validate({**root_message("s2"), "params": {"pad": "x" * 2 * LIMIT}})
    with pytest.raises(MessageTooLargeError, match=f"task 's2-root' is .* over max_message_bytes={LIMIT}"):
        send_messages(config, [small, big], "send-q")
    state = open_state(config.effective_db_dsn)
    try:
        state.upgrade()
        assert state.get_task("s1-root") is None and state.get_task("s2-root") is None
        assert state.running_jobs() == {}
    finally:
        state.close()


def test_send_refuses_a_queue_sqs_cannot_route_before_registering(tmp_path: Path) -> None:
    config = WorkerConfig(
        broker_url="sqs://",
        queue="https://sqs.us-east-1.amazonaws.com/123456789012/in",
        region="us-east-1",
        db_dsn=f"sqlite:///{tmp_path / 'state.db'}",
    )
    with pytest.raises(ConfigError, match="queue 'elsewhere' is not configured"):
        send_messages(config, [TaskMessage.model_validate(root_message("s3"))], "elsewhere")
    assert not (tmp_path / "state.db").exists(), "nothing was registered, not even the schema"


def test_an_oversized_input_with_readable_ids_is_failed_and_dead_lettered(make_worker: Any) -> None:
    running = make_worker(ChildHooks(), max_message_bytes=LIMIT)
    body = json.dumps({**root_message("oi"), "params": {"leaf": True, "pad": "x" * 2 * LIMIT}})
    running.send_raw(body, content_type="application/json", content_encoding="utf-8")
    running.send_raw("x" * 2 * LIMIT, content_type="application/json", content_encoding="utf-8")
    wait_for(lambda: running.status("oi-root") == "FAILED")
    record = running.runtime.state.get_task("oi-root")
    assert record is not None
    assert (
        record.error == f"InvalidMessageError: message of {len(body)} bytes exceeds max_message_bytes={LIMIT}"
    )
    assert status_text(running, "oi").startswith("job oi: FAILED")
    letters: list[Any] = []
    wait_for(lambda: letters.extend(running.dead_letters()) or len(letters) >= 2)
    assert sorted(h["x-task-id"] for _, h in letters) == ["", "oi-root"]
    assert_nothing_stranded(running)


def test_the_invariant_finds_a_job_nothing_can_finish() -> None:
    state = SqliteStateStore(":memory:")
    state.upgrade()
    queued = TaskMessage.model_validate(root_message("q1"))
    lost = TaskMessage.model_validate(root_message("q2"))
    leased = TaskMessage.model_validate(root_message("q3"))
    state.register(queued, queue="full")
    state.register(lost, queue="empty")
    state.claim(leased, worker_id="w", lease_seconds=60)
    depth = {"full": 1, "empty": 0}
    assert stranded_jobs(state, depth.__getitem__) == {"q2": ["q2-root PENDING queue=empty"]}
    expired = stranded_jobs(state, depth.__getitem__, now=leased_until(state, "q3-root") + 1)
    assert set(expired) == {"q2", "q3"}


def leased_until(state: SqliteStateStore, task_id: str) -> float:
    jobs = state.running_jobs()
    task = next(t for tasks in jobs.values() for t in tasks if t.task_id == task_id)
    assert task.lease_until is not None
    return task.lease_until


def test_the_send_command_refuses_an_oversized_message_in_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "KOMBU_WORKER_MAX_MESSAGE_BYTES": str(LIMIT)}
    args = ["--job-id", "cb", "--input-uri", "s3://bucket/in.txt", "--output-prefix", "s3://bucket/o/"]
    sent = subprocess.run(
        [
            sys.executable,
            "-m",
            "kombu_worker_sdk.runner",
            "send",
            *args,
            "--param",
            "pad=" + "x" * 2 * LIMIT,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 1
    assert sent.stderr.startswith("error: task 'cb-root' is ") and len(sent.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".kombu-worker" / "state.db").exists(), "nothing registered, no database"
