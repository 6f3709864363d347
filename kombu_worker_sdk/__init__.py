"""kombu-worker-sdk: turn an ML model into an autoscaling SQS pipeline step.

Implement :class:`WorkerHooks` (``load_pipeline``, ``process``, ``publish_next``)
and run ``kombu-worker --hooks pkg.module:Class``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import WorkerConfig, load_config
from .context import Context
from .errors import (
    ConfigError,
    HookError,
    HooksError,
    MessageError,
    PermanentError,
    RejectMessage,
    RetryMessage,
    SkipMessage,
    WorkerSDKError,
)
from .hooks import Outputs, WorkerHooks
from .message import FanIn, NextMessage, TaskMessage
from .pipeline import Disposition, Outcome, Pipeline, Stage, TaskRun
from .signals import (
    task_failure,
    task_postrun,
    task_prerun,
    worker_init,
    worker_ready,
    worker_shutdown,
)
from .state import JobStatus, TaskStatus

__all__ = [
    "ConfigError",
    "Context",
    "Disposition",
    "FanIn",
    "HookError",
    "HooksError",
    "JobStatus",
    "MessageError",
    "NextMessage",
    "Outcome",
    "Outputs",
    "PermanentError",
    "Pipeline",
    "RejectMessage",
    "RetryMessage",
    "SkipMessage",
    "Stage",
    "TaskMessage",
    "TaskRun",
    "TaskStatus",
    "WorkerConfig",
    "WorkerHooks",
    "WorkerSDKError",
    "__version__",
    "load_config",
    "task_failure",
    "task_postrun",
    "task_prerun",
    "worker_init",
    "worker_ready",
    "worker_shutdown",
]
