"""The producer's API: submit a job, then follow it (Celery's ``AsyncResult``, over the state store).

``Client`` uses the workers' own configuration and backends (SQS or the embedded broker,
PostgreSQL or SQLite, S3 or local files), so whatever a worker can read a client can
send, and whatever a worker records a client can see::

    client = Client()                      # load_config(): the same files and variables
    job = client.submit("tasks", {"input_uri": "s3://b/in.png", "output_prefix": "s3://b/out/"})
    job.wait(timeout=60)
    job.results()

``kombu-worker send`` and ``kombu-worker status`` are thin layers over it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kombu_worker_sdk.config import WorkerConfig, load_config
from kombu_worker_sdk.errors import InvalidMessageError, JobNotFoundError, StateError, WorkerSDKError
from kombu_worker_sdk.job import Job
from kombu_worker_sdk.masking import mask_url
from kombu_worker_sdk.message import TaskMessage, parse_task
from kombu_worker_sdk.state import JobRecord, StateStore, TaskRecord, TaskStatus, open_state

if TYPE_CHECKING:
    from kombu_worker_sdk.storage import Storage
    from kombu_worker_sdk.transport.publish import Publisher

MessageLike = TaskMessage | Mapping[str, Any]


class Client:
    """Submits jobs and reads their state; safe to share between a web server's threads.

    Backends open on first use and stay open until :meth:`close` (or the ``with`` block
    ends): a web handler pays for connections once, not per request.
    """

    def __init__(self, config: WorkerConfig | None = None):
        self.config = config if config is not None else load_config()
        self._lock = threading.Lock()
        self._writer: StateStore | None = None
        self._reader: StateStore | None = None
        self._publisher: Publisher | None = None
        self._storage: Storage | None = None

    # -- producing ------------------------------------------------------
    def submit(self, queue: str | None, messages: MessageLike | Iterable[MessageLike]) -> Job:
        """Register the messages' tasks PENDING, send them to ``queue``, and return their job.

        One submit is one job. ``job_id`` and ``task_id`` are used as given (send the same
        ids again and nothing runs twice); when absent they are generated: a new job id,
        and task ids ``<job>-root`` (one message) or ``<job>-<n>`` (several).
        ``queue`` None means the configured queue.
        """
        msgs = build_messages(messages)
        self.send(queue or self.config.queue, msgs)
        return Job(self, msgs[0].job_id)

    def send(self, queue: str, msgs: list[TaskMessage], *, register: bool = True) -> int:
        """Check every message, register each task as PENDING (so status shows it), then publish.

        Nothing is registered until the queue and the size of every message have been
        checked: a refused message must not leave a PENDING task (and a RUNNING job) behind.
        Returns how many messages were sent.
        """
        publisher = self._open_publisher()
        publisher.check(queue, msgs)
        registered = self._register(msgs, queue) if register else []
        try:
            return publisher.publish(queue, msgs)
        except WorkerSDKError as exc:
            self._fail_unsent(registered, exc)
            raise

    # -- reading --------------------------------------------------------
    def job(self, job_id: str) -> Job:
        """A handle on a job already submitted (by this client, the CLI or any producer)."""
        return Job(self, job_id)

    def read_job(self, job_id: str, *, tasks: bool = True) -> tuple[JobRecord, list[TaskRecord]]:
        """The job and (unless ``tasks`` is False) its tasks, read without creating a file or a schema.

        A reader run from the wrong folder must not leave an empty state.db behind
        that later looks like a real, empty state: every miss names where it looked.
        """
        state = self.state(write=False)
        where = mask_url(self.config.effective_db_dsn)
        try:
            job = state.get_job(job_id)
        except StateError:
            if state.schema_version() == 0:  # asked only on a miss: a poll costs one query
                raise StateError(f"the state database {where} has no tables") from None
            raise
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r} in {where}")
        return job, state.job_tasks(job_id) if tasks else []

    def state(self, *, write: bool) -> StateStore:
        """The state store: read-only (an SQLite file must already exist) until a write needs it."""
        if write:
            return self._writable_state()
        with self._lock:
            if self._writer is not None:
                return self._writer
            if self._reader is None:
                self._reader = open_state(self.config.effective_db_dsn, read_only=True)
            return self._reader

    def storage(self) -> Storage:
        """The workers' storage backend, to read what they wrote (``job.results()``)."""
        from kombu_worker_sdk.storage import open_storage

        with self._lock:
            if self._storage is None:
                self._storage = open_storage(
                    self.config.effective_storage_url,
                    allowed_buckets=self.config.allowed_buckets,
                    local_input_root=self.config.effective_local_input_root,
                )
            return self._storage

    def close(self) -> None:
        with self._lock:
            for store in (self._writer, self._reader):
                if store is not None:
                    store.close()
            if self._publisher is not None:
                self._publisher.close()
            self._writer = self._reader = self._publisher = None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals ------------------------------------------------------
    def _open_publisher(self) -> Publisher:
        """One publisher for the client's life (both kinds serialise their own sends)."""
        from kombu_worker_sdk.transport import default_publisher

        with self._lock:
            if self._publisher is None:
                self._publisher = default_publisher(self.config)
            return self._publisher

    def _register(self, msgs: list[TaskMessage], queue: str) -> list[TaskMessage]:
        """Register the tasks; returns those that are new (a re-send keeps the old rows)."""
        state = self._writable_state()
        return [msg for msg in msgs if state.register(msg, queue=queue)]

    def _writable_state(self) -> StateStore:
        """Opened (and the schema created or migrated) at the first write, as workers do."""
        with self._lock:
            if self._writer is None:
                writer = open_state(self.config.effective_db_dsn)
                writer.upgrade()
                self._writer = writer
            return self._writer

    def _fail_unsent(self, msgs: list[TaskMessage], error: WorkerSDKError) -> None:
        """The send failed after registering: mark the tasks no worker took FAILED, with the reason.

        A copy that did get through still runs: a worker's claim revives a FAILED task.
        """
        if not msgs:
            return
        state = self._writable_state()
        for msg in msgs:
            record = state.get_task(msg.task_id)
            if record is not None and record.status is TaskStatus.PENDING and record.attempts == 0:
                state.fail(msg.task_id, msg.job_id, error=f"send failed: {type(error).__name__}: {error}")


