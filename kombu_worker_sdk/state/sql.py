"""The SQL state machine shared by the SQLite and PostgreSQL stores.

Every value goes through DB-API parameters; no SQL is built by formatting
values into strings. Subclasses provide a transaction (``_tx``) and a dialect:
the placeholder style and the row-lock suffix.
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from kombu_worker_sdk.errors import StateError
from kombu_worker_sdk.message import NextMessage, TaskMessage
from kombu_worker_sdk.state import sql_batch, sql_paths
from kombu_worker_sdk.state.base import (
    Claim,
    ClaimOutcome,
    ClaimRequest,
    Completion,
    JobRecord,
    JobStatus,
    OpenTask,
    PendingChild,
    StateStore,
    TaskRecord,
    TaskStatus,
)
from kombu_worker_sdk.state.cancel import JOB_STATUS_OF_TASK, CancelQueries
from kombu_worker_sdk.state.dbapi import Cursor
from kombu_worker_sdk.state.migrations import MIGRATIONS
from kombu_worker_sdk.state.monitor import MonitorQueries
from kombu_worker_sdk.state.rows import clean_text, task_record

TASK_COLUMNS = (
    "task_id, job_id, parent_task_id, status, attempts, error, content_hash, queue, worker_id, updated_at"
)
_JOB_STATUS_SQL = sql_paths.JOB_STATUS_SQL


class SqlStateStore(CancelQueries, MonitorQueries, StateStore):
    """StateStore over a DB-API connection; subclasses own connections and dialect."""

    placeholder = "%s"
    lock_suffix = ""
    writable_ctes = False

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]:
        """A cursor inside one transaction, committed on success, rolled back on error."""

    def _run(self, cur: Cursor, sql: str, params: Sequence[Any] = ()) -> Cursor:
        if self.placeholder != "%s":
            sql = sql.replace("%s", self.placeholder)
        cur.execute(sql, tuple(params))
        return cur

    # -- schema ---------------------------------------------------------
    def _applied_versions(self, cur: Cursor) -> set[int]:
        self._run(
            cur,
            "CREATE TABLE IF NOT EXISTS kw_schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)",
        )
        return {row[0] for row in self._run(cur, "SELECT version FROM kw_schema_migrations").fetchall()}

    def _apply_migrations(self, cur: Cursor) -> list[int]:
        applied = self._applied_versions(cur)
        done = []
        for version, statements in MIGRATIONS:
            if version in applied:
                continue
            for statement in statements:
                self._run(cur, statement)
            self._run(cur, "INSERT INTO kw_schema_migrations VALUES (%s, %s)", (version, time.time()))
            done.append(version)
        return done

    def schema_version(self) -> int:
        """The newest applied migration, 0 for an empty database."""
        try:
            with self._tx() as cur:
                row = self._run(cur, "SELECT MAX(version) FROM kw_schema_migrations").fetchone()
        except StateError:
            return 0
        return int(row[0] or 0)

    # -- writes ---------------------------------------------------------
    def register(self, msg: TaskMessage, *, queue: str | None = None) -> bool:
        with self._tx() as cur:
            return self._insert_task(cur, msg, None, TaskStatus.PENDING, queue)

    def claim(self, msg: TaskMessage, *, worker_id: str, lease_seconds: float) -> Claim:
        with self._tx() as cur:
            return sql_paths.claim(self, cur, msg, worker_id, lease_seconds)

    def claim_many(self, requests: Sequence[ClaimRequest], *, lease_seconds: float) -> list[Claim]:
        """One transaction, a few multi-row statements, for a micro-batch (``sql_batch``)."""
        with self._tx() as cur:
            return sql_batch.claim_batch(self, cur, requests, lease_seconds)

    def _claim_existing(self, task_id: str, worker_id: str, lease_seconds: float) -> Claim:
        with self._tx() as cur:
            return self._claim_row(cur, task_id, worker_id, lease_seconds, None)

    def _claim_row(
        self, cur: Cursor, task_id: str, worker_id: str, lease: float, content_hash: str | None
    ) -> Claim:
        row = self._run(
            cur,
            "SELECT status, content_hash, lease_until, attempts, job_id, worker_id, "
            + JOB_STATUS_OF_TASK
            + " FROM kw_tasks WHERE task_id = %s"
            + self.lock_suffix,
            (task_id,),
        ).fetchone()
        status, stored_hash, lease_until, attempts, job_id, holder, job_status = row
        now = time.time()
        if content_hash and stored_hash and stored_hash != content_hash:
            return Claim(ClaimOutcome.CONFLICT, attempts)
        if status == TaskStatus.DONE:
            return Claim(ClaimOutcome.DONE, attempts)
        if status == TaskStatus.PROCESSING and lease_until and lease_until > now and holder != worker_id:
            return Claim(ClaimOutcome.HELD, attempts, lease_until)
        if self._claim_cancelled(cur, task_id, status, job_status):
            return Claim(ClaimOutcome.CANCELLED, attempts)
        until = now + lease
        self._run(
            cur,
            "UPDATE kw_tasks SET status = 'PROCESSING', worker_id = %s, lease_until = %s, "
            "attempts = attempts + 1, updated_at = %s WHERE task_id = %s",
            (worker_id, until, now, task_id),
        )
        if status == TaskStatus.FAILED:  # a redriven dead letter gets another chance
            self._bump_job(cur, job_id, failed=-1)
        return Claim(ClaimOutcome.CLAIMED, attempts + 1, until)

    def extend_lease(self, task_id: str, *, worker_id: str, lease_seconds: float) -> bool:
        with self._tx() as cur:
            now = time.time()
            cur = self._run(
                cur,
                "UPDATE kw_tasks SET lease_until = %s, updated_at = %s "
                "WHERE task_id = %s AND worker_id = %s AND status = 'PROCESSING'",
                (now + lease_seconds, now, task_id, worker_id),
            )
            return cur.rowcount == 1

    def complete(
        self, msg: TaskMessage, children: list[NextMessage], *, default_queue: str | None
    ) -> list[PendingChild]:
        with self._tx() as cur:
            return sql_paths.complete(self, cur, msg, children, default_queue)

    def complete_many(
        self, items: Sequence[Completion], *, default_queue: str | None
    ) -> list[list[PendingChild]]:
        """One transaction, a few multi-row statements, for a micro-batch (``sql_batch``)."""
        with self._tx() as cur:
            return sql_batch.complete_batch(self, cur, items, default_queue)

    def retry_later(self, task_id: str, *, error: str, worker_id: str | None = None) -> None:
        with self._tx() as cur:
            self._run(
                cur,
                "UPDATE kw_tasks SET status = 'PENDING', error = %s, lease_until = NULL, "
                "worker_id = NULL, updated_at = %s WHERE task_id = %s AND status = 'PROCESSING' "
                "AND (%s IS NULL OR worker_id = %s)",
                (clean_text(error), time.time(), task_id, worker_id, worker_id),
            )

    def unclaim(self, task_id: str, *, worker_id: str) -> None:
        with self._tx() as cur:
            self._run(
                cur,
                "UPDATE kw_tasks SET status = 'PENDING', attempts = attempts - 1, lease_until = NULL, "
                "worker_id = NULL, updated_at = %s WHERE task_id = %s AND status = 'PROCESSING' "
                "AND worker_id = %s AND attempts > 0",
                (time.time(), task_id, worker_id),
            )

    def fail(self, task_id: str, job_id: str | None, *, error: str, content_hash: str | None = None) -> None:
        with self._tx() as cur:
            row = self._run(
                cur,
                "SELECT job_id, status FROM kw_tasks WHERE task_id = %s" + self.lock_suffix,
                (task_id,),
            ).fetchone()
            if row is None:
                job = job_id or task_id
                self._insert_row(
                    cur,
                    task_id,
                    job,
                    None,
                    TaskStatus.FAILED,
                    None,
                    digest=content_hash,
                    error=clean_text(error),
                )
                self._bump_job(cur, job, failed=1)
                return
            if row[1] in (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED):
                return
            self._run(
                cur,
                "UPDATE kw_tasks SET status = 'FAILED', error = %s, lease_until = NULL, "
                "updated_at = %s WHERE task_id = %s",
                (clean_text(error), time.time(), task_id),
            )
            self._bump_job(cur, row[0], failed=1)

    def _set_status(self, task_id: str, status: TaskStatus, error: str | None) -> None:
        if status is TaskStatus.FAILED:
            self.fail(task_id, None, error=error or "marked FAILED by a hook")
            return
        with self._tx() as cur:
            self._run(
                cur,
                "UPDATE kw_tasks SET status = %s, error = %s, updated_at = %s "
                "WHERE task_id = %s AND status NOT IN ('DONE', 'FAILED')",
                (status.value, error, time.time(), task_id),
            )

    def _insert_task(
        self, cur: Cursor, msg: TaskMessage, parent: str | None, status: TaskStatus, queue: str | None
    ) -> bool:
        """Insert a task row for a full message (body kept, to republish it later)."""
        return self._insert_row(
            cur,
            msg.task_id,
            msg.job_id,
            parent,
            status,
            queue,
            body=json.dumps(msg.to_body()),
            digest=msg.content_hash(),
        )

    def _insert_row(
        self,
        cur: Cursor,
        task_id: str,
        job_id: str,
        parent: str | None,
        status: TaskStatus,
        queue: str | None,
        *,
        body: str | None = None,
        digest: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Insert the task row (and, for a root task, its job) if new; True when added."""
        now = time.time()
        added = self._run(
            cur,
            f"INSERT INTO kw_tasks ({TASK_COLUMNS}, body, created_at) "
            "VALUES (%s, %s, %s, %s, 0, %s, %s, %s, NULL, %s, %s, %s) "
            "ON CONFLICT (task_id) DO NOTHING",
            (task_id, job_id, parent, status.value, error, digest, queue, now, body, now),
        ).rowcount
        if added and parent is None:
            sql_paths.upsert_root_job(self, cur, job_id, now)
        return bool(added)

    def _bump_job(self, cur: Cursor, job_id: str, total: int = 0, done: int = 0, failed: int = 0) -> None:
        self._run(
            cur,
            "UPDATE kw_jobs SET total = total + %s, done = done + %s, failed = failed + %s, "
            f"{_JOB_STATUS_SQL}, updated_at = %s WHERE job_id = %s",
            (total, done, failed, failed, done, total, time.time(), job_id),
        )

    # -- reads ----------------------------------------------------------
    def pending_children(self, task_id: str) -> list[PendingChild]:
        with self._tx() as cur:
            return self._pending_children(cur, task_id)

    def _pending_children(self, cur: Cursor, task_id: str) -> list[PendingChild]:
        rows = self._run(
            cur,
            "SELECT body, queue FROM kw_tasks WHERE parent_task_id = %s AND status = 'PENDING' "
            "ORDER BY task_id",
            (task_id,),
        ).fetchall()
        return [PendingChild(TaskMessage.model_validate_json(body), queue) for body, queue in rows]

    def get_task(self, task_id: str) -> TaskRecord | None:
        with self._tx() as cur:
            row = self._run(
                cur, f"SELECT {TASK_COLUMNS} FROM kw_tasks WHERE task_id = %s", (task_id,)
            ).fetchone()
        return task_record(row) if row else None

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._tx() as cur:
            row = self._run(
                cur,
                "SELECT job_id, status, total, done, failed FROM kw_jobs WHERE job_id = %s",
                (job_id,),
            ).fetchone()
        return JobRecord(row[0], JobStatus(row[1]), row[2], row[3], row[4]) if row else None

    def job_tasks(self, job_id: str) -> list[TaskRecord]:
        with self._tx() as cur:
            rows = self._run(
                cur,
                f"SELECT {TASK_COLUMNS} FROM kw_tasks WHERE job_id = %s ORDER BY created_at, task_id",
                (job_id,),
            ).fetchall()
        return [task_record(row) for row in rows]

    def running_jobs(self) -> dict[str, list[OpenTask]]:
        with self._tx() as cur:
            rows = self._run(
                cur,
                "SELECT j.job_id, t.task_id, t.status, t.queue, t.lease_until FROM kw_jobs j "
                "LEFT JOIN kw_tasks t ON t.job_id = j.job_id AND t.status IN ('PENDING', 'PROCESSING') "
                "WHERE j.status = 'RUNNING' ORDER BY j.job_id, t.task_id",
            ).fetchall()
        jobs: dict[str, list[OpenTask]] = {}
        for job_id, task_id, status, queue, lease_until in rows:
            tasks = jobs.setdefault(job_id, [])
            if task_id is not None:
                tasks.append(OpenTask(task_id, job_id, TaskStatus(status), queue, lease_until))
        return jobs

    def ping(self) -> None:
        with self._tx() as cur:
            self._run(cur, "SELECT 1").fetchone()
