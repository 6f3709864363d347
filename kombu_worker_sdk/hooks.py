"""The three hooks a service implements, and how the runner finds and checks them.

A service subclasses :class:`WorkerHooks` and implements ``load_pipeline``,
``process`` and ``publish_next``. ``process_batch`` is optional: override it to
run one forward pass over a micro-batch.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from abc import ABC, abstractmethod
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict

from kombu_worker_sdk.errors import HooksError
from kombu_worker_sdk.signals import hooks_key, models

if TYPE_CHECKING:
    from kombu_worker_sdk.context import Context
    from kombu_worker_sdk.message import TaskMessage

REQUIRED_HOOKS = ("load_pipeline", "process", "publish_next")


class Outputs(TypedDict, total=False):
    """What ``process`` returns. ``result`` is JSON-serialisable data or bytes.

    ``result_ext`` names the file extension of a bytes result ("png"); without it
    the SDK sniffs the bytes. ``metrics`` is merged into metrics.json.
    """

    result: Any
    metrics: dict[str, Any]
    result_ext: str


class WorkerHooks(ABC):
    """Base class for a pipeline step. All three abstract hooks are required.

    Thread safety: with ``--concurrency N`` one instance and one model serve N
    threads at once, so ``process`` must keep per-message state in locals, not
    on ``self``, and guard any shared mutable object with a lock.
    """

    #: The hook's own version, written to metrics.json next to the SDK's.
    version: ClassVar[str] = "0"

    @property
    def model(self) -> Any:
        """What ``load_pipeline`` returned, loaded once per process at worker_init."""
        return models.get(hooks_key(self))

    @abstractmethod
    def load_pipeline(self, ctx: Context) -> Any:
        """Load the model once per process. Called by the worker_init signal."""

    @abstractmethod
    def process(self, ctx: Context, msg: TaskMessage) -> Outputs:
        """Do the work for one message and return its outputs."""

    @abstractmethod
    def publish_next(self, ctx: Context, msg: TaskMessage, outputs: Outputs) -> list[dict[str, Any]]:
        """Return the messages for the next step; ``[]`` at the end of a pipeline."""

    def process_batch(self, ctx: Context, msgs: list[TaskMessage]) -> list[Outputs | BaseException]:
        """Process a micro-batch; override for one GPU forward pass over all items.

        Return one entry per message, in order: its outputs, or the exception
        that failed that item alone. The default calls ``process`` for each.
        """
        results: list[Outputs | BaseException] = []
        for msg in msgs:
            try:
                results.append(self.process(ctx.for_message(msg), msg))
            except Exception as exc:
                results.append(exc)
        return results


def check_hooks_class(cls: type) -> None:
    """Refuse a hooks class that lacks any required hook, naming what is missing."""
    missing = [name for name in REQUIRED_HOOKS if not _implements(cls, name)]
    if missing:
        raise HooksError(
            f"hooks class {cls.__module__}.{cls.__qualname__} is missing required "
            f"hook(s): {', '.join(missing)}"
        )


def overrides_batch(hooks: object) -> bool:
    """True when the hooks class provides its own ``process_batch``."""
    method = getattr(type(hooks), "process_batch", None)
    return method is not None and method is not WorkerHooks.process_batch


def load_hooks(path: str) -> Any:
    """Import ``pkg.module:Class`` or ``pkg.module.Class``, check it and instantiate it."""
    module_name, _, class_name = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not class_name:
        raise HooksError(f"hooks path {path!r} must look like pkg.module:Class")
    module = _import_hooks_module(module_name)
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise HooksError(f"module {module_name!r} has no class {class_name!r}")
    check_hooks_class(cls)
    try:
        return cls()
    except TypeError as exc:
        raise HooksError(f"cannot instantiate hooks class {path!r}: {exc}") from None


def _import_hooks_module(module_name: str) -> ModuleType:
    """Import the hooks module from the current folder too, as Celery's ``-A`` does.

    ``python -m kombu_worker_sdk.runner`` has the current folder on ``sys.path``;
    the ``kombu-worker`` console script has only its own bin folder there. Any
    error while importing is one line naming the file and line, not a traceback.
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}"
        raise HooksError(f"hooks module {module_name!r} has a syntax error at {where}: {exc.msg}") from None
    except ImportError as exc:
        raise HooksError(f"cannot import hooks module {module_name!r}: {exc}") from None
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise HooksError(
            f"importing hooks module {module_name!r} failed at {frame.filename}:{frame.lineno}: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _implements(cls: type, name: str) -> bool:
    method = getattr(cls, name, None)
    return callable(method) and not getattr(method, "__isabstractmethod__", False)
