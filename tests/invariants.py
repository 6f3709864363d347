"""Invariants that must hold after any run, however hostile or chaotic (issue 10 §5).

``stranded_jobs``: no job stays RUNNING unless one of its tasks can still move it on,
that is a task PENDING with a message on its queue, or PROCESSING under a live lease.
A job that fails it would show RUNNING in ``kombu-worker status`` for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kombu_worker_sdk.state import OpenTask, StateStore, TaskStatus, open_state

#: How many messages a queue (by the name or URL stored in ``kw_tasks.queue``) holds.
QueueCounter = Callable[[str], int]


def stranded_jobs(
    state: StateStore | str,
    count_messages: QueueCounter,
    *,
    default_queue: str | None = None,
    now: float | None = None,
) -> dict[str, list[str]]:
    """RUNNING jobs with no task PENDING-and-queued or PROCESSING-and-leased: job → why.

    ``state`` is a store or a DSN. ``default_queue`` stands for tasks recorded without a
    queue (roots that arrived straight on the input queue). An empty dict means it holds.
    """
    store = open_state(state) if isinstance(state, str) else state
    try:
        jobs = store.running_jobs()
    finally:
        if isinstance(state, str):
            store.close()
    moment = time.time() if now is None else now
    counts: dict[str, int] = {}

    def queued(task: OpenTask) -> bool:
        queue = task.queue or default_queue
        if not queue:
            return False
        if queue not in counts:
            counts[queue] = count_messages(queue)
        return counts[queue] > 0

    def alive(task: OpenTask) -> bool:
        if task.status is TaskStatus.PROCESSING:
            return task.lease_until is not None and task.lease_until > moment
        return queued(task)

    return {
        job_id: [f"{t.task_id} {t.status.value} queue={t.queue or default_queue}" for t in tasks]
        or ["no PENDING or PROCESSING task"]
        for job_id, tasks in jobs.items()
        if not any(alive(task) for task in tasks)
    }


def sqs_counter(sqs: Any) -> QueueCounter:
    """Counts an SQS queue's messages (by URL): visible, in flight and delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]

    def count(url: str) -> int:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in names)

    return count
