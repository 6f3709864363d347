"""The stage pipeline: ordered Stage objects run forward, after-hooks in reverse.

validate → idempotency → claim → hooks → store → fanout, then the disposition
(ACK, RETRY after a delay, or DEAD_LETTER), which only the consumer carries out.
Custom stages are placed with ``add(stage, before=..., after=...)`` by class or
name, as in Dramatiq's ``add_middleware``. Ack is not a stage: no configuration
can remove or reorder it.
"""

from __future__ import annotations

import enum
import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from kombu_worker_sdk.errors import (
    BackendUnavailableError,
    ConfigError,
    HoldMessage,
    MessageError,
    MessageTooLargeError,
    ObjectNotFoundError,
    PermanentError,
    RejectMessage,
    RetryMessage,
    SkipMessage,
    TaskConflictError,
)
from kombu_worker_sdk.observability import tracing
from kombu_worker_sdk.signals import task_failure

if TYPE_CHECKING:
    from kombu_worker_sdk.concurrency import HookRunner, IOPool
    from kombu_worker_sdk.config import WorkerConfig
    from kombu_worker_sdk.context import Context
    from kombu_worker_sdk.hooks import Outputs
    from kombu_worker_sdk.logs import TaskLogger
    from kombu_worker_sdk.message import NextMessage, TaskMessage
    from kombu_worker_sdk.state import Claim, PendingChild, StateStore
    from kombu_worker_sdk.storage import Storage
    from kombu_worker_sdk.transport.publish import Publisher


class Services(Protocol):
    """What stages and hooks share for the life of a worker (``worker.runtime.Runtime``).

    A Protocol, so the pipeline depends on the shape, not on the worker that builds it.
    """

    config: WorkerConfig
    hooks: Any
    hooks_path: str
    storage: Storage
    state: StateStore
    publisher: Publisher
    worker_id: str
    logger: TaskLogger
    context: Context
    io: IOPool
    hook_runner: HookRunner

    @property
    def hooks_version(self) -> str: ...


#: Errors no retry can fix: dead-lettered (and the task FAILED) on the first attempt. A
#: ConfigError raised mid-pipeline (a child with no queue to go to) and a child over the size
#: limit fail the same way every time until someone changes the configuration or the hook.
PERMANENT_ERRORS = (
    RejectMessage,
    MessageError,
    PermanentError,
    ObjectNotFoundError,
    ConfigError,
    MessageTooLargeError,
)

CORE_ORDER = ("validate", "idempotency", "claim", "prefetch", "hooks", "store", "fanout")
#: Custom stages go before hooks, between hooks and store, or after fanout; these
#: slots would split the idempotency check from the claim, or the result write
#: from the DB commit that must follow it.
_FORBIDDEN_SLOTS = {("after", "idempotency"), ("before", "claim"), ("after", "store"), ("before", "fanout")}


class Disposition(enum.StrEnum):
    ACK = "ack"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Outcome:
    """What the consumer must do with the message, and why."""

    disposition: Disposition
    delay: float = 0.0
    reason: str = ""
    error: BaseException | None = None


@dataclass
class TaskRun:
    """One delivery on its way through the pipeline; stages read and fill it in."""

    body: bytes | str
    content_type: str | None
    attempt: int
    runtime: Services
    log: TaskLogger
    message: TaskMessage | None = None
    ctx: Context | None = None
    claim: Claim | None = None
    outputs: Outputs | None = None
    resumed: bool = False
    children: list[NextMessage] = field(default_factory=list)
    published: list[PendingChild] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    ran: list[Stage] = field(default_factory=list)
    outcome: Outcome | None = None
    result_uri: str | None = None
    #: Who holds the claim: one id per delivery, so two copies of a task in one worker
    #: never both run; None means the worker's own id (single-message runners).
    claimant: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def holder(self) -> str:
        return self.claimant or self.runtime.worker_id

    @property
    def task_id(self) -> str | None:
        return self.message.task_id if self.message else None


