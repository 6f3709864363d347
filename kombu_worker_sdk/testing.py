"""Helpers for unit-testing hooks, as the seed README's Testing section asks.

* :func:`fake_context` gives a ``ctx`` with in-memory storage, state and publisher,
  for calling ``process`` directly.
* :func:`load_model` loads (or fakes) the model behind ``hooks.model``, for calling
  ``process`` directly: ``hooks.model`` is read-only, since the worker loads it once.
* :func:`run_message` sends one message through the real pipeline (validate,
  idempotency, claim, hooks, store, fanout) and returns what happened.

Example::

    from kombu_worker_sdk.testing import run_message

    result = run_message(MyHooks(), {"job_id": "j1", "task_id": "j1-a", ...})
    assert result.status == "DONE"
    assert result.published[0]["task_id"] == "j1-a-analysis-000"
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.context import Context
from kombu_worker_sdk.hooks import Outputs, WorkerHooks
from kombu_worker_sdk.logs import get_logger
from kombu_worker_sdk.message import TaskMessage
from kombu_worker_sdk.pipeline import Disposition, Outcome, TaskRun
from kombu_worker_sdk.signals import hooks_key, models
from kombu_worker_sdk.state import SqliteStateStore, StateStore
from kombu_worker_sdk.storage import MemoryStorage
from kombu_worker_sdk.transport.publish import MemoryPublisher
from kombu_worker_sdk.worker.runtime import Runtime, build_runtime


def fake_context(
    msg: TaskMessage | dict[str, Any] | None = None,
    *,
    config: WorkerConfig | None = None,
    storage: MemoryStorage | None = None,
    state: StateStore | None = None,
    publisher: MemoryPublisher | None = None,
) -> Context:
    """A ctx backed by memory; bound to ``msg`` (storage scoped) when one is given."""
    config = config or WorkerConfig(next_queue="next")
    state = state or SqliteStateStore(":memory:")
    state.upgrade()
    ctx = Context.for_worker(
        config=config,
        storage=storage or MemoryStorage(),
        sqs=publisher or MemoryPublisher(),
        db=state,
        logger=get_logger(worker_id="test"),
        worker_id="test",
    )
    if msg is None:
        return ctx
    return ctx.for_message(msg if isinstance(msg, TaskMessage) else TaskMessage.model_validate(msg), 1)


H = TypeVar("H", bound=WorkerHooks)
_NOT_GIVEN: Any = object()


def load_model(hooks: H, ctx: Context | None = None, *, model: Any = _NOT_GIVEN) -> H:
    """Give ``hooks.model`` a value, as the worker_init signal does, and return ``hooks``.

    Runs ``hooks.load_pipeline(ctx)`` (``ctx`` defaults to :func:`fake_context`), or,
    with ``model=``, installs that object instead (a fake, or one loaded in a
    session fixture). Either replaces what the process held for this hooks class.
    """
    loaded = hooks.load_pipeline(ctx or fake_context()) if model is _NOT_GIVEN else model
    models.put(hooks_key(hooks), loaded)
    return hooks


@dataclass
class RunResult:
    """What one message did: its disposition, outputs, writes and published children."""

    outcome: Outcome
    outputs: Outputs | None
    published: list[dict[str, Any]]
    storage: MemoryStorage
    state: StateStore
    run: TaskRun

    @property
    def disposition(self) -> Disposition:
        return self.outcome.disposition

    @property
    def status(self) -> str | None:
        """The task's status in the state store afterwards."""
        task_id = self.run.task_id
        record = self.state.get_task(task_id) if task_id else None
        return record.status.value if record else None

    def read_json(self, name: str) -> Any:
        """Read a JSON file this message wrote under its output_prefix."""
        assert self.run.message is not None
        return json.loads(self.storage.read(self.run.message.output_prefix + name))


class LocalRunner:
    """Runs messages through one hooks instance and shared in-memory backends."""

    def __init__(
        self,
        hooks: Any,
        config: WorkerConfig | None = None,
        *,
        storage: MemoryStorage | None = None,
        state: StateStore | None = None,
        publisher: MemoryPublisher | None = None,
    ):
        """Pass another runner's storage, state and publisher to chain pipeline steps."""
        self.storage = storage or MemoryStorage()
        self.publisher = publisher or MemoryPublisher()
        self.state = state or SqliteStateStore(":memory:")
        self.state.upgrade()
        self.runtime: Runtime = build_runtime(
            config or WorkerConfig(next_queue="next", worker_id="test"),
            hooks,
            storage=self.storage,
            state=self.state,
            publisher=self.publisher,
        )
        self.runtime.start()

    def run(self, msg: TaskMessage | dict[str, Any] | str, *, attempt: int = 1) -> RunResult:
        body = msg if isinstance(msg, str) else json.dumps(_as_body(msg))
        run = TaskRun(body, "application/json", attempt, self.runtime, self.runtime.logger.bind())
        self.runtime.pipeline.run([run])
        assert run.outcome is not None
        published = [child.message.to_body() for child in run.published]
        return RunResult(run.outcome, run.outputs, published, self.storage, self.state, run)


def run_message(
    hooks: Any,
    msg: TaskMessage | dict[str, Any] | str,
    *,
    config: WorkerConfig | None = None,
    storage: MemoryStorage | None = None,
    attempt: int = 1,
) -> RunResult:
    """Run one message through the real pipeline with in-memory backends."""
    return LocalRunner(hooks, config, storage=storage).run(msg, attempt=attempt)


def _as_body(msg: TaskMessage | dict[str, Any]) -> dict[str, Any]:
    return msg.to_body() if isinstance(msg, TaskMessage) else msg
