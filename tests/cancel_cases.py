"""What a cancel does in the state store, checked the same way on SQLite and PostgreSQL.

Each case takes a fresh, upgraded store; tests/unit and tests/integration/postgres_state
run them on their own backend.
"""

from __future__ import annotations

import pytest

from kombu_worker_sdk.errors import StateError
from kombu_worker_sdk.message import NextMessage, TaskMessage
from kombu_worker_sdk.state import ClaimOutcome, JobStatus, StateStore, TaskStatus


def task(task_id: str, job_id: str = "job-c") -> TaskMessage:
    return TaskMessage(
        job_id=job_id, task_id=task_id, input_uri="s3://in/x.png", output_prefix=f"s3://out/{task_id}/"
    )


def child(task_id: str, job_id: str = "job-c") -> NextMessage:
    return NextMessage(
        job_id=job_id, task_id=task_id, input_uri="s3://in/x.png", output_prefix=f"s3://out/{task_id}/"
    )


def status(store: StateStore, task_id: str) -> TaskStatus:
    record = store.get_task(task_id)
    assert record is not None
    return record.status


def job_status(store: StateStore, job_id: str = "job-c") -> JobStatus:
    job = store.get_job(job_id)
    assert job is not None
    return job.status


def pending_tasks_are_cancelled_and_never_claimed(store: StateStore) -> None:
    for name in ("a", "b"):
        store.register(task(name))
    assert store.cancel_job("job-c") == 2
    assert job_status(store) is JobStatus.CANCELLED
    assert [status(store, n) for n in ("a", "b")] == [TaskStatus.CANCELLED] * 2
    claim = store.claim(task("a"), worker_id="w1", lease_seconds=60)
    assert claim.outcome is ClaimOutcome.CANCELLED
    assert status(store, "a") is TaskStatus.CANCELLED  # the claim did not revive it
    assert store.claim_task("b", worker_id="w1") is False  # the seed's ctx.db API agrees


def a_running_task_finishes_and_its_children_are_cancelled(store: StateStore) -> None:
    store.register(task("root"))
    assert store.claim(task("root"), worker_id="w1", lease_seconds=60).outcome is ClaimOutcome.CLAIMED
    assert store.cancel_job("job-c") == 0  # nothing PENDING: the running task keeps going
    pending = store.complete(task("root"), [child("kid")], default_queue="q")
    assert status(store, "root") is TaskStatus.DONE
    assert job_status(store) is JobStatus.CANCELLED  # completing did not move it to RUNNING/DONE
    assert [p.message.task_id for p in pending] == ["kid"]  # registered, so its copy is skipped
    claim = store.claim(pending[0].message, worker_id="w2", lease_seconds=60)
    assert claim.outcome is ClaimOutcome.CANCELLED
    assert status(store, "kid") is TaskStatus.CANCELLED
    store.register(task("late"))  # a root task submitted to the job after the cancel
    assert store.claim(task("late"), worker_id="w2", lease_seconds=60).outcome is ClaimOutcome.CANCELLED
    assert job_status(store) is JobStatus.CANCELLED


def a_live_holder_keeps_its_task_and_a_dead_ones_task_is_cancelled(store: StateStore) -> None:
    store.register(task("live"))
    store.register(task("dead"))
    store.claim(task("live"), worker_id="w1", lease_seconds=600)
    store.claim(task("dead"), worker_id="w1", lease_seconds=-1)  # its lease already ended
    store.cancel_job("job-c")
    assert store.claim(task("live"), worker_id="w2", lease_seconds=60).outcome is ClaimOutcome.HELD
    assert store.claim(task("dead"), worker_id="w2", lease_seconds=60).outcome is ClaimOutcome.CANCELLED
    assert (status(store, "live"), status(store, "dead")) == (TaskStatus.PROCESSING, TaskStatus.CANCELLED)


def a_done_job_stays_done_and_an_unknown_job_is_an_error(store: StateStore) -> None:
    store.register(task("only"))
    store.claim(task("only"), worker_id="w1", lease_seconds=60)
    store.complete(task("only"), [], default_queue=None)
    assert store.cancel_job("job-c") == 0
    assert job_status(store) is JobStatus.DONE
    with pytest.raises(StateError, match="no job 'nope'"):
        store.cancel_job("nope")


def a_cancelled_task_is_not_failed_later(store: StateStore) -> None:
    store.register(task("x"))
    store.cancel_job("job-c")
    store.fail("x", "job-c", error="dead-lettered copy")
    assert status(store, "x") is TaskStatus.CANCELLED
    job = store.get_job("job-c")
    assert job is not None and (job.status, job.failed) == (JobStatus.CANCELLED, 0)


CASES = [
    pending_tasks_are_cancelled_and_never_claimed,
    a_running_task_finishes_and_its_children_are_cancelled,
    a_live_holder_keeps_its_task_and_a_dead_ones_task_is_cancelled,
    a_done_job_stays_done_and_an_unknown_job_is_an_error,
    a_cancelled_task_is_not_failed_later,
]
