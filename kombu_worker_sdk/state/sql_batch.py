"""A micro-batch's claim and completion in a few statements, whatever the batch size.

The per-message paths (``sql_paths``) cost two statements a message; a GPU batch of 32
would be 64 round trips in its transaction. Here each step is one multi-row statement
for the whole batch, on SQLite and PostgreSQL alike (``VALUES`` lists, ``UPDATE ... FROM``
a CTE, ``RETURNING``):

* claim: one INSERT of the unknown tasks, already PROCESSING; one upsert of their jobs;
  one UPDATE that takes every known task it may; only what that refuses (DONE, HELD,
  CONFLICT, CANCELLED, a redriven FAILED) goes through ``_claim_row`` one by one, which
  says why;
* completion: one UPDATE marks the batch DONE; the children of every message in one
  multi-row INSERT; the job counters once per job. Fan-in arrivals and redeliveries take
  the per-message path, which counts each exactly once.

Outcomes are those of claiming or completing the messages one after another: two
copies of one task in a batch still give one CLAIMED and one HELD.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence

from kombu_worker_sdk.message import NextMessage, TaskMessage
from kombu_worker_sdk.state import sql_paths
from kombu_worker_sdk.state.base import Claim, ClaimOutcome, ClaimRequest, Completion, PendingChild
from kombu_worker_sdk.state.dbapi import Cursor
from kombu_worker_sdk.state.sql_paths import _ROW, TASK_INSERT, Store

_ROOT_JOBS_INSERT = (
    "INSERT INTO kw_jobs (job_id, status, total, done, failed, created_at, updated_at) VALUES "
)
_ROOT_JOBS_UPSERT = (
    " ON CONFLICT (job_id) DO UPDATE SET total = kw_jobs.total + excluded.total, "
    "status = CASE WHEN kw_jobs.status = 'CANCELLED' THEN 'CANCELLED' WHEN kw_jobs.failed > 0 "
    "THEN 'FAILED' WHEN kw_jobs.done >= kw_jobs.total + excluded.total THEN 'DONE' ELSE 'RUNNING' END, "
    "updated_at = excluded.updated_at RETURNING job_id, status"
)
_TAKE_KNOWN_VALUES = "WITH v (task_id, worker, digest) AS (VALUES "
_TAKE_KNOWN = (
    ") UPDATE kw_tasks SET status = 'PROCESSING', worker_id = v.worker, lease_until = %s, "
    "attempts = kw_tasks.attempts + 1, updated_at = %s FROM v WHERE kw_tasks.task_id = v.task_id "
    "AND (kw_tasks.content_hash IS NULL OR kw_tasks.content_hash = v.digest) "
    "AND (kw_tasks.status = 'PENDING' OR (kw_tasks.status = 'PROCESSING' AND "
    "(kw_tasks.lease_until IS NULL OR kw_tasks.lease_until <= %s OR kw_tasks.worker_id = v.worker))) "
    "AND NOT EXISTS (SELECT 1 FROM kw_jobs j WHERE j.job_id = kw_tasks.job_id AND j.status = 'CANCELLED') "
    "RETURNING kw_tasks.task_id, kw_tasks.worker_id, kw_tasks.attempts"
)


def claim_batch(store: Store, cur: Cursor, requests: Sequence[ClaimRequest], lease: float) -> list[Claim]:
    now = time.time()
    until = now + lease
    claims: dict[int, Claim] = {}
    first = _first_of_each_task(requests)
    inserted = _insert_processing(store, cur, [requests[i] for i in first], until, now)
    new = [i for i in first if requests[i][0].task_id in inserted]
    for i in new:
        claims[i] = Claim(ClaimOutcome.CLAIMED, 1, until)
    for i in _cancel_new_roots_of_cancelled_jobs(store, cur, requests, new, now):
        claims[i] = Claim(ClaimOutcome.CANCELLED, 0)
    known = [i for i in range(len(requests)) if i not in claims]
    taken = _take_known(store, cur, [requests[i] for i in known], until, now)
    for i in known:
        msg, worker = requests[i]
        attempts = taken.pop((msg.task_id, worker), None)
        if attempts is not None:
            claims[i] = Claim(ClaimOutcome.CLAIMED, attempts, until)
        else:
            claims[i] = store._claim_row(cur, msg.task_id, worker, lease, msg.content_hash())
    return [claims[i] for i in range(len(requests))]


def _first_of_each_task(requests: Sequence[ClaimRequest]) -> list[int]:
    """Positions of each task's first copy, in (job, task) order: rows lock in one order."""
    seen: dict[str, int] = {}
    for i, (msg, _) in enumerate(requests):
        seen.setdefault(msg.task_id, i)
    return sorted(seen.values(), key=lambda i: (requests[i][0].job_id, requests[i][0].task_id))


def _insert_processing(
    store: Store, cur: Cursor, requests: list[ClaimRequest], until: float, now: float
) -> set[str]:
    """INSERT the tasks nobody has seen, already PROCESSING for their claimant."""
    if not requests:
        return set()
    rows = [
        (m.task_id, m.job_id, None, "PROCESSING", 1, m.content_hash(), None, w, until, _body(m), now, now)
        for m, w in requests
    ]
    sql = (
        f"INSERT INTO kw_tasks ({TASK_INSERT}) VALUES "
        + ", ".join([_ROW] * len(rows))
        + " ON CONFLICT (task_id) DO NOTHING RETURNING task_id"
    )
    return {row[0] for row in store._run(cur, sql, [v for row in rows for v in row]).fetchall()}


