"""PostgresStateStore against a real PostgreSQL cluster, a fresh database per test.

Run with: ``python scripts/services.py -- python -m pytest tests/integration/test_postgres_state.py``.
"""

from __future__ import annotations

import ast
import multiprocessing
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kombu_worker_sdk.errors import BackendUnavailableError, ConfigError, StateError
from kombu_worker_sdk.message import FanIn, NextMessage, TaskMessage
from kombu_worker_sdk.state import ClaimOutcome, JobStatus, TaskStatus, open_state
from kombu_worker_sdk.state.migrations import LATEST_VERSION, MIGRATIONS
from kombu_worker_sdk.state.postgres import PostgresStateStore
from tests.servers import connect, fresh_database, require_postgres, start_postgres, stop_postgres

pytestmark = pytest.mark.integration

STATE_DIR = Path(__file__).resolve().parents[2] / "kombu_worker_sdk" / "state"
ALL_VERSIONS = [version for version, _ in MIGRATIONS]


@pytest.fixture
def dsn() -> str:
    require_postgres()
    return fresh_database()


@pytest.fixture
def store(dsn: str) -> Iterator[PostgresStateStore]:
    state = PostgresStateStore(dsn)
    state.upgrade()
    yield state
    state.close()


def task(task_id: str, job_id: str = "job-1", **params: Any) -> TaskMessage:
    return TaskMessage(
        job_id=job_id,
        task_id=task_id,
        input_uri=f"s3://in/{task_id}.png",
        output_prefix=f"s3://out/{job_id}/{task_id}/",
        params=params,
    )


def child(task_id: str, job_id: str = "job-1", **extra: Any) -> NextMessage:
    return NextMessage(
        job_id=job_id,
        task_id=task_id,
        input_uri=f"s3://in/{task_id}.png",
        output_prefix=f"s3://out/{job_id}/{task_id}/",
        **extra,
    )


def run_together(n: int, fn: Callable[[int], Any], timeout: float = 60) -> list[Any]:
    """Run ``fn(i)`` in ``n`` threads released at the same moment; re-raise any error."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "threads did not finish"
    if errors:
        raise errors[0]
    return results


def query(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


# ---------------------------------------------------------------- migrations


def test_open_state_builds_postgres_store(dsn: str) -> None:
    state = open_state(dsn)
    try:
        assert isinstance(state, PostgresStateStore)
        assert state.upgrade() == ALL_VERSIONS
        state.ping()
    finally:
        state.close()


def test_upgrade_twice_applies_nothing_the_second_time(dsn: str) -> None:
    state = PostgresStateStore(dsn)
    try:
        assert state.upgrade() == ALL_VERSIONS
        assert state.upgrade() == []
    finally:
        state.close()
    assert query(dsn, "SELECT version FROM kw_schema_migrations ORDER BY version") == [
        (v,) for v in ALL_VERSIONS
    ]


def test_concurrent_upgrades_on_a_fresh_database_all_succeed(dsn: str) -> None:
    stores = [PostgresStateStore(dsn) for _ in range(4)]
    try:
        results = run_together(4, lambda i: stores[i].upgrade())
    finally:
        for state in stores:
            state.close()
    assert sorted(results, key=len) == [[], [], [], ALL_VERSIONS]
    rows = query(dsn, "SELECT version, count(*) FROM kw_schema_migrations GROUP BY version ORDER BY 1")
    assert rows == [(v, 1) for v in ALL_VERSIONS]
    assert max(ALL_VERSIONS) == LATEST_VERSION


# ---------------------------------------------------------------- claims


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


# ---------------------------------------------------------------- pool and recovery


def test_more_threads_than_connections_wait_for_a_free_one(dsn: str) -> None:
    state = PostgresStateStore(dsn, maxconn=2)
    state.upgrade()
    try:
        run_together(24, lambda i: state.register(task(f"t{i}", job_id=f"j{i}")))
        assert len(query(dsn, "SELECT task_id FROM kw_tasks")) == 24
        backends = query(
            dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'kombu-worker'",
        )
        assert backends[0][0] <= 2
    finally:
        state.close()


def test_database_errors_are_state_errors(store: PostgresStateStore, dsn: str) -> None:
    with pytest.raises(StateError) as info, store._tx() as cur:
        cur.execute("SELECT no_such_column FROM kw_tasks")
    assert not isinstance(info.value, BackendUnavailableError)
    assert "UndefinedColumn" in str(info.value)
    store.ping()  # the connection went back to the pool usable


def test_bad_dsn_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        PostgresStateStore("host=x password=hunter2 = broken")
    assert "hunter2" not in str(info.value)


def test_survives_a_postgresql_restart(dsn: str) -> None:
    parts = urllib.parse.urlsplit(dsn)
    secret = "sentinel-pw-do-not-print"  # trust auth ignores it; it must never be printed
    with_password = urllib.parse.urlunsplit(
        parts._replace(netloc=f"{parts.username}:{secret}@{parts.hostname}:{parts.port}")
    )
    state = PostgresStateStore(with_password, maxconn=4)
    try:
        state.upgrade()
        state.register(task("before"))
        run_together(4, lambda i: state.get_task("before"))  # several pooled connections, now idle
        assert secret not in repr(state)
        try:
            stop_postgres()
            for call in (
                state.ping,
                lambda: state.get_task("before"),
                lambda: state.register(task("during")),
            ):
                with pytest.raises(BackendUnavailableError) as info:
                    call()
                assert secret not in str(info.value)
                assert secret not in str(info.value.__cause__)
        finally:
            start_postgres()
        # The same store works at once: no stale pooled connection fails the first call.
        record = state.get_task("before")
        assert record is not None and record.status is TaskStatus.PENDING
        assert state.register(task("after")) is True
        run_together(4, lambda i: state.ping())
    finally:
        state.close()


# ---------------------------------------------------------------- SQL hygiene

_SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|WHERE|VALUES)\b")
_ALLOWED_IN_SQL = {"TASK_COLUMNS", "_JOB_STATUS_SQL"}


def test_state_modules_never_format_values_into_sql() -> None:
    files = sorted(STATE_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"sql.py", "sqlite.py", "postgres.py"}
    for path in files:
        source = path.read_text()
        assert "% (" not in source, f"{path.name}: %-formatting"
        assert ".format(" not in source, f"{path.name}: str.format"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
                assert not (isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)), (
                    f"{path.name}:{node.lineno}: %-formatting"
                )
            if isinstance(node, ast.JoinedStr):
                literal = "".join(
                    part.value
                    for part in node.values
                    if isinstance(part, ast.Constant) and isinstance(part.value, str)
                )
                if not _SQL_WORDS.search(literal):
                    continue  # an error message, not SQL
                for part in node.values:
                    if isinstance(part, ast.FormattedValue):
                        assert isinstance(part.value, ast.Name) and part.value.id in _ALLOWED_IN_SQL, (
                            f"{path.name}:{node.lineno}: f-string SQL interpolates {ast.unparse(part.value)}"
                        )
