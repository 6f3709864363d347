"""How ``kombu-worker status`` finds a job and shows it: its counts and its tree of tasks."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from kombu_worker_sdk.client import Client
from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import JobNotFoundError, StateError
from kombu_worker_sdk.state import JobRecord, TaskRecord

WHERE_TO_LOOK = "run it from the folder the worker ran in, or give kombu-worker --data-dir DIR (or DB_DSN)"


def read_job(config: WorkerConfig, job_id: str) -> tuple[JobRecord, list[TaskRecord]]:
    """The job and its tasks (:meth:`Client.read_job`: nothing created); a miss says where to look."""
    with Client(config) as client:
        try:
            return client.job(job_id).snapshot()
        except JobNotFoundError:
            raise
        except StateError as exc:
            raise StateError(f"{exc}: {WHERE_TO_LOOK}") from None


def render_job(job: JobRecord, tasks: list[TaskRecord]) -> str:
    lines = [
        f"job {job.job_id}: {job.status.value} ({job.done}/{job.total} done, {job.failed} failed)",
        f"{'TASK':<48} {'STATUS':<11} {'ATTEMPTS':>8}  ERROR",
    ]
    children: dict[str | None, list[TaskRecord]] = defaultdict(list)
    known = {t.task_id for t in tasks}
    for task in tasks:
        parent = task.parent_task_id if task.parent_task_id in known else None
        children[parent].append(task)

    def walk(parent: str | None, depth: int) -> None:
        for task in children.get(parent, []):
            name = ("  " * depth + task.task_id)[:48]
            error = (task.error or "").splitlines()[0][:100] if task.error else ""
            lines.append(f"{name:<48} {task.status.value:<11} {task.attempts:>8}  {error}")
            walk(task.task_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def job_as_dict(job: JobRecord, tasks: list[TaskRecord]) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "status": job.status.value,
        "total": job.total,
        "done": job.done,
        "failed": job.failed,
        "tasks": [
            {
                "task_id": t.task_id,
                "parent_task_id": t.parent_task_id,
                "status": t.status.value,
                "attempts": t.attempts,
                "error": t.error,
            }
            for t in tasks
        ],
    }
