"""``Job``: one submitted job, followed through the state store (Celery's ``AsyncResult``).

Everything here reads what the workers record: no event channel is needed, which
SQS does not have. ``wait`` polls with backoff, so many waiting clients cost the
database a few cheap reads a second, not a busy loop each.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Protocol

from kombu_worker_sdk.errors import (
    JobCancelledError,
    JobFailedError,
    JobTimeoutError,
    StateError,
)
from kombu_worker_sdk.state import JobRecord, JobStatus, StateStore, TaskRecord, TaskStatus

if TYPE_CHECKING:
    from kombu_worker_sdk.storage import Storage

#: Poll quickly at first (short jobs end in well under a second), then back off.
FIRST_POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 2.0
POLL_GROWTH = 1.5


class JobBackend(Protocol):
    """What a Job needs from its client (``kombu_worker_sdk.client.Client``)."""

    def state(self, *, write: bool) -> StateStore: ...

    def storage(self) -> Storage: ...

    def read_job(self, job_id: str, *, tasks: bool = True) -> tuple[JobRecord, list[TaskRecord]]: ...


class Job:
    """A job by id. Cheap to make: it holds no connection, only its client."""

    def __init__(self, client: JobBackend, job_id: str):
        self.client = client
        self.job_id = job_id

    def __repr__(self) -> str:
        return f"Job({self.job_id!r})"

    def record(self) -> JobRecord:
        """The job row: status and its total/done/failed counts (one query: what ``wait`` polls)."""
        return self.client.read_job(self.job_id, tasks=False)[0]

    def status(self) -> JobStatus:
        return self.record().status

    def tasks(self) -> list[TaskRecord]:
        """Every task of the job, children included, oldest first."""
        return self.client.read_job(self.job_id)[1]

    def snapshot(self) -> tuple[JobRecord, list[TaskRecord]]:
        """The job and its tasks, read together (what ``kombu-worker status`` prints)."""
        return self.client.read_job(self.job_id)

    def wait(
        self,
        timeout: float | None = None,
        *,
        interval: float = FIRST_POLL_SECONDS,
        max_interval: float = MAX_POLL_SECONDS,
    ) -> JobRecord:
        """Block until the job is DONE and return its record.

        Raises JobFailedError (with the failed task's id and error) as soon as a task
        FAILED, JobCancelledError if the job was cancelled, and JobTimeoutError when
        ``timeout`` seconds pass first (the job itself runs on).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.record()
            if job.status is JobStatus.DONE:
                return job
            if job.status is JobStatus.FAILED:
                raise self._failure(job)
            if job.status is JobStatus.CANCELLED:
                raise JobCancelledError(f"job {self.job_id!r} was cancelled", job_id=self.job_id)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise JobTimeoutError(
                    f"job {self.job_id!r} still {job.status.value} after {timeout}s "
                    f"({job.done}/{job.total} done)",
                    job_id=self.job_id,
                )
            time.sleep(interval if left is None else min(interval, left))
            interval = min(interval * POLL_GROWTH, max_interval)

    def results(self) -> dict[str, Any]:
        """``{task_id: result}`` for the DONE tasks, oldest first.

        A JSON result (``result.json``) is returned parsed; a binary one (``result.png``,
        ``result.npy``...) as its URI, to fetch when needed. Names follow the store stage.
        """
        self.record()  # an unknown id is JobNotFoundError, not an empty dict
        state, storage = self.client.state(write=False), self.client.storage()
        found: dict[str, Any] = {}
        for task_id, prefix in _done_prefixes(state, self.job_id):
            uri = storage.find_result(prefix)
            if uri is None:  # DONE without a result: written by an older worker or removed
                continue
            found[task_id] = json.loads(storage.read(uri)) if uri.endswith(".json") else uri
        return found

    def cancel(self) -> int:
        """Cancel the job: its PENDING tasks become CANCELLED and workers skip them.

        Tasks already running finish. Children registered later are skipped too, and
        the job ends CANCELLED. Returns how many tasks were cancelled now; a DONE job
        stays DONE (0).
        """
        self.record()  # JobNotFoundError from a read: an unknown id creates no state
        return self.client.state(write=True).cancel_job(self.job_id)

    def _failure(self, job: JobRecord) -> JobFailedError:
        tasks = self.tasks()
        failed = next((t for t in tasks if t.status is TaskStatus.FAILED), None)
        error = failed.error if failed else None
        where = f": task {failed.task_id!r} failed: {error}" if failed else ""
        return JobFailedError(
            f"job {self.job_id!r} FAILED ({job.failed} of {job.total} tasks){where}",
            job_id=self.job_id,
            task_id=failed.task_id if failed else None,
            error=error,
        )


def _done_prefixes(state: StateStore, job_id: str) -> list[tuple[str, str]]:
    """(task_id, output_prefix) of the job's DONE tasks, from the bodies the store keeps."""
    from kombu_worker_sdk.state.monitor import MonitorQueries

    if not isinstance(state, MonitorQueries):  # pragma: no cover - every store is SQL today
        raise StateError("this state store cannot list task bodies")
    return [
        (task.task_id, task.output_prefix)
        for task in state.job_task_details(job_id)
        if task.status is TaskStatus.DONE and task.output_prefix
    ]
