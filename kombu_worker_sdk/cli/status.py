"""How ``kombu-worker status`` finds a job and shows it: its counts and its tree of tasks."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import StateError
from kombu_worker_sdk.masking import mask_url
from kombu_worker_sdk.state import JobRecord, TaskRecord, open_state

WHERE_TO_LOOK = "run it from the folder the worker ran in, or give kombu-worker --data-dir DIR (or DB_DSN)"


def read_job(config: WorkerConfig, job_id: str) -> tuple[JobRecord, list[TaskRecord]]:
    """The job and its tasks, read without creating a file or a schema.

    A reader run from the wrong folder must not leave an empty state.db behind
    that later looks like a real, empty state: every miss names where it looked.
    """
    where = mask_url(config.effective_db_dsn)
    try:
        state = open_state(config.effective_db_dsn, read_only=True)
    except StateError as exc:
        raise StateError(f"{exc}: {WHERE_TO_LOOK}") from None
    try:
        if state.schema_version() == 0:
            raise StateError(f"the state database {where} has no tables: {WHERE_TO_LOOK}")
        job = state.get_job(job_id)
        if job is None:
            raise StateError(f"no job {job_id!r} in {where}")
        return job, state.job_tasks(job_id)
    finally:
        state.close()


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
