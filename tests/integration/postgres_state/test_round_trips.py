"""PostgresStateStore's per-message round trips: how many statements each write path takes.

Every statement is a round trip (through PgBouncer, two), and on a wide fan-out the job and
barrier rows stay locked until COMMIT, so the counts are part of the contract:
scripts/capacity_bench.py measured 10 statements per message before kombu_worker_sdk/state/
sql_paths.py, 6 to 7 after. Runs direct and through PgBouncer (see conftest.py).

Run with: ``python scripts/services.py -- python -m pytest tests/integration/postgres_state``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from kombu_worker_sdk.message import FanIn
from kombu_worker_sdk.state import ClaimOutcome, JobStatus
from kombu_worker_sdk.state.dbapi import Cursor
from kombu_worker_sdk.state.postgres import PostgresStateStore
from kombu_worker_sdk.state.sql_paths import CHUNK
from tests.integration.postgres_state.helpers import child, task

pytestmark = pytest.mark.integration


class Recording(PostgresStateStore):
    """Records each statement's first words."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.statements: list[str] = []
        self.largest = 0  # bytes of the largest statement sent, parameters included

    def _run(self, cur: Cursor, sql: str, params: Sequence[Any] = ()) -> Cursor:
        self.statements.append(" ".join(sql.split()[:3]))
        self.largest = max(self.largest, len(cur.mogrify(sql, params)))  # type: ignore[attr-defined]
        return super()._run(cur, sql, params)

    def count(self, call: Any) -> list[str]:
        self.statements = []
        call()
        return self.statements


@pytest.fixture
def rec(dsn: str) -> Iterator[Recording]:
    state = Recording(dsn)
    state.upgrade()
    yield state
    state.close()


def test_a_new_root_is_claimed_in_two_statements_and_a_known_task_in_two(rec: Recording) -> None:
    root = task("root")
    assert rec.count(lambda: rec.claim(root, worker_id="w1", lease_seconds=60)) == [
        "INSERT INTO kw_tasks",
        "INSERT INTO kw_jobs",
    ]
    record, job = rec.get_task("root"), rec.get_job("job-1")
    assert record is not None and (record.status, record.attempts, record.worker_id) == (
        "PROCESSING",
        1,
        "w1",
    )
    assert job is not None and (job.status, job.total, job.done) == (JobStatus.RUNNING, 1, 0)
    rec.complete(root, [child("kid")], default_queue="q")
    kid = child("kid").task()
    steps = rec.count(lambda: rec.claim(kid, worker_id="w2", lease_seconds=60))
    assert steps == ["INSERT INTO kw_tasks", "UPDATE kw_tasks SET"]


def test_what_the_fast_claim_refuses_still_gets_its_outcome(rec: Recording) -> None:
    msg = task("t1")
    assert rec.claim(msg, worker_id="w1", lease_seconds=60).outcome is ClaimOutcome.CLAIMED
    held = rec.claim(msg, worker_id="w2", lease_seconds=60)
    assert held.outcome is ClaimOutcome.HELD and held.lease_until is not None
    again = rec.claim(msg, worker_id="w1", lease_seconds=60)  # the holder itself may claim again
    assert (again.outcome, again.attempts) == (ClaimOutcome.CLAIMED, 2)
    assert rec.claim(task("t1", extra=1), worker_id="w1", lease_seconds=60).outcome is ClaimOutcome.CONFLICT
    rec.complete(msg, [], default_queue=None)
    assert rec.claim(msg, worker_id="w3", lease_seconds=60).outcome is ClaimOutcome.DONE
    rec.fail("t2", "job-2", error="boom")
    redriven = rec.claim(task("t2", job_id="job-2"), worker_id="w1", lease_seconds=60)
    assert redriven.outcome is ClaimOutcome.CLAIMED
    job = rec.get_job("job-2")
    assert job is not None and (job.status, job.failed) == (JobStatus.RUNNING, 0)


def test_a_wide_fan_out_is_a_few_inserts_each_under_16_kb(rec: Recording) -> None:
    width = CHUNK * 2 + 7
    root = task("root")
    rec.claim(root, worker_id="w1", lease_seconds=60)
    kids = [child(f"k{i:05d}") for i in range(width)] + [child("k00000")]  # a repeated id counts once
    pending = []

    def run() -> None:
        pending.extend(rec.complete(root, kids, default_queue="q"))

    steps = rec.count(run)
    inserts = steps[1:-1]
    assert steps[0] == "UPDATE kw_tasks SET" and steps[-1] == "UPDATE kw_jobs SET"
    assert set(inserts) == {"INSERT INTO kw_tasks"}
    assert len(inserts) <= width // 30  # tens of rows per statement, not one
    assert rec.largest < 16 * 1024  # RDS Proxy pins sessions on larger statements
    assert [p.message.task_id for p in pending] == [f"k{i:05d}" for i in range(width)]
    assert pending == rec.pending_children("root")
    job = rec.get_job("job-1")
    assert job is not None and (job.total, job.done) == (width + 1, 1)


def test_a_fan_in_arrival_and_the_job_bump_are_one_statement_and_release_once(rec: Recording) -> None:
    siblings = [task(f"s{i}") for i in range(3)]
    join = child("join", fan_in=FanIn(group="g", size=3))
    for sibling in siblings:
        rec.claim(sibling, worker_id="w", lease_seconds=60)
    steps = rec.count(lambda: rec.complete(siblings[0], [join], default_queue=None))
    assert steps == ["UPDATE kw_tasks SET", "INSERT INTO kw_barrier_members", "WITH b AS"]
    assert rec.complete(siblings[1], [join], default_queue=None) == []
    job = rec.get_job("job-1")
    assert job is not None and (job.total, job.done) == (3, 2)
    released = rec.complete(siblings[2], [join], default_queue=None)
    assert [(p.message.task_id, p.queue) for p in released] == [("join", None)]
    assert rec.complete(siblings[2], [join], default_queue=None) == released  # a redelivery
    job = rec.get_job("job-1")
    assert job is not None and (job.status, job.total, job.done) == (JobStatus.RUNNING, 4, 3)
    rec.claim(join.task(), worker_id="w", lease_seconds=60)
    rec.complete(join.task(), [], default_queue=None)
    job = rec.get_job("job-1")
    assert job is not None and (job.status, job.total, job.done) == (JobStatus.DONE, 4, 4)


def test_a_fan_in_beside_other_children_and_a_barrier_of_one(rec: Recording) -> None:
    lone, other = task("lone"), task("other")
    for msg in (lone, other):
        rec.claim(msg, worker_id="w", lease_seconds=60)
    solo = child("solo", fan_in=FanIn(group="one", size=1))
    assert [p.message.task_id for p in rec.complete(lone, [solo], default_queue=None)] == ["solo"]
    pair = child("pair", fan_in=FanIn(group="two", size=2))
    got = rec.complete(other, [pair, child("plain")], default_queue="q")
    assert [p.message.task_id for p in got] == ["plain"]
    job = rec.get_job("job-1")
    assert job is not None and (job.total, job.done) == (4, 2)  # lone, other, solo, plain