class Stage:
    """Base class for stages: typed no-op hooks that subclasses override.

    ``process`` runs forward and may raise a flow-control signal or an error to
    end the run; ``on_success``/``on_failure`` run afterwards in reverse order,
    for every stage that ran.
    """

    name: ClassVar[str] = "stage"
    #: True for a stage whose per-message work is a blocking request: its default
    #: ``process_batch`` then runs the messages of a micro-batch concurrently.
    io_bound: ClassVar[bool] = False
    #: Where an entry-point stage goes, e.g. ``("before", "hooks")``.
    placement: ClassVar[tuple[str, str] | None] = None

    def setup(self, runtime: Services) -> None:
        """Called once when the worker starts, after the model is loaded."""

    def process(self, run: TaskRun) -> None:
        """Do this stage's work for one message."""

    def process_batch(self, runs: list[TaskRun]) -> dict[int, BaseException]:
        """Process several messages; returns the errors by position. Override to batch."""
        if self.io_bound:
            from kombu_worker_sdk.concurrency import errors_by_position

            return errors_by_position(runs[0].runtime.io.map(self.process, runs))
        errors: dict[int, BaseException] = {}
        for i, run in enumerate(runs):
            try:
                self.process(run)
            except Exception as exc:
                errors[i] = exc
        return errors

    def on_success(self, run: TaskRun) -> None:
        """Called, in reverse stage order, when the message is acked."""

    def on_failure(self, run: TaskRun, error: BaseException) -> None:
        """Called, in reverse stage order, when the message is retried or dead-lettered."""


class Pipeline:
    """An ordered list of stages and the policy that turns errors into dispositions."""

    def __init__(self, stages: Iterable[Stage] = ()):
        self.stages: list[Stage] = list(stages)

    def names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def add(
        self,
        stage: Stage,
        *,
        before: str | type[Stage] | None = None,
        after: str | type[Stage] | None = None,
    ) -> None:
        """Insert ``stage`` before or after a stage named by name or class."""
        if before is not None and after is not None:
            raise ConfigError("add() takes before= or after=, not both")
        anchor = before if before is not None else after
        if anchor is None:
            self.stages.append(stage)
            return
        anchor_name = anchor if isinstance(anchor, str) else anchor.name
        where = "before" if before is not None else "after"
        if (where, anchor_name) in _FORBIDDEN_SLOTS:
            raise ConfigError(
                f"stage {stage.name!r} cannot go {where} {anchor_name!r}: custom stages go "
                "before 'hooks', between 'hooks' and 'store', or after 'fanout'"
            )
        index = self._index(anchor_name)
        self.stages.insert(index if where == "before" else index + 1, stage)

    def _index(self, name: str) -> int:
        for i, stage in enumerate(self.stages):
            if stage.name == name:
                return i
        raise ConfigError(f"no stage named {name!r}; stages are {self.names()}")

    def setup(self, runtime: Services) -> None:
        for stage in self.stages:
            stage.setup(runtime)

    def run(self, runs: Sequence[TaskRun]) -> None:
        """Run every message through the stages; each ends with ``run.outcome`` set."""
        self.advance(self.stages, runs)
        self.conclude(runs)

    def phases(self) -> tuple[list[Stage], list[Stage], list[Stage]]:
        """(prepare, device, finish): the stages before ``hooks``, ``hooks``, and after it.

        The worker runs them on different lanes; a pipeline without a hooks stage is
        all preparation.
        """
        names = self.names()
        if "hooks" not in names:
            return list(self.stages), [], []
        at = names.index("hooks")
        return self.stages[:at], self.stages[at : at + 1], self.stages[at + 1 :]

    def advance(self, stages: Sequence[Stage], runs: Sequence[TaskRun]) -> list[TaskRun]:
        """Run the still-active runs through ``stages``; returns those with no outcome yet."""
        active = [run for run in runs if run.outcome is None]
        for stage in stages:
            if not active:
                break
            active = self._run_stage(stage, active)
        return active

    def conclude(self, runs: Sequence[TaskRun]) -> None:
        """Ack what every stage passed, then the after-hooks, in reverse, for each run."""
        for run in runs:
            if run.outcome is None:
                run.outcome = Outcome(Disposition.ACK, reason="done")
            self._after(run)

    def _run_stage(self, stage: Stage, active: list[TaskRun]) -> list[TaskRun]:
        started = time.perf_counter()
        for run in active:
            run.log.set_stage(stage.name)
            run.ran.append(stage)
        errors = tracing.active().run_stage(stage.name, active, lambda: self._call(stage, active))
        elapsed = time.perf_counter() - started
        survivors = []
        for i, run in enumerate(active):
            run.timings[stage.name] = round(elapsed, 6)
            if i in errors:
                run.outcome = self._classify(run, errors[i])
            else:
                survivors.append(run)
        return survivors

    @staticmethod
    def _call(stage: Stage, active: list[TaskRun]) -> dict[int, BaseException]:
        if len(active) == 1:
            try:
                stage.process(active[0])
            except Exception as exc:
                return {0: exc}
            return {}
        return stage.process_batch(active)

    def _classify(self, run: TaskRun, exc: BaseException) -> Outcome:
        config = run.runtime.config
        if isinstance(exc, SkipMessage):
            return Outcome(Disposition.ACK, reason=str(exc) or "skipped", error=exc)
        if isinstance(exc, RetryMessage):
            delay = retry_delay(exc.delay, config) if exc.delay else backoff(run.attempt, config)
            return Outcome(Disposition.RETRY, delay, str(exc), exc)
        if isinstance(exc, BackendUnavailableError):
            return Outcome(Disposition.RETRY, backoff(run.attempt, config), describe(exc), exc)
        if isinstance(exc, PERMANENT_ERRORS) or run.attempt >= config.max_attempts:
            return Outcome(Disposition.DEAD_LETTER, reason=describe(exc), error=exc)
        return Outcome(Disposition.RETRY, backoff(run.attempt, config), describe(exc), exc)

    def _after(self, run: TaskRun) -> None:
        assert run.outcome is not None
        error = run.outcome.error
        if run.outcome.disposition is not Disposition.ACK and error is not None:
            record_failure(run, error)
        elif isinstance(error, SkipMessage):
            run.log.info("skipped: %s", run.outcome.reason)
        for stage in reversed(run.ran):
            try:
                if run.outcome.disposition is Disposition.ACK:
                    stage.on_success(run)
                else:
                    stage.on_failure(run, error or RuntimeError(run.outcome.reason))
            except Exception:
                run.log.exception("after-hook of stage %s failed", stage.name)
        run.log.set_stage(None)
        tracing.active().end_task(run)


