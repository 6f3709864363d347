"""PostgresStateStore's completions: children registered, retries, failures, and a fan-in
counted once across processes.

Run with: ``python scripts/services.py -- python -m pytest tests/integration/postgres_state``.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from kombu_worker_sdk.message import FanIn
from kombu_worker_sdk.state import ClaimOutcome, JobStatus, TaskStatus
from kombu_worker_sdk.state.postgres import PostgresStateStore
from tests.integration.postgres_state.helpers import child, query, task

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- complete / children


def test_complete_registers_children_and_returns_pending(store: PostgresStateStore) -> None:
    root = task("root")
    store.claim(root, worker_id="w1", lease_seconds=60)
    kids = [child("a", queue="q-special"), child("b")]
    pending = store.complete(root, kids, default_queue="q-next")
    assert [(p.message.task_id, p.queue) for p in pending] == [("a", "q-special"), ("b", "q-next")]
    assert pending[0].message == kids[0].task()
    job = store.get_job("job-1")
    assert job is not None
    assert (job.status, job.total, job.done) == (JobStatus.RUNNING, 3, 1)

    # A redelivered root changes nothing and returns the same pending children.
    again = store.complete(root, kids, default_queue="q-next")
    assert [p.message.task_id for p in again] == ["a", "b"]
    assert [p.message.task_id for p in store.pending_children("root")] == ["a", "b"]
    job = store.get_job("job-1")
    assert job is not None
    assert (job.total, job.done) == (3, 1)

    for name in ("a", "b"):
        kid = child(name).task()
        assert store.claim(kid, worker_id="w2", lease_seconds=60).outcome is ClaimOutcome.CLAIMED
        assert store.pending_children("root") == ([] if name == "b" else [pending[1]])
        store.complete(kid, [], default_queue=None)
    job = store.get_job("job-1")
    assert job is not None
    assert (job.status, job.total, job.done, job.failed) == (JobStatus.DONE, 3, 3, 0)
    tasks = store.job_tasks("job-1")
    assert [t.task_id for t in tasks] == ["root", "a", "b"]
    assert {t.parent_task_id for t in tasks[1:]} == {"root"}
    assert all(t.status is TaskStatus.DONE for t in tasks)


def test_retry_later_gives_the_task_back(store: PostgresStateStore) -> None:
    msg = task("t1")
    store.claim(msg, worker_id="w1", lease_seconds=600)
    store.retry_later("t1", error="x" * 10_000)
    record = store.get_task("t1")
    assert record is not None
    assert record.status is TaskStatus.PENDING
    assert record.worker_id is None
    assert record.error is not None and len(record.error) == 4000
    claim = store.claim(msg, worker_id="w2", lease_seconds=60)  # no lease left to wait for
    assert (claim.outcome, claim.attempts) == (ClaimOutcome.CLAIMED, 2)
    store.complete(msg, [], default_queue=None)
    store.retry_later("t1", error="late")  # DONE: untouched
    record = store.get_task("t1")
    assert record is not None
    assert (record.status, record.error) == (TaskStatus.DONE, None)


def test_fail_semantics(store: PostgresStateStore) -> None:
    msg = task("t1")
    store.claim(msg, worker_id="w1", lease_seconds=60)
    store.fail("t1", "job-1", error="boom")
    store.fail("t1", "job-1", error="boom again")  # counted once
    record = store.get_task("t1")
    assert record is not None
    assert (record.status, record.error) == (TaskStatus.FAILED, "boom")
    job = store.get_job("job-1")
    assert job is not None
    assert (job.status, job.total, job.failed) == (JobStatus.FAILED, 1, 1)

    # A redriven dead letter gets another chance and un-fails the job.
    assert store.claim(msg, worker_id="w2", lease_seconds=60).outcome is ClaimOutcome.CLAIMED
    job = store.get_job("job-1")
    assert job is not None
    assert (job.status, job.failed) == (JobStatus.RUNNING, 0)
    store.complete(msg, [], default_queue=None)
    store.fail("t1", "job-1", error="too late")  # DONE stays DONE
    job = store.get_job("job-1")
    assert job is not None
    assert (job.status, job.done, job.failed) == (JobStatus.DONE, 1, 0)

    # An unknown task (e.g. an undecodable message) gets a FAILED row and job.
    store.fail("ghost", "job-2", error="bad message", content_hash="abc")
    ghost = store.get_task("ghost")
    assert ghost is not None
    assert (ghost.status, ghost.content_hash, ghost.job_id) == (TaskStatus.FAILED, "abc", "job-2")
    job2 = store.get_job("job-2")
    assert job2 is not None
    assert (job2.status, job2.total, job2.failed) == (JobStatus.FAILED, 1, 1)
    store.fail("orphan", None, error="no job id")
    orphan = store.get_job("orphan")
    assert orphan is not None and orphan.status is JobStatus.FAILED


# ---------------------------------------------------------------- fan-in under concurrency

SIBLINGS = 60
PROCESSES = 6


def _complete_share(dsn: str, indices: list[int], barrier: Any, results: Any) -> None:
    """Worker process: claim its siblings, then complete them all once every process is ready."""
    state = PostgresStateStore(dsn, maxconn=2)
    try:
        fan_child = child("summary", fan_in=FanIn(group="g-summary", size=SIBLINGS))
        siblings = [child(f"s{i:03d}").task() for i in indices]
        for sib in siblings:
            assert state.claim(sib, worker_id="proc", lease_seconds=120).outcome is ClaimOutcome.CLAIMED
        barrier.wait(60)
        released = []
        for sib in siblings:
            pending = state.complete(sib, [fan_child], default_queue="q-fan")
            released.extend((sib.task_id, p.message.task_id, p.queue) for p in pending)
        results.put(("ok", released))
    except BaseException as exc:
        results.put(("error", repr(exc)))
    finally:
        state.close()


def test_fan_in_counts_each_sibling_once_across_processes(dsn: str, store: PostgresStateStore) -> None:
    root = task("root")
    store.claim(root, worker_id="w0", lease_seconds=60)
    store.complete(root, [child(f"s{i:03d}") for i in range(SIBLINGS)], default_queue="q")

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    shares = [list(range(SIBLINGS))[p::PROCESSES] for p in range(PROCESSES)]
    procs = [ctx.Process(target=_complete_share, args=(dsn, share, barrier, results)) for share in shares]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    elapsed = time.monotonic() - started
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    released = [item for _, items in outcomes for item in items]
    assert len(released) == 1, released  # exactly one sibling released the fan-in child
    releaser, released_id, queue = released[0]
    assert (released_id, queue) == ("summary", "q-fan")

    tasks = store.job_tasks("job-1")
    assert [t.task_id for t in tasks].count("summary") == 1
    assert sum(t.status is TaskStatus.DONE for t in tasks) == 1 + SIBLINGS
    job = store.get_job("job-1")
    assert job is not None
    assert (job.status, job.total, job.done, job.failed) == (JobStatus.RUNNING, SIBLINGS + 2, SIBLINGS + 1, 0)
    ((arrived, size, released_by),) = query(
        dsn, "SELECT arrived, size, released_by FROM kw_barriers WHERE job_id = 'job-1'"
    )
    assert (arrived, size) == (SIBLINGS, SIBLINGS)
    assert released_by == releaser
    assert query(dsn, "SELECT count(*) FROM kw_barrier_members")[0][0] == SIBLINGS

    # Redelivered siblings are not counted again; only the releaser reports the pending child.
    fan_child = child("summary", fan_in=FanIn(group="g-summary", size=SIBLINGS))
    other = "s000" if releaser != "s000" else "s001"
    assert store.complete(child(other).task(), [fan_child], default_queue="q-fan") == []
    again = store.complete(child(releaser).task(), [fan_child], default_queue="q-fan")
    assert [(p.message.task_id, p.queue) for p in again] == [("summary", "q-fan")]
    job = store.get_job("job-1")
    assert job is not None and (job.total, job.done) == (SIBLINGS + 2, SIBLINGS + 1)

    summary = child("summary").task()
    assert store.claim(summary, worker_id="w9", lease_seconds=60).outcome is ClaimOutcome.CLAIMED
    store.complete(summary, [], default_queue=None)
    job = store.get_job("job-1")
    assert job is not None
    assert (job.status, job.total, job.done) == (JobStatus.DONE, SIBLINGS + 2, SIBLINGS + 2)
    print(f"\nfan-in: {SIBLINGS} siblings over {PROCESSES} spawned processes in {elapsed:.2f}s")
