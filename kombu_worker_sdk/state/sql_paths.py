"""The per-message write paths of the SQL state machine, in as few statements as they allow.

Every statement is a round trip (through PgBouncer, two), and on a wide fan-out the job and
barrier rows are locked from their UPDATE until COMMIT, so scripts/capacity_bench.py counts both.
Before these paths a message took 10 statements; now 6 (docs/capacity.md has the figures):

* ``claim``: an unknown task is INSERTed already PROCESSING (one statement, plus the job's
  upsert for a new root); a known one is taken by one conditional ``UPDATE ... RETURNING``. Only
  what that UPDATE refuses -- DONE, HELD by a live lease, CONFLICT, a redriven FAILED task -- goes
  to the ``SELECT ... FOR UPDATE`` path (``SqlStateStore._claim_row``), which decides why;
* ``complete``: children in multi-row ``INSERT ... RETURNING`` statements (a 1,000-way fan-out
  was 1,000 statements, now about 24 of under 16 KB each); a fan-in arrival in one upsert that
  counts it and elects the releaser, which on PostgreSQL also bumps the job's counters (a
  writable CTE); the job's counters bumped last, so its row lock is held for the COMMIT only;
  and no re-read of the children just inserted.

Functions over a store (its ``_run`` and dialect), kept here so that sql.py stays under the
module size limit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from kombu_worker_sdk.state.base import Claim, ClaimOutcome, PendingChild
from kombu_worker_sdk.state.cancel import KEEP_CANCELLED_SQL
from kombu_worker_sdk.state.dbapi import Cursor

if TYPE_CHECKING:
    from kombu_worker_sdk.message import NextMessage, TaskMessage


class Store(Protocol):
    """What these paths use of :class:`~kombu_worker_sdk.state.sql.SqlStateStore` (no import cycle)."""

    def _run(self, cur: Cursor, sql: str, params: Sequence[Any] = ...) -> Cursor: ...
    def _claim_row(
        self, cur: Cursor, task_id: str, worker_id: str, lease: float, content_hash: str | None
    ) -> Claim: ...
    def _pending_children(self, cur: Cursor, task_id: str) -> list[PendingChild]: ...
    def _bump_job(
        self, cur: Cursor, job_id: str, total: int = ..., done: int = ..., failed: int = ...
    ) -> None: ...

    #: PostgreSQL: a fan-in arrival and the job's counters in one statement (_complete_one_arrival).
    writable_ctes: bool


TASK_INSERT = (
    "task_id, job_id, parent_task_id, status, attempts, content_hash, queue, worker_id, lease_until, "
    "body, created_at, updated_at"
)
_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
#: Rows per multi-row INSERT: 12 parameters each stays under SQLite's 32,766 variables.
CHUNK = 500
#: SQL text per multi-row INSERT. RDS Proxy pins a client session to one database connection
#: when a statement's text exceeds 16 KB (AWS, "Avoiding pinning an RDS Proxy"), and a pinned
#: pooled connection would stay pinned for its life; PgBouncer has no such limit.
STATEMENT_BYTES = 15_000
#: The job's status from its counters after adding (failed, done, total) -- three parameters.
JOB_STATUS_SQL = (
    "status = CASE " + KEEP_CANCELLED_SQL + "WHEN failed + %s > 0 THEN 'FAILED' "
    "WHEN done + %s >= total + %s THEN 'DONE' ELSE 'RUNNING' END"
)
_JOB_UPSERT = (
    "INSERT INTO kw_jobs (job_id, status, total, done, failed, created_at, updated_at) "
    "VALUES (%s, 'RUNNING', 1, 0, 0, %s, %s) ON CONFLICT (job_id) DO UPDATE SET "
    "total = kw_jobs.total + 1, status = CASE WHEN kw_jobs.status = 'CANCELLED' THEN 'CANCELLED' "
    "WHEN kw_jobs.failed > 0 THEN 'FAILED' "
    "WHEN kw_jobs.done >= kw_jobs.total + 1 THEN 'DONE' ELSE 'RUNNING' END, updated_at = %s "
    "RETURNING status"
)
#: The fast claim never takes a task of a cancelled job: _claim_row then says CANCELLED.
_JOB_NOT_CANCELLED = (
    "NOT EXISTS (SELECT 1 FROM kw_jobs j WHERE j.job_id = kw_tasks.job_id AND j.status = 'CANCELLED')"
)


def upsert_root_job(store: Store, cur: Cursor, job_id: str, now: float) -> str:
    """Create the job of a new root task with ``total = 1``, or count one more root in it.

    Returns the job's status: a root sent into a cancelled job must not run.
    """
    return str(store._run(cur, _JOB_UPSERT, (job_id, now, now, now)).fetchone()[0])


def claim(store: Store, cur: Cursor, msg: TaskMessage, worker_id: str, lease: float) -> Claim:
    now = time.time()
    until = now + lease
    digest = msg.content_hash()
    row = (msg.task_id, msg.job_id, None, "PROCESSING", 1, digest, None, worker_id, until)
    body = json.dumps(msg.to_body())
    sql = f"INSERT INTO kw_tasks ({TASK_INSERT}) VALUES {_ROW} ON CONFLICT (task_id) DO NOTHING"
    if store._run(cur, sql, (*row, body, now, now)).rowcount:
        if upsert_root_job(store, cur, msg.job_id, now) == "CANCELLED":
            store._run(
                cur,
                "UPDATE kw_tasks SET status = 'CANCELLED', worker_id = NULL, lease_until = NULL, "
                "attempts = 0 WHERE task_id = %s",
                (msg.task_id,),
            )
            return Claim(ClaimOutcome.CANCELLED, 0)
        return Claim(ClaimOutcome.CLAIMED, 1, until)
    taken = store._run(
        cur,
        "UPDATE kw_tasks SET status = 'PROCESSING', worker_id = %s, lease_until = %s, "
        "attempts = attempts + 1, updated_at = %s WHERE task_id = %s "
        "AND (content_hash IS NULL OR content_hash = %s) AND (status = 'PENDING' OR "
        "(status = 'PROCESSING' AND (lease_until IS NULL OR lease_until <= %s OR worker_id = %s))) "
        "AND " + _JOB_NOT_CANCELLED + " RETURNING attempts",
        (worker_id, until, now, msg.task_id, digest, now, worker_id),
    ).fetchone()
    if taken is not None:
        return Claim(ClaimOutcome.CLAIMED, int(taken[0]), until)
    return store._claim_row(cur, msg.task_id, worker_id, lease, digest)


def complete(
    store: Store,
    cur: Cursor,
    msg: TaskMessage,
    children: list[NextMessage],
    default_queue: str | None,
) -> list[PendingChild]:
    now = time.time()
    changed = store._run(
        cur,
        "UPDATE kw_tasks SET status = 'DONE', lease_until = NULL, error = NULL, "
        "updated_at = %s WHERE task_id = %s AND status <> 'DONE'",
        (now, msg.task_id),
    ).rowcount
    if not changed:  # a redelivery: publish again whatever is still PENDING
        return store._pending_children(cur, msg.task_id)
    if store.writable_ctes and len(children) == 1 and children[0].fan_in is not None:
        return _complete_one_arrival(store, cur, msg, children[0], default_queue, now)
    due = [c for c in children if c.fan_in is None or _arrive(store, cur, msg, c)]
    pending = insert_children(store, cur, msg.task_id, due, default_queue, now)
    store._bump_job(cur, msg.job_id, total=len(pending), done=1)  # last: the hot row's lock is short
    # This task was not DONE a moment ago, so no child of it existed: the new rows are all.
    return sorted(pending, key=lambda child: child.message.task_id)


def insert_children(
    store: Store,
    cur: Cursor,
    parent_id: str,
    children: list[NextMessage],
    default_queue: str | None,
    now: float,
) -> list[PendingChild]:
    """INSERT the children as PENDING, a chunk of rows per statement; the ones added, first of each id."""
    by_id: dict[str, PendingChild] = {}
    for child in children:
        by_id.setdefault(child.task_id, PendingChild(child.task(), child.queue or default_queue))
    added: list[PendingChild] = []
    for chunk in _chunks([_row(item, parent_id, now) for item in by_id.values()]):
        sql = (
            f"INSERT INTO kw_tasks ({TASK_INSERT}) VALUES "
            + ", ".join([_ROW] * len(chunk))
            + " ON CONFLICT (task_id) DO NOTHING RETURNING task_id"
        )
        params = [value for row in chunk for value in row]
        added += [by_id[row[0]] for row in store._run(cur, sql, params).fetchall()]
    return added


def _row(item: PendingChild, parent_id: str, now: float) -> tuple[object, ...]:
    task = item.message
    digest, body = task.content_hash(), json.dumps(task.to_body())
    return (
        task.task_id,
        task.job_id,
        parent_id,
        "PENDING",
        0,
        digest,
        item.queue,
        None,
        None,
        body,
        now,
        now,
    )


def _chunks(rows: list[tuple[object, ...]]) -> list[list[tuple[object, ...]]]:
    """At most CHUNK rows and about STATEMENT_BYTES of SQL text per statement."""
    chunks: list[list[tuple[object, ...]]] = [[]]
    size = 0
    for row in rows:
        cost = len(_ROW) + sum(len(str(value)) + 3 for value in row)  # quotes and commas
        if chunks[-1] and (len(chunks[-1]) >= CHUNK or size + cost > STATEMENT_BYTES):
            chunks.append([])
            size = 0
        chunks[-1].append(row)
        size += cost
    return [chunk for chunk in chunks if chunk]


_BARRIER_UPSERT = (
    "INSERT INTO kw_barriers (group_id, job_id, size, arrived, released_by) "
    "VALUES (%s, %s, %s, 1, CASE WHEN %s <= 1 THEN %s END) ON CONFLICT (group_id) DO UPDATE SET "
    "arrived = kw_barriers.arrived + 1, released_by = COALESCE(kw_barriers.released_by, "
    "CASE WHEN kw_barriers.arrived + 1 >= kw_barriers.size THEN %s END) RETURNING released_by"
)


def _join(store: Store, cur: Cursor, parent: TaskMessage, group: str) -> bool:
    """Record ``parent`` as a member of the barrier; False when it had arrived before."""
    return bool(
        store._run(
            cur,
            "INSERT INTO kw_barrier_members (group_id, member_task_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (group, parent.task_id),
        ).rowcount
    )


def _complete_one_arrival(
    store: Store,
    cur: Cursor,
    msg: TaskMessage,
    child: NextMessage,
    default_queue: str | None,
    now: float,
) -> list[PendingChild]:
    """A sibling's only child is a fan-in: count the arrival and bump the job in ONE statement.

    On a wide fan-out every sibling locks the same barrier row and job row until COMMIT; a
    writable CTE takes both in one round trip, so the barrier row is held one round trip less.
    Only the releasing sibling then inserts the child and counts it in the job's total.
    """
    assert child.fan_in is not None
    group = f"{msg.job_id}/{child.fan_in.group}"
    if not _join(store, cur, msg, group):
        store._bump_job(cur, msg.job_id, done=1)
        return []
    size, me = child.fan_in.size, msg.task_id
    row = store._run(
        cur,
        f"WITH b AS ({_BARRIER_UPSERT}), j AS (UPDATE kw_jobs SET done = done + 1, {JOB_STATUS_SQL}, "
        "updated_at = %s WHERE job_id = %s RETURNING job_id) SELECT b.released_by FROM b",
        (group, msg.job_id, size, size, me, me, 0, 1, 0, now, msg.job_id),
    ).fetchone()
    if row[0] != me:
        return []
    pending = insert_children(store, cur, msg.task_id, [child], default_queue, now)
    if pending:
        store._bump_job(cur, msg.job_id, total=len(pending))
    return pending


def _arrive(store: Store, cur: Cursor, parent: TaskMessage, child: NextMessage) -> bool:
    """Count ``parent`` once at the child's barrier; True when this arrival releases the child."""
    assert child.fan_in is not None
    group = f"{parent.job_id}/{child.fan_in.group}"  # barriers never span jobs
    if not _join(store, cur, parent, group):
        return False
    size, me = child.fan_in.size, parent.task_id
    row = store._run(cur, _BARRIER_UPSERT, (group, parent.job_id, size, size, me, me)).fetchone()
    return bool(row[0] == me)
