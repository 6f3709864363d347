"""PostgresStateStore's claims: one winner per task across threads and pools, leases, outcomes.

Run with: ``python scripts/services.py -- python -m pytest tests/integration/postgres_state``.
"""

from __future__ import annotations

import time

import pytest

from kombu_worker_sdk.state import ClaimOutcome, JobStatus, TaskStatus
from kombu_worker_sdk.state.postgres import PostgresStateStore
from tests.integration.postgres_state.helpers import run_together, task

pytestmark = pytest.mark.integration


def test_register_and_read_back(store: PostgresStateStore) -> None:
    assert store.register(task("t1"), queue="q-in") is True
    assert store.register(task("t1"), queue="q-in") is False
    record = store.get_task("t1")
    assert record is not None
    assert (record.status, record.job_id, record.queue, record.attempts) == (
        TaskStatus.PENDING,
        "job-1",
        "q-in",
        0,
    )
    job = store.get_job("job-1")
    assert job is not None
    assert (job.status, job.total, job.done, job.failed) == (JobStatus.RUNNING, 1, 0, 0)
    assert store.get_task("nope") is None
    assert store.get_job("nope") is None


CLAIMERS = 16
ROUNDS = 5


def test_claim_is_atomic_across_threads(dsn: str) -> None:
    """Threads sharing one pool race for the same tasks, new ones and registered ones."""
    state = PostgresStateStore(dsn, maxconn=CLAIMERS)
    state.upgrade()
    try:
        run_together(CLAIMERS, lambda i: state.ping())  # open every connection before racing
        for n in range(ROUNDS):
            fresh = task(f"new-{n}", job_id=f"job-{n}")  # not registered: insert and claim race too
            registered = task(f"reg-{n}", job_id=f"job-{n}")
            state.register(registered)
            for msg in (fresh, registered):
                outcomes = run_together(
                    CLAIMERS, lambda i, m=msg: state.claim(m, worker_id=f"w{i}", lease_seconds=60).outcome
                )
                assert outcomes.count(ClaimOutcome.CLAIMED) == 1, (msg.task_id, outcomes)
                assert outcomes.count(ClaimOutcome.HELD) == CLAIMERS - 1
                record = state.get_task(msg.task_id)
                assert record is not None
                assert (record.status, record.attempts) == (TaskStatus.PROCESSING, 1)
            job = state.get_job(f"job-{n}")
            assert job is not None
            assert job.total == 2  # each root counted once
    finally:
        state.close()


def test_claim_across_separate_stores(dsn: str) -> None:
    """Separate pools (as separate pods would have) race for registered tasks."""
    stores = [PostgresStateStore(dsn, maxconn=1) for _ in range(8)]
    try:
        stores[0].upgrade()
        for state in stores:
            state.ping()  # connect before racing
        for n in range(ROUNDS):
            stores[0].register(task(f"t{n}"))
            outcomes = run_together(
                8, lambda i, n=n: stores[i].claim(task(f"t{n}"), worker_id=f"w{i}", lease_seconds=60)
            )
            assert [c.outcome for c in outcomes].count(ClaimOutcome.CLAIMED) == 1, outcomes
    finally:
        for state in stores:
            state.close()


def test_lease_expiry_hands_the_task_to_another_worker(store: PostgresStateStore) -> None:
    msg = task("t1")
    first = store.claim(msg, worker_id="w1", lease_seconds=0.3)
    assert first.outcome is ClaimOutcome.CLAIMED
    assert first.lease_until is not None
    held = store.claim(msg, worker_id="w2", lease_seconds=60)
    assert held.outcome is ClaimOutcome.HELD
    assert held.lease_until == pytest.approx(first.lease_until)
    deadline = time.monotonic() + 15
    while True:
        second = store.claim(msg, worker_id="w2", lease_seconds=60)
        if second.outcome is not ClaimOutcome.HELD:
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert second.outcome is ClaimOutcome.CLAIMED
    assert time.time() >= first.lease_until
    assert second.attempts == 2
    record = store.get_task("t1")
    assert record is not None
    assert record.worker_id == "w2"
    assert store.extend_lease("t1", worker_id="w1", lease_seconds=60) is False  # w1 lost it
    assert store.extend_lease("t1", worker_id="w2", lease_seconds=60) is True


def test_claim_outcomes_conflict_and_done(store: PostgresStateStore) -> None:
    msg = task("t1")
    assert store.claim(msg, worker_id="w1", lease_seconds=60).outcome is ClaimOutcome.CLAIMED
    reused = task("t1", size=3)  # same id, other content
    assert store.claim(reused, worker_id="w2", lease_seconds=60).outcome is ClaimOutcome.CONFLICT
    store.complete(msg, [], default_queue=None)
    assert store.claim(msg, worker_id="w2", lease_seconds=60).outcome is ClaimOutcome.DONE


def test_claim_task_and_update_status_by_id(store: PostgresStateStore) -> None:
    assert store.claim_task("missing") is False
    store.register(task("t1"))
    assert store.claim_task("t1", worker_id="hook") is True
    assert store.claim_task("t1", worker_id="other") is False
    store.update_status("t1", "PENDING", error="handed back")
    record = store.get_task("t1")
    assert record is not None
    assert (record.status, record.error) == (TaskStatus.PENDING, "handed back")
    store.update_status("t1", TaskStatus.FAILED, error="given up")
    record = store.get_task("t1")
    assert record is not None
    assert record.status is TaskStatus.FAILED
    store.update_status("t1", "PENDING")  # FAILED stays FAILED
    assert store.get_task("t1").status is TaskStatus.FAILED  # type: ignore[union-attr]
