"""Read-mostly queries for watching a pipeline: the worker registry, job lists, task details.

The dashboard reads the state store instead of an in-memory event feed (Flower keeps its
history in memory and loses it on restart). The only write here is ``record_worker``,
the heartbeat's best-effort upsert into ``kw_workers`` (migration 2).
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from kombu_worker_sdk.state.base import JobStatus, TaskStatus, WorkerBeat
from kombu_worker_sdk.state.dbapi import Cursor

_DETAIL_COLUMNS = (
    "task_id, job_id, parent_task_id, status, attempts, error, queue, worker_id, created_at, updated_at, body"
)


@dataclass(frozen=True)
class WorkerRecord:
    worker_id: str
    host: str
    queue: str
    step: str
    inflight: int
    started_at: float
    last_seen: float


@dataclass(frozen=True)
class JobSummary:
    job_id: str
    status: JobStatus
    total: int
    done: int
    failed: int
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class TaskDetail:
    """A task row with what the dashboard shows beyond ``TaskRecord``: times and its message."""

    task_id: str
    job_id: str
    parent_task_id: str | None
    status: TaskStatus
    attempts: int
    error: str | None
    queue: str | None
    worker_id: str | None
    created_at: float
    updated_at: float
    body: dict[str, Any]

    @property
    def output_prefix(self) -> str | None:
        value = self.body.get("output_prefix")
        return value if isinstance(value, str) else None

    @property
    def trace_id(self) -> str | None:
        value = self.body.get("trace_id")
        return value if isinstance(value, str) else None


class MonitorQueries:
    """Mixed into the SQL store; relies on its ``_tx`` and ``_run``."""

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _run(self, cur: Cursor, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def record_worker(self, beat: WorkerBeat) -> None:
        """Upsert this worker's row; one statement, called once per heartbeat tick."""
        with self._tx() as cur:
            self._run(
                cur,
                "INSERT INTO kw_workers (worker_id, host, queue, step, inflight, started_at, last_seen) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (worker_id) DO UPDATE SET "
                "host = excluded.host, queue = excluded.queue, step = excluded.step, "
                "inflight = excluded.inflight, last_seen = excluded.last_seen",
                (
                    beat.worker_id,
                    beat.host,
                    beat.queue,
                    beat.step,
                    beat.inflight,
                    beat.started_at,
                    time.time(),
                ),
            )

    def recent_workers(self, within_seconds: float) -> list[WorkerRecord]:
        """Workers seen in the last ``within_seconds``, most recent first (stale ones drop out)."""
        with self._tx() as cur:
            rows = self._run(
                cur,
                "SELECT worker_id, host, queue, step, inflight, started_at, last_seen FROM kw_workers "
                "WHERE last_seen >= %s ORDER BY last_seen DESC, worker_id LIMIT 500",
                (time.time() - within_seconds,),
            ).fetchall()
        return [WorkerRecord(*row) for row in rows]

    def list_jobs(self, *, status: str | None = None, search: str = "", limit: int = 100) -> list[JobSummary]:
        """Newest first; ``search`` matches part of the job id (LIKE wildcards escaped)."""
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._tx() as cur:
            rows = self._run(
                cur,
                "SELECT job_id, status, total, done, failed, created_at, updated_at FROM kw_jobs "
                "WHERE (%s IS NULL OR status = %s) AND job_id LIKE %s ESCAPE '\\' "
                "ORDER BY created_at DESC, job_id LIMIT %s",
                (status, status, pattern, limit),
            ).fetchall()
        return [JobSummary(r[0], JobStatus(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def job_counts(self) -> dict[str, int]:
        """Jobs per status, every status present (0 when none)."""
        with self._tx() as cur:
            rows = self._run(cur, "SELECT status, COUNT(*) FROM kw_jobs GROUP BY status").fetchall()
        counts = {s.value: 0 for s in JobStatus}
        counts.update({row[0]: int(row[1]) for row in rows})
        return counts

    def job_task_details(self, job_id: str) -> list[TaskDetail]:
        with self._tx() as cur:
            rows = self._run(
                cur,
                "SELECT task_id, job_id, parent_task_id, status, attempts, error, queue, worker_id, "
                "created_at, updated_at, body FROM kw_tasks WHERE job_id = %s ORDER BY created_at, task_id",
                (job_id,),
            ).fetchall()
        return [_detail(row) for row in rows]

    def fan_in_members(self, job_id: str) -> list[tuple[str, str]]:
        """(member task, the member that released the barrier) for the job's released barriers."""
        with self._tx() as cur:
            rows = self._run(
                cur,
                "SELECT m.member_task_id, b.released_by FROM kw_barriers b "
                "JOIN kw_barrier_members m ON m.group_id = b.group_id "
                "WHERE b.job_id = %s AND b.released_by IS NOT NULL ORDER BY m.member_task_id",
                (job_id,),
            ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def barriers(self, job_id: str) -> list[tuple[str, int, int]]:
        """(group, arrived, size) of each fan-in barrier of the job: which joins are waiting."""
        with self._tx() as cur:
            rows = self._run(
                cur,
                "SELECT group_id, arrived, size FROM kw_barriers WHERE job_id = %s ORDER BY group_id",
                (job_id,),
            ).fetchall()
        return [(row[0].split("/", 1)[-1], int(row[1]), int(row[2])) for row in rows]

    def known_queues(self) -> list[str]:
        """Queues named by registered tasks: the steps a dashboard should show."""
        with self._tx() as cur:
            rows = self._run(
                cur, "SELECT DISTINCT queue FROM kw_tasks WHERE queue IS NOT NULL ORDER BY queue"
            ).fetchall()
        return [row[0] for row in rows]


def _detail(row: Sequence[Any]) -> TaskDetail:
    try:
        body = json.loads(row[10]) if row[10] else {}
    except ValueError:
        body = {}
    return TaskDetail(
        task_id=row[0],
        job_id=row[1],
        parent_task_id=row[2],
        status=TaskStatus(row[3]),
        attempts=row[4],
        error=row[5],
        queue=row[6],
        worker_id=row[7],
        created_at=row[8],
        updated_at=row[9],
        body=body if isinstance(body, dict) else {},
    )
