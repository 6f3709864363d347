"""Celery-named signals, and the process-level model singleton.

Celery users already connect to ``worker_init``, ``task_prerun`` and friends;
the same names fire here at the same moments. The model returned by
``load_pipeline`` is loaded once per process by the SDK's own ``worker_init``
receiver and held in :data:`models`, never per message or per thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kombu_worker_sdk.errors import HooksError

log = logging.getLogger(__name__)
Receiver = Callable[..., Any]


class Signal:
    """A named event with receivers called in the order they connected.

    A receiver that raises is logged and does not stop the others, except for
    ``worker_init``: a model that fails to load must stop the worker.
    """

    def __init__(self, name: str, *, propagate_errors: bool = False):
        self.name = name
        self._receivers: list[Receiver] = []
        self._lock = threading.Lock()
        self._propagate = propagate_errors

    def connect(self, receiver: Receiver) -> Receiver:
        """Connect ``receiver``; usable as a decorator. Connecting twice is a no-op."""
        with self._lock:
            if receiver not in self._receivers:
                self._receivers.append(receiver)
        return receiver

    def disconnect(self, receiver: Receiver) -> None:
        with self._lock:
            if receiver in self._receivers:
                self._receivers.remove(receiver)

    def send(self, sender: Any = None, **kwargs: Any) -> None:
        for receiver in list(self._receivers):
            try:
                receiver(sender=sender, signal=self, **kwargs)
            except Exception:
                if self._propagate:
                    raise
                log.exception("receiver %r of signal %s failed", receiver, self.name)

    def __repr__(self) -> str:
        return f"<Signal {self.name}>"


worker_init = Signal("worker_init", propagate_errors=True)
worker_ready = Signal("worker_ready")
worker_shutdown = Signal("worker_shutdown")
task_prerun = Signal("task_prerun")
task_postrun = Signal("task_postrun")
task_failure = Signal("task_failure")


class ModelSingleton:
    """Holds each hooks class's model for the life of the process.

    Keyed by hooks class so that the demo can run several steps in one process;
    a real pod runs one. Loading happens under a lock, exactly once per key.
    """

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}
        self._load_seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def load(self, key: str, loader: Callable[[], Any]) -> Any:
        """Run ``loader`` once for ``key`` and keep what it returns."""
        import time

        with self._lock:
            if key not in self._models:
                started = time.perf_counter()
                self._models[key] = loader()
                self._load_seconds[key] = time.perf_counter() - started
            return self._models[key]

    def get(self, key: str) -> Any:
        try:
            return self._models[key]
        except KeyError:
            raise HooksError(
                f"model for {key} is not loaded: it is loaded by the worker_init signal "
                "before the first message"
            ) from None

    def put(self, key: str, model: Any) -> None:
        """Set or replace the model for ``key``: what ``testing.load_model`` uses."""
        with self._lock:
            self._models[key] = model
            self._load_seconds[key] = 0.0

    def is_loaded(self, key: str) -> bool:
        return key in self._models

    def load_seconds(self, key: str) -> float:
        return self._load_seconds.get(key, 0.0)

    def clear(self) -> None:
        """Forget every model; for tests only."""
        with self._lock:
            self._models.clear()
            self._load_seconds.clear()


models = ModelSingleton()


def hooks_key(hooks: object) -> str:
    cls = type(hooks)
    return f"{cls.__module__}.{cls.__qualname__}"


@worker_init.connect
def load_model_on_init(sender: Any = None, *, hooks: Any = None, ctx: Any = None, **_: Any) -> None:
    """The SDK's own worker_init receiver: load the model before the first message."""
    if hooks is not None:
        models.load(hooks_key(hooks), lambda: hooks.load_pipeline(ctx))
