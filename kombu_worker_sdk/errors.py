"""The one exception hierarchy of kombu-worker-sdk.

Every error the SDK raises derives from :class:`WorkerSDKError`, so callers can
catch the whole family in one clause. The tree::

    WorkerSDKError
    ├── ConfigError                  bad config file, key, value or URL
    ├── HooksError                   hooks path cannot be imported or a hook is missing
    ├── BackendUnavailableError      a queue, bucket or database did not answer (transient)
    ├── MessageError                 the message itself is bad: never retried, dead-lettered
    │   ├── DecodeError              not JSON, pickle or another refused content type
    │   ├── InvalidMessageError      JSON that breaks the message schema
    │   ├── TaskConflictError        a task_id reused with different content
    │   └── UnsafeURIError           a URI outside the allowlist or output_prefix
    │       ├── OutputPrefixViolation    a write that would land outside output_prefix
    │       └── LocalInputViolation      a read of a local path outside local_input_root
    ├── StorageError                 a read or write failed for a reason other than safety
    │   └── ObjectNotFoundError
    ├── StateError                   the task/job store refused an operation
    │   └── JobNotFoundError         the client asked about a job the store does not hold
    ├── JobError                     a job the client waits on did not end DONE
    │   ├── JobFailedError           a task FAILED: carries its task_id and error
    │   ├── JobCancelledError        the job was cancelled
    │   └── JobTimeoutError          still running when ``wait(timeout=...)`` ran out
    ├── PublishError                 fan-out could not be sent
    │   └── MessageTooLargeError     a child exceeds the queue's size limit
    ├── HookError                    a user hook raised (transient: retried)
    │   ├── PermanentError           raised by a hook to skip the retries
    │   └── TimeLimitExceeded        a hook overran its hard time limit (the process exits)
    │       └── SoftTimeLimitExceeded    raised inside the hook at its soft time limit
    └── FlowControl                  not failures: signals that steer the pipeline
        ├── SkipMessage              ack without further work (duplicate, already done)
        ├── RetryMessage             retry later, after ``delay`` seconds
        │   └── HoldMessage          keep the message and look again after ``delay``: no attempt used
        └── RejectMessage            dead-letter now, with a reason

Message-level errors carry the ``task_id`` when it could be read, so that the
task can be marked FAILED even when the message is otherwise unusable.
"""

from __future__ import annotations


class WorkerSDKError(Exception):
    """Base of every error raised by kombu-worker-sdk."""


class ConfigError(WorkerSDKError):
    """A config file, key, value or backend URL is wrong.

    Mostly raised at start-up; raised while a message is processed (a child with no
    queue to go to), it fails the task on the first attempt, since no retry can fix it.
    """


class HooksError(WorkerSDKError):
    """The hooks class cannot be imported, or lacks one of the required hooks."""


class BackendUnavailableError(WorkerSDKError):
    """A backend (queue, bucket, database) did not answer; worth retrying later."""


class MessageError(WorkerSDKError):
    """The message cannot be processed as sent. It is dead-lettered, never retried."""

    def __init__(self, message: str, *, task_id: str | None = None, job_id: str | None = None):
        super().__init__(message)
        self.task_id = task_id
        self.job_id = job_id


class DecodeError(MessageError):
    """The body is not JSON, or arrived with a content type other than JSON."""


class InvalidMessageError(MessageError):
    """The body is JSON but breaks the task message schema."""


class TaskConflictError(MessageError):
    """A task_id was reused with different content; task ids must be deterministic."""


class UnsafeURIError(MessageError):
    """A URI names a bucket or location this worker may not touch."""


class OutputPrefixViolation(UnsafeURIError):
    """A write would land outside the message's ``output_prefix``."""


class LocalInputViolation(UnsafeURIError):
    """A message names a local file (``file://``) outside the worker's ``local_input_root``.

    Without this guard a message could make the worker read ``/etc/passwd`` or a
    Kubernetes service-account token and write it to the output bucket.
    """


class StorageError(WorkerSDKError):
    """A storage read or write failed."""


class ObjectNotFoundError(StorageError):
    """The object named by a URI does not exist."""


class StateError(WorkerSDKError):
    """The task/job state store refused an operation."""


class JobNotFoundError(StateError):
    """The state store holds no job by that id (wrong folder or DB_DSN, or never submitted)."""


class JobError(WorkerSDKError):
    """A job the client waited on did not end DONE; ``job_id`` names it."""

    def __init__(self, message: str, *, job_id: str):
        super().__init__(message)
        self.job_id = job_id


class JobFailedError(JobError):
    """A task of the job FAILED for good: ``task_id`` and ``error`` are the task's own record."""

    def __init__(self, message: str, *, job_id: str, task_id: str | None, error: str | None):
        super().__init__(message, job_id=job_id)
        self.task_id = task_id
        self.error = error


class JobCancelledError(JobError):
    """The job was cancelled (``job.cancel()``): it will never be DONE."""


class JobTimeoutError(JobError, TimeoutError):
    """The job was still running when the wait ran out; it goes on running."""


class PublishError(WorkerSDKError):
    """Fan-out messages could not be sent."""


class MessageTooLargeError(PublishError):
    """A message is over the queue's size limit; refused before sending."""


class HookError(WorkerSDKError):
    """A user hook raised; the original exception is the ``__cause__``."""


class PermanentError(HookError):
    """Raise from a hook when retrying cannot help: the task fails at once."""


class TimeLimitExceeded(HookError):
    """A hook ran past its hard time limit (Celery's ``TimeLimitExceeded``).

    A thread cannot be killed, so the worker records the attempt with this error,
    hands its other messages back and exits (``worker.limits.EXIT_TIME_LIMIT``).
    """


class SoftTimeLimitExceeded(TimeLimitExceeded):
    """Raised inside the hook at its soft time limit (Celery's ``SoftTimeLimitExceeded``).

    A hook may catch it to clean up; uncaught, it fails the attempt like any HookError.
    ``ctx.check_time_limit()`` raises it too, for a hook that checks between steps.
    """

    def __init__(self, message: str = "the hook ran past its soft time limit"):
        super().__init__(message)


class FlowControl(WorkerSDKError):
    """Base of the signals that steer the pipeline rather than report a failure."""


class SkipMessage(FlowControl):
    """Stop the pipeline and acknowledge the message: there is nothing left to do."""


class RetryMessage(FlowControl):
    """Stop the pipeline and retry the message after ``delay`` seconds.

    With ``delay`` (a throttle: the Retry-After of a 429) the worker keeps the message
    and runs it again after the delay without using an attempt: no SQS receive is
    counted and ``max_attempts`` is not approached. Without it, the retry is an attempt,
    after the usual backoff.
    """

    def __init__(self, reason: str, *, delay: float | None = None):
        super().__init__(reason)
        self.delay = delay


class HoldMessage(RetryMessage):
    """Keep the message in-process and run it again after ``delay``, without using an attempt.

    For a copy whose task another worker holds: redelivering it through SQS would
    raise ApproximateReceiveCount, and a small redrive ``maxReceiveCount`` would then
    dead-letter a healthy task.
    """


class RejectMessage(FlowControl):
    """Stop the pipeline and dead-letter the message at once."""