def _cancel_new_roots_of_cancelled_jobs(
    store: Store, cur: Cursor, requests: Sequence[ClaimRequest], new: list[int], now: float
) -> list[int]:
    """Count the new roots in their jobs (one upsert); those sent into a cancelled job are CANCELLED."""
    if not new:
        return []
    per_job = Counter(requests[i][0].job_id for i in new)
    jobs = sorted(per_job)
    sql = _ROOT_JOBS_INSERT + ", ".join(["(%s, 'RUNNING', %s, 0, 0, %s, %s)"] * len(jobs)) + _ROOT_JOBS_UPSERT
    params = [v for job in jobs for v in (job, per_job[job], now, now)]
    cancelled = {job for job, status in store._run(cur, sql, params).fetchall() if status == "CANCELLED"}
    stopped = [i for i in new if requests[i][0].job_id in cancelled]
    for i in stopped:
        store._run(
            cur,
            "UPDATE kw_tasks SET status = 'CANCELLED', worker_id = NULL, lease_until = NULL, "
            "attempts = 0 WHERE task_id = %s",
            (requests[i][0].task_id,),
        )
    return stopped


def _take_known(
    store: Store, cur: Cursor, requests: list[ClaimRequest], until: float, now: float
) -> dict[tuple[str, str], int]:
    """One UPDATE takes every known task it may; returns {(task, claimant): attempts}."""
    if not requests:
        return {}
    sql = _TAKE_KNOWN_VALUES + ", ".join(["(%s, %s, %s)"] * len(requests)) + _TAKE_KNOWN
    params = [v for m, w in requests for v in (m.task_id, w, m.content_hash())]
    rows = store._run(cur, sql, [*params, until, now, now]).fetchall()
    return {(task_id, worker): int(attempts) for task_id, worker, attempts in rows}


def complete_batch(
    store: Store, cur: Cursor, items: Sequence[Completion], default_queue: str | None
) -> list[list[PendingChild]]:
    now = time.time()
    simple = [i for i, (_, children) in enumerate(items) if not any(c.fan_in for c in children)]
    done = _mark_done(store, cur, [items[i][0] for i in simple], now)
    pending: dict[int, list[PendingChild]] = {}
    firsts = {items[i][0].task_id: i for i in reversed(simple)}  # a copy's duplicate counts once
    fresh = [i for i in simple if items[i][0].task_id in done and firsts[items[i][0].task_id] == i]
    added = _insert_children(store, cur, [(items[i][0], items[i][1]) for i in fresh], default_queue, now)
    for i in fresh:
        pending[i] = added.get(items[i][0].task_id, [])
    _bump_jobs(store, cur, [(items[i][0].job_id, len(pending[i])) for i in fresh])
    for i in range(len(items)):  # fan-ins and redeliveries: the per-message path
        if i not in pending:
            msg, children = items[i]
            pending[i] = sql_paths.complete(store, cur, msg, children, default_queue)
    return [pending[i] for i in range(len(items))]


def _mark_done(store: Store, cur: Cursor, msgs: list[TaskMessage], now: float) -> set[str]:
    """One UPDATE marks the batch DONE; returns the tasks it changed (not already DONE)."""
    if not msgs:
        return set()
    ids = sorted({m.task_id for m in msgs})
    sql = (
        "UPDATE kw_tasks SET status = 'DONE', lease_until = NULL, error = NULL, updated_at = %s "
        "WHERE status <> 'DONE' AND task_id IN (" + ", ".join(["%s"] * len(ids)) + ") RETURNING task_id"
    )
    return {row[0] for row in store._run(cur, sql, [now, *ids]).fetchall()}


def _insert_children(
    store: Store,
    cur: Cursor,
    parents: list[tuple[TaskMessage, list[NextMessage]]],
    default_queue: str | None,
    now: float,
) -> dict[str, list[PendingChild]]:
    """Every parent's children in multi-row INSERTs; the new ones, by parent, in task order."""
    by_id: dict[str, tuple[str, PendingChild]] = {}
    for parent, children in parents:
        for child in children:
            by_id.setdefault(
                child.task_id, (parent.task_id, PendingChild(child.task(), child.queue or default_queue))
            )
    rows = [sql_paths._row(item, parent_id, now) for parent_id, item in by_id.values()]
    added: dict[str, list[PendingChild]] = {}
    for chunk in sql_paths._chunks(rows):
        sql = (
            f"INSERT INTO kw_tasks ({TASK_INSERT}) VALUES "
            + ", ".join([_ROW] * len(chunk))
            + " ON CONFLICT (task_id) DO NOTHING RETURNING task_id"
        )
        for (task_id,) in store._run(cur, sql, [v for row in chunk for v in row]).fetchall():
            parent_id, item = by_id[task_id]
            added.setdefault(parent_id, []).append(item)
    return {parent: sorted(found, key=lambda c: c.message.task_id) for parent, found in added.items()}


def _bump_jobs(store: Store, cur: Cursor, completions: list[tuple[str, int]]) -> None:
    """Once per job, in job order (two batches never wait on each other's job rows in a cycle)."""
    totals: Counter[str] = Counter()
    dones: Counter[str] = Counter()
    for job_id, children in completions:
        totals[job_id] += children
        dones[job_id] += 1
    for job_id in sorted(dones):
        store._bump_job(cur, job_id, total=totals[job_id], done=dones[job_id])


def _body(msg: TaskMessage) -> str:
    return json.dumps(msg.to_body())
