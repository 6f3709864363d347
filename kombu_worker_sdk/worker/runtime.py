"""Wiring: build the services a worker needs from its config, and start them.

Backends are chosen by URL (the config's ``effective_broker_url``,
``effective_storage_url`` and ``effective_db_dsn``, which follow the queue's and
the bucket's form when unset), so the embedded defaults and the production
backends share one code path. Only an embedded backend touches ``data_dir``.
"""

from __future__ import annotations

import importlib
import os
import socket
import uuid
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from kombu_worker_sdk.concurrency import HookRunner, InlineHooks, IOPool
from kombu_worker_sdk.config import StageSpec, WorkerConfig
from kombu_worker_sdk.context import Context
from kombu_worker_sdk.errors import ConfigError, HooksError
from kombu_worker_sdk.hooks import load_hooks
from kombu_worker_sdk.logs import TaskLogger, get_logger
from kombu_worker_sdk.pipeline import Pipeline, Stage
from kombu_worker_sdk.signals import worker_init
from kombu_worker_sdk.state import StateStore, open_state
from kombu_worker_sdk.storage import Storage, open_storage
from kombu_worker_sdk.storage.prefetched import InputCache
from kombu_worker_sdk.transport import default_publisher
from kombu_worker_sdk.transport.publish import Publisher

STAGE_ENTRY_POINT_GROUP = "kombu_worker_sdk.stages"
#: Prefetched inputs held at once are bounded to this many of the largest allowed.
PREFETCH_BUDGET_INPUTS = 8


@dataclass
class Runtime:
    """Everything the pipeline and hooks share for the life of a worker."""

    config: WorkerConfig
    hooks: Any
    hooks_path: str
    storage: Storage
    state: StateStore
    publisher: Publisher
    pipeline: Pipeline
    worker_id: str
    logger: TaskLogger
    context: Context
    #: Runs one micro-batch's storage requests at once (see ``concurrency.IOPool``).
    io: IOPool = field(init=False)
    #: Where user hooks run: inline here; a worker points it at its device lane.
    hook_runner: HookRunner = field(init=False)

    def __post_init__(self) -> None:
        self.io = IOPool(self.config.batch_io_threads)
        self.hook_runner = InlineHooks()

    @property
    def hooks_version(self) -> str:
        return str(getattr(self.hooks, "version", "0"))

    def start(self) -> None:
        """Load the model (worker_init) and set up stages, before the first message."""
        worker_init.send(self.hooks, hooks=self.hooks, ctx=self.context, runtime=self)
        self.pipeline.setup(self)

    def close(self) -> None:
        self.io.close()
        self.publisher.close()
        self.state.close()


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def build_runtime(
    config: WorkerConfig,
    hooks: Any | str,
    *,
    storage: Storage | None = None,
    state: StateStore | None = None,
    publisher: Publisher | None = None,
    pipeline: Pipeline | None = None,
) -> Runtime:
    """Assemble a runtime; any backend may be passed in (tests, embedded demo)."""
    from kombu_worker_sdk.stages import default_pipeline

    hooks_path = hooks if isinstance(hooks, str) else f"{type(hooks).__module__}:{type(hooks).__qualname__}"
    hooks_obj = load_hooks(hooks) if isinstance(hooks, str) else hooks
    storage = storage or open_storage(
        config.effective_storage_url,
        allowed_buckets=[*config.allowed_buckets, config.bucket or ""],
        local_input_root=config.effective_local_input_root,
    )
    state = state or open_state(config.effective_db_dsn)
    publisher = publisher or default_publisher(config)
    pipeline = pipeline or default_pipeline()
    add_configured_stages(pipeline, config.stages)
    add_entry_point_stages(pipeline)
    worker_id = config.worker_id or new_worker_id()
    logger = get_logger(worker_id=worker_id)
    cache = InputCache(PREFETCH_BUDGET_INPUTS * config.prefetch_input_max_bytes)
    context = Context.for_worker(
        config=config,
        storage=storage,
        sqs=publisher,
        db=state,
        logger=logger,
        worker_id=worker_id,
        cache=cache,
    )
    return Runtime(
        config, hooks_obj, hooks_path, storage, state, publisher, pipeline, worker_id, logger, context
    )


def add_configured_stages(pipeline: Pipeline, specs: list[StageSpec]) -> None:
    """Insert the custom stages named in the YAML config."""
    for spec in specs:
        stage_cls = import_object(spec.class_path)
        if not (isinstance(stage_cls, type) and issubclass(stage_cls, Stage)):
            raise ConfigError(f"stages: {spec.class_path!r} is not a Stage subclass")
        stage = stage_cls(**spec.options)
        pipeline.add(stage, before=spec.before, after=spec.after)


def add_entry_point_stages(pipeline: Pipeline) -> None:
    """Insert stages that installed packages declare under ``kombu_worker_sdk.stages``.

    The entry point names a Stage subclass whose ``placement`` says where it goes,
    e.g. ``placement = ("before", "hooks")``.
    """
    for ep in entry_points(group=STAGE_ENTRY_POINT_GROUP):
        stage_cls = ep.load()
        if not (isinstance(stage_cls, type) and issubclass(stage_cls, Stage)):
            raise ConfigError(f"entry point {ep.name!r} does not name a Stage subclass")
        where, anchor = getattr(stage_cls, "placement", None) or ("before", "hooks")
        pipeline.add(stage_cls(), **{where: anchor})


def import_object(path: str) -> Any:
    """Import ``pkg.mod:Name`` or ``pkg.mod.Name``."""
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot import {path!r}: {exc}") from None


__all__ = ["HooksError", "Runtime", "build_runtime", "new_worker_id"]
