"""The StateStore interface: task and job state, children, and fan-in barriers.

The public methods are a template over a few guarantees every backend keeps:

* ``claim`` is atomic: two workers given the same task never both get CLAIMED;
* ``complete`` marks a task DONE and registers its children as PENDING in the
  same transaction, *before* anything is published, so a job is DONE exactly
  when every task of it, children included, is DONE;
* fan-in barriers count each sibling once, however often it is redelivered.
"""

from __future__ import annotations

import enum
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kombu_worker_sdk.message import NextMessage, TaskMessage


class TaskStatus(enum.StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"  # its job was cancelled before a worker ran it: never run


class JobStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"  # sticky: later tasks of the job are skipped, never run


class ClaimOutcome(enum.StrEnum):
    CLAIMED = "CLAIMED"  # this worker owns the task until its lease ends
    DONE = "DONE"  # finished earlier: republish pending children and ack
    HELD = "HELD"  # another worker holds a live lease: try again later
    CONFLICT = "CONFLICT"  # the task_id exists with different content
    CANCELLED = "CANCELLED"  # its job was cancelled: ack without running the hooks


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    attempts: int = 0
    lease_until: float | None = None


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    job_id: str
    parent_task_id: str | None
    status: TaskStatus
    attempts: int
    error: str | None
    content_hash: str | None
    queue: str | None
    worker_id: str | None
    updated_at: float


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    status: JobStatus
    total: int
    done: int
    failed: int


@dataclass(frozen=True)
class PendingChild:
    """A registered child not yet consumed, with the queue it must be sent to."""

    message: TaskMessage
    queue: str | None


@dataclass(frozen=True)
class OpenTask:
    """A task not yet finished, with what can still move it on: its queue, or its lease."""

    task_id: str
    job_id: str
    status: TaskStatus
    queue: str | None
    lease_until: float | None


@dataclass(frozen=True)
class WorkerBeat:
    """What a worker says about itself at each heartbeat tick."""

    worker_id: str
    host: str
    queue: str
    step: str
    inflight: int
    started_at: float


#: (message, claimant) for :meth:`StateStore.claim_many`.
ClaimRequest = tuple["TaskMessage", str]
#: (message, its children) for :meth:`StateStore.complete_many`.
Completion = tuple["TaskMessage", list["NextMessage"]]


class StateStore(ABC):
    """Task and job state behind one interface (SQLite embedded, PostgreSQL in production)."""

    @abstractmethod
    def upgrade(self) -> list[int]:
        """Create or migrate the schema; returns the versions applied. Safe to race."""

    @abstractmethod
    def schema_version(self) -> int:
        """The newest applied migration, 0 for an empty database."""

    @abstractmethod
    def register(self, msg: TaskMessage, *, queue: str | None = None) -> bool:
        """Record a root task as PENDING; False if it already existed."""

    @abstractmethod
    def claim(self, msg: TaskMessage, *, worker_id: str, lease_seconds: float) -> Claim:
        """Atomically move the task to PROCESSING for ``worker_id`` (creating it if new)."""

    def claim_many(self, requests: Sequence[ClaimRequest], *, lease_seconds: float) -> list[Claim]:
        """Claim a micro-batch, each message for its own claimant; SQL stores use one transaction.

        All or nothing: on an error nothing is claimed, and the caller claims one by one.
        """
        return [self.claim(msg, worker_id=worker, lease_seconds=lease_seconds) for msg, worker in requests]

    def complete_many(
        self, items: Sequence[Completion], *, default_queue: str | None
    ) -> list[list[PendingChild]]:
        """:meth:`complete` for a micro-batch (one transaction in SQL stores); all or nothing."""
        return [self.complete(msg, children, default_queue=default_queue) for msg, children in items]

    @abstractmethod
    def extend_lease(self, task_id: str, *, worker_id: str, lease_seconds: float) -> bool:
        """Push the lease of a task this worker holds; False if it no longer holds it."""

    @abstractmethod
    def complete(
        self, msg: TaskMessage, children: list[NextMessage], *, default_queue: str | None
    ) -> list[PendingChild]:
        """Mark DONE, register children and fan-in arrivals, in one transaction.

        Returns every child of this task that is still PENDING: those to publish.
        """

    @abstractmethod
    def pending_children(self, task_id: str) -> list[PendingChild]:
        """Children of ``task_id`` still PENDING: republished when a redelivery is skipped."""

    @abstractmethod
    def retry_later(self, task_id: str, *, error: str, worker_id: str | None = None) -> None:
        """Give a PROCESSING task back (PENDING, error kept) for a later attempt.

        With ``worker_id``, only if that claimant still holds it.
        """

    def unclaim(self, task_id: str, *, worker_id: str) -> None:
        """Give back a claim whose hooks never started (prepared, then the worker stopped).

        Unlike :meth:`retry_later` it records no error and takes back the attempt the claim
        counted: nothing ran. SQL stores override it; this default keeps other stores correct.
        """
        self.retry_later(task_id, error="released before it started", worker_id=worker_id)

    @abstractmethod
    def fail(self, task_id: str, job_id: str | None, *, error: str, content_hash: str | None = None) -> None:
        """Mark the task FAILED for good (creating its row if unknown); DONE tasks stay DONE."""

    @abstractmethod
    def cancel_job(self, job_id: str) -> int:
        """Mark the job CANCELLED and its PENDING tasks CANCELLED; returns how many tasks.

        Tasks already running finish; every later claim of a task of the job
        (children registered after the cancel included) returns ``CANCELLED``.
        """

    @abstractmethod
    def get_task(self, task_id: str) -> TaskRecord | None: ...

    @abstractmethod
    def get_job(self, job_id: str) -> JobRecord | None: ...

    @abstractmethod
    def job_tasks(self, job_id: str) -> list[TaskRecord]: ...

    def record_worker(self, beat: WorkerBeat) -> None:
        """Note that a worker is alive (the dashboard's Workers page); a store without a registry ignores it."""

    @abstractmethod
    def running_jobs(self) -> dict[str, list[OpenTask]]:
        """Every RUNNING job with its PENDING and PROCESSING tasks (none: nothing can finish it)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise BackendUnavailableError unless the store answers."""

    @abstractmethod
    def close(self) -> None: ...

    # The seed README's ``ctx.db`` API, over the primitives above.
    def claim_task(self, task_id: str, *, worker_id: str | None = None, lease_seconds: float = 300) -> bool:
        """Claim an already registered task by id; True if this caller now holds it.

        Without ``worker_id`` each call is a distinct claimant, so a second call fails.
        """
        if self.get_task(task_id) is None:
            return False
        claimant = worker_id or f"claim-{uuid.uuid4().hex}"
        return self._claim_existing(task_id, claimant, lease_seconds).outcome is ClaimOutcome.CLAIMED

    def update_status(self, task_id: str, status: TaskStatus | str, *, error: str | None = None) -> None:
        """Set a task's status by hand (for hooks that manage sub-work themselves)."""
        self._set_status(task_id, TaskStatus(status), error)

    @abstractmethod
    def _claim_existing(self, task_id: str, worker_id: str, lease_seconds: float) -> Claim: ...

    @abstractmethod
    def _set_status(self, task_id: str, status: TaskStatus, error: str | None) -> None: ...