def build_messages(messages: MessageLike | Iterable[MessageLike]) -> list[TaskMessage]:
    """Validated task messages of one job, with the ids that were left out filled in."""
    if isinstance(messages, str | bytes):  # iterable, but never a list of messages
        raise InvalidMessageError("submit takes a dict, a TaskMessage or a list of them, not text")
    items = [messages] if isinstance(messages, TaskMessage | Mapping) else list(messages)
    if not items:
        raise InvalidMessageError("submit needs at least one message")
    bodies = [_body(item) for item in items]
    jobs = {body["job_id"] for body in bodies if body.get("job_id") is not None}
    if len(jobs) > 1:
        raise InvalidMessageError(f"one submit is one job, but the messages name {len(jobs)} jobs")
    job_id = jobs.pop() if jobs else uuid.uuid4().hex
    for i, body in enumerate(bodies):
        body.setdefault("job_id", job_id)
        body.setdefault("task_id", f"{job_id}-root" if len(bodies) == 1 else f"{job_id}-{i}")
    msgs = [parse_task(body) for body in bodies]
    seen: set[str] = set()
    for msg in msgs:
        if msg.task_id in seen:
            raise InvalidMessageError(
                f"task_id {msg.task_id!r} appears twice in one submit", task_id=msg.task_id
            )
        seen.add(msg.task_id)
    return msgs


def _body(item: object) -> dict[str, Any]:
    if isinstance(item, TaskMessage):
        return item.to_body()
    if isinstance(item, Mapping):
        return dict(item)
    raise InvalidMessageError(f"each message must be a dict or a TaskMessage, got {type(item).__name__}")
