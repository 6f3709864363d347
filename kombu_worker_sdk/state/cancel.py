"""Cancelling a job: its PENDING tasks become CANCELLED, and so does every later one.

A cancel is a mark in the state store, not a message. SQS cannot take back a message
already sent (DeleteMessage needs the receipt handle of a receive, and receiving
someone else's copies would hide them from the workers), so the copies stay queued
and the claim reads the mark: a task whose job is CANCELLED is acked without its
hooks running. The mark is sticky, so children registered after the cancel (by a
task that was already running) are skipped the same way when their turn comes.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from kombu_worker_sdk.errors import JobNotFoundError
from kombu_worker_sdk.state.base import JobStatus, TaskStatus
from kombu_worker_sdk.state.dbapi import Cursor

#: The task's job status, read in the claim's own SELECT (no second round trip). A scalar
#: subquery, so PostgreSQL's FOR UPDATE locks the task row only: claims of one job's tasks
#: never queue on the job row.
JOB_STATUS_OF_TASK = "(SELECT j.status FROM kw_jobs j WHERE j.job_id = kw_tasks.job_id)"
#: A job reaches CANCELLED only through cancel_job, and the counters never move it back.
KEEP_CANCELLED_SQL = "WHEN status = 'CANCELLED' THEN 'CANCELLED' "


class CancelQueries:
    """Mixed into the SQL store; relies on its ``_tx``, ``_run`` and ``lock_suffix``."""

    lock_suffix = ""

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _run(self, cur: Cursor, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def cancel_job(self, job_id: str) -> int:
        """Mark the job CANCELLED and its PENDING tasks CANCELLED; returns how many tasks.

        A DONE job stays DONE (0). Tasks a worker holds run to their end: a hook cannot
        be interrupted safely, and their results are still written.
        """
        with self._tx() as cur:
            row = self._run(
                cur, "SELECT status FROM kw_jobs WHERE job_id = %s" + self.lock_suffix, (job_id,)
            ).fetchone()
            if row is None:
                raise JobNotFoundError(f"no job {job_id!r} to cancel")
            if row[0] == JobStatus.DONE:
                return 0
            now = time.time()
            cancelled = self._run(
                cur,
                "UPDATE kw_tasks SET status = 'CANCELLED', lease_until = NULL, updated_at = %s "
                "WHERE job_id = %s AND status = 'PENDING'",
                (now, job_id),
            ).rowcount
            self._run(
                cur,
                "UPDATE kw_jobs SET status = 'CANCELLED', updated_at = %s WHERE job_id = %s",
                (now, job_id),
            )
            return int(cancelled)

    def _claim_cancelled(self, cur: Cursor, task_id: str, status: str, job_status: str | None) -> bool:
        """True when the task must not run because its job was cancelled (marking it CANCELLED).

        Called by the claim after the DONE and HELD checks: a live holder keeps its task.
        A FAILED task stays FAILED (its error is the record); it is skipped all the same.
        """
        if status != TaskStatus.CANCELLED and job_status != JobStatus.CANCELLED:
            return False
        if status in (TaskStatus.PENDING, TaskStatus.PROCESSING):
            self._run(
                cur,
                "UPDATE kw_tasks SET status = 'CANCELLED', lease_until = NULL, worker_id = NULL, "
                "updated_at = %s WHERE task_id = %s",
                (time.time(), task_id),
            )
        return True