def record_failure(run: TaskRun, error: BaseException) -> None:
    """Write the failure to the state store and fire ``task_failure``: the one place."""
    assert run.outcome is not None
    state = run.runtime.state
    reason = run.outcome.reason
    task_id = run.task_id or getattr(error, "task_id", None)
    job_id = run.message.job_id if run.message else getattr(error, "job_id", None)
    if isinstance(error, BackendUnavailableError):
        run.log.debug("backend unavailable: %s", reason)  # the consumer logs one line per outage
        return
    if isinstance(error, HoldMessage):  # not a failure: the copy waits for the holder's lease
        run.log.info("%s (its lease ends in %.1fs): waiting in-process", reason, run.outcome.delay)
        return
    if isinstance(error, RetryMessage) and error.delay is not None:  # a throttle (Retry-After)
        run.log.info(
            "retry asked for in %.1fs (%s): waiting in-process, no attempt used", run.outcome.delay, reason
        )
        return
    try:
        if run.outcome.disposition is Disposition.DEAD_LETTER:
            run.log.error("giving up: %s", reason)
            if task_id and not isinstance(error, TaskConflictError):
                state.fail(task_id, job_id, error=reason, content_hash=_safe_hash(run))
        else:
            run.log.warning("will retry in %.1fs: %s", run.outcome.delay, reason)
            if task_id and run.claim is not None:
                state.retry_later(task_id, error=reason, worker_id=run.holder)
    except Exception as exc:  # the state store may be the thing that is down
        run.log.error("could not record the failure in the state store: %s", describe(exc))
    task_failure.send(run.runtime.hooks, task_id=task_id, exception=error, run=run)


def _safe_hash(run: TaskRun) -> str | None:
    try:
        return run.message.content_hash() if run.message else None
    except (UnicodeEncodeError, ValueError):
        return None


def backoff(attempt: int, config: WorkerConfig) -> float:
    """Exponential backoff with jitter: base·2^(attempt-1), capped, scaled by U(0.5, 1)."""
    ceiling = min(config.retry_backoff_max_seconds, config.retry_backoff_seconds * 2.0 ** max(attempt - 1, 0))
    return retry_delay(ceiling * random.uniform(0.5, 1.0), config)


def retry_delay(seconds: float, config: WorkerConfig) -> float:
    """The delay the broker will really apply, so "will retry in Ns" is true.

    SQS visibility is whole seconds (ChangeMessageVisibility truncates 0.8 to 0, an
    immediate retry), so off the embedded transports a delay rounds up, to at least 1 s.
    """
    if config.is_embedded_broker:
        return round(seconds, 3)
    return float(max(1, math.ceil(seconds)))


def describe(exc: BaseException) -> str:
    """``ErrorName: message``, with any URL password masked."""
    from kombu_worker_sdk.masking import mask_url

    return mask_url(f"{type(exc).__name__}: {exc}")[:2000]
