"""kombu-worker-sdk: turn an ML model into an autoscaling SQS pipeline step.

Implement :class:`WorkerHooks` (``load_pipeline``, ``process``, ``publish_next``)
and run ``kombu-worker --hooks pkg.module:Class``.
"""

from __future__ import annotations

from kombu_worker_sdk.client import Client
from kombu_worker_sdk.config import WorkerConfig, load_config
from kombu_worker_sdk.context import Context
from kombu_worker_sdk.errors import (
    ConfigError,
    HookError,
    HooksError,
    JobCancelledError,
    JobError,
    JobFailedError,
    JobNotFoundError,
    JobTimeoutError,
    MessageError,
    PermanentError,
    RejectMessage,
    RetryMessage,
    SkipMessage,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    WorkerSDKError,
)
from kombu_worker_sdk.hooks import Outputs, WorkerHooks
from kombu_worker_sdk.job import Job
from kombu_worker_sdk.message import FanIn, NextMessage, TaskMessage
from kombu_worker_sdk.pipeline import Disposition, Outcome, Pipeline, Stage, TaskRun
from kombu_worker_sdk.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    worker_init,
    worker_ready,
    worker_shutdown,
)
from kombu_worker_sdk.state import JobStatus, TaskStatus
from kombu_worker_sdk.version import __version__

__all__ = [
    "Client",
    "ConfigError",
    "Context",
    "Disposition",
    "FanIn",
    "HookError",
    "HooksError",
    "Job",
    "JobCancelledError",
    "JobError",
    "JobFailedError",
    "JobNotFoundError",
    "JobStatus",
    "JobTimeoutError",
    "MessageError",
    "NextMessage",
    "Outcome",
    "Outputs",
    "PermanentError",
    "Pipeline",
    "RejectMessage",
    "RetryMessage",
    "SkipMessage",
    "SoftTimeLimitExceeded",
    "Stage",
    "TaskMessage",
    "TaskRun",
    "TaskStatus",
    "TimeLimitExceeded",
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
