"""What the pages show, read from the same backends the workers use (the config's URLs).

Everything here reads; the one write is :meth:`DashboardData.redrive`, which calls the
same function as ``kombu-worker dlq redrive``. SQLite is opened read-only, so looking
never creates a database. Text that may quote a backend (errors) goes through
``mask_url`` before it reaches a page.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from kombu_worker_sdk.cli.dlq import DeadLetter, peek, redrive
from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.dashboard.graph import Graph, draw
from kombu_worker_sdk.dashboard.outputs import OutputLink, Outputs
from kombu_worker_sdk.dashboard.queues import QueueStats, queue_stats, step_config
from kombu_worker_sdk.errors import StateError, WorkerSDKError
from kombu_worker_sdk.masking import mask_url
from kombu_worker_sdk.state import SqliteStateStore, StateStore, open_state
from kombu_worker_sdk.state.monitor import JobSummary, MonitorQueries, TaskDetail, WorkerRecord

#: Workers not seen for this long drop off the Workers page (a heartbeat ticks every
#: visibility_timeout / 3, 20 s by default).
RECENT_WORKER_SECONDS = 300
DEAD_LETTER_PAGE = 100


@dataclass(frozen=True)
class TaskView:
    task: TaskDetail
    outputs: list[OutputLink]
    seconds: float | None  # time in the SDK's stages, from metrics.json
    error: str

    @property
    def images(self) -> list[OutputLink]:
        return [link for link in self.outputs if link.is_image]


@dataclass(frozen=True)
class JobView:
    job: JobSummary | None
    tasks: list[TaskView]
    graph: Graph
    barriers: list[tuple[str, int, int]] = field(default_factory=list)


class DashboardData:
    """The dashboard's data access, one per process; safe to call from the server's threads."""

    def __init__(self, config: WorkerConfig, queues: Collection[str] = ()):
        self.config = config
        self.extra_queues = list(queues)
        self.outputs = Outputs(config)
        self._state: StateStore | None = None
        self._lock = threading.Lock()

    def backends(self) -> dict[str, str]:
        """The backends in use, passwords masked: the only config a page shows."""
        return {key: mask_url(value) for key, value in self.config.backend_urls.items()}

    @property
    def state(self) -> MonitorQueries:
        with self._lock:
            if self._state is None:
                self._state = open_state(self.config.effective_db_dsn, read_only=True)
            store = self._state
        if not isinstance(store, MonitorQueries):  # pragma: no cover - every store is SQL today
            raise StateError("this state store cannot be listed")
        return store

    def close(self) -> None:
        with self._lock:
            if self._state is not None:
                self._state.close()
                self._state = None

    # -- jobs ------------------------------------------------------------
    def jobs(self, status: str | None, search: str) -> tuple[list[JobSummary], dict[str, int]]:
        return self.state.list_jobs(status=status, search=search), self.state.job_counts()

    def job(self, job_id: str) -> JobView:
        state = self.state
        summary = next((j for j in state.list_jobs(search=job_id, limit=50) if j.job_id == job_id), None)
        tasks = state.job_task_details(job_id)
        views = [self._task_view(task) for task in tasks]
        return JobView(summary, views, draw(tasks, state.fan_in_members(job_id)), state.barriers(job_id))

    def _task_view(self, task: TaskDetail) -> TaskView:
        outputs = self.outputs.list_prefix(task.output_prefix)
        return TaskView(task, outputs, self._stage_seconds(outputs), mask_url(task.error or ""))

    def _stage_seconds(self, outputs: list[OutputLink]) -> float | None:
        metrics = next((link for link in outputs if link.name == "metrics.json"), None)
        if metrics is None or self.outputs.root is None:
            return None
        try:
            data = json.loads(self.outputs.local_path(metrics.uri).read_text(encoding="utf-8"))
            return float(sum(data["sdk"]["stage_seconds"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, WorkerSDKError):
            return None

    # -- queues, dead letters, workers --------------------------------------
    def queues(self) -> list[str]:
        """Each step's input queue: the config's, the ones named, and any seen in the state."""
        found = [self.config.queue, *([self.config.next_queue] if self.config.next_queue else [])]
        found += self.extra_queues
        with contextlib.suppress(WorkerSDKError):
            found += self.state.known_queues()
        found += [w.queue for w in self._workers_or_none()]
        return list(dict.fromkeys(q for q in found if q and not q.endswith("-dlq")))

    def queue_stats(self) -> list[QueueStats]:
        return queue_stats(self.config, self.queues(), self._workers_or_none())

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        return peek(step_config(self.config, self._known(queue)), limit=DEAD_LETTER_PAGE)

    def redrive(self, queue: str, ids: Collection[str] | None) -> int:
        """The page's redrive: the same function as ``kombu-worker dlq redrive``."""
        return redrive(step_config(self.config, self._known(queue)), ids=ids)

    def workers(self) -> list[WorkerRecord]:
        return self.state.recent_workers(RECENT_WORKER_SECONDS)

    def _workers_or_none(self) -> list[WorkerRecord]:
        try:
            return self.workers()
        except WorkerSDKError:
            return []

    def _known(self, queue: str) -> str:
        """Only a queue the dashboard lists can be read or redriven (no arbitrary names)."""
        if queue not in self.queues():
            raise StateError(f"unknown queue {queue[:80]!r}")
        return queue

    def is_sqlite(self) -> bool:
        return isinstance(self._state, SqliteStateStore)


def age(seconds_or_time: float | None, *, since: bool = True) -> str:
    """``4s``, ``3m``, ``2h``, ``5d``: how long ago (a timestamp) or how long (seconds)."""
    if seconds_or_time is None:
        return "—"
    seconds = time.time() - seconds_or_time if since else seconds_or_time
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def describe(exc: Exception) -> str:
    return mask_url(str(exc))[:300]


def task_dict(view: TaskView) -> dict[str, Any]:
    """A task as JSON (the job page's ``?format=json`` export)."""
    t = view.task
    return {
        "task_id": t.task_id,
        "parent_task_id": t.parent_task_id,
        "status": t.status.value,
        "attempts": t.attempts,
        "worker_id": t.worker_id,
        "error": view.error or None,
        "trace_id": t.trace_id,
        "seconds": view.seconds,
        "outputs": [link.uri for link in view.outputs],
    }
