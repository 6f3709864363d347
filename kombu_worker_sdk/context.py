"""The ``ctx`` object that every hook receives.

One Context per message: its storage is scoped to that message's
``output_prefix`` and its logger is bound to the message's ids. The
worker-level Context (given to ``load_pipeline``) may read but not write.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from kombu_worker_sdk.limits import Deadline
from kombu_worker_sdk.logs import TaskLogger
from kombu_worker_sdk.storage import ScopedStorage, Storage
from kombu_worker_sdk.storage.prefetched import InputCache

if TYPE_CHECKING:
    from kombu_worker_sdk.config import WorkerConfig
    from kombu_worker_sdk.message import TaskMessage
    from kombu_worker_sdk.state import StateStore
    from kombu_worker_sdk.transport.publish import Publisher


@dataclass(frozen=True)
class Context:
    """``ctx.config``, ``ctx.storage``, ``ctx.sqs``, ``ctx.db`` and ``ctx.logger``."""

    config: WorkerConfig
    storage: ScopedStorage
    sqs: Publisher
    db: StateStore
    logger: TaskLogger
    worker_id: str
    message: TaskMessage | None = None
    attempt: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    #: The running hook's time limits (README "Operating hooks that misbehave").
    deadline: Deadline = field(default_factory=Deadline)

    def time_left(self) -> float | None:
        """Seconds until this message's soft (else hard) time limit; None with no limit."""
        return self.deadline.time_left()

    def check_time_limit(self) -> None:
        """Raise ``SoftTimeLimitExceeded`` if the limit has passed: call it between steps,
        e.g. in a loop over chunks, where the watchdog's interrupt cannot reach."""
        self.deadline.check()

    @classmethod
    def for_worker(
        cls,
        *,
        config: WorkerConfig,
        storage: Storage,
        sqs: Publisher,
        db: StateStore,
        logger: TaskLogger,
        worker_id: str,
        cache: InputCache | None = None,
    ) -> Context:
        """The context of ``load_pipeline``: no message, so every write is refused.

        ``cache`` holds prefetched inputs; every message's context shares it.
        """
        return cls(config, ScopedStorage(storage, None, cache), sqs, db, logger, worker_id)

    def for_message(self, msg: TaskMessage, attempt: int | None = None) -> Context:
        """A copy bound to ``msg``: storage scoped to its output_prefix, logger to its ids."""
        attempt = self.attempt if attempt is None else attempt
        logger = self.logger.bind(
            job_id=msg.job_id, task_id=msg.task_id, trace_id=msg.trace_id, attempt=attempt
        )
        return replace(
            self,
            storage=ScopedStorage(self.storage.backend, msg.output_prefix, self.storage.cache),
            logger=logger,
            message=msg,
            attempt=attempt,
            deadline=Deadline(),
        )
