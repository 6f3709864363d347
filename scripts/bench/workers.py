"""Workers under test, run in this process: a kombu-worker on a thread, or a Celery 5 worker.

Every import of the SDK's internals is here, so that a moved module is one edit.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backends import make_storage
from .common import seed_memory, tmpdir, unique, wait_settled
from .settings import BUCKET


@dataclass
class KW:
    """A kombu-worker under test."""

    worker: Any
    runtime: Any
    thread: threading.Thread | None = None

    def stop(self, join: float = 10.0) -> None:
        self.worker.should_stop = True
        if self.thread is not None:
            self.thread.join(join)
        self.worker.shutdown(5)
        self.runtime.close()


def kombu_worker(
    hooks: Any,
    *,
    queue: str,
    tmp: Path,
    storage: Any = "memory",
    broker_url: str = "memory://",
    state: Any = None,
    connection: Any = None,
    publisher: Any = None,
    max_messages: int | None = None,
    threaded: bool = True,
    **settings: Any,
) -> KW:
    """A worker as ``kombu-worker`` builds one, with a file-backed SQLite state in ``tmp``.

    ``publisher`` None is a MemoryPublisher; ``"default"`` lets the runtime pick it from
    ``broker_url`` (SqsPublisher for sqs://). ``storage`` is a kind for :func:`make_storage`,
    an object, or None (the runtime opens the config's); ``state`` and ``connection``, when
    given, replace the SQLite file and the Kombu connection the config would make.
    """
    from kombu_worker_sdk.config import WorkerConfig
    from kombu_worker_sdk.state import SqliteStateStore
    from kombu_worker_sdk.transport import broker_connection
    from kombu_worker_sdk.transport.publish import MemoryPublisher
    from kombu_worker_sdk.worker.consumer import Worker
    from kombu_worker_sdk.worker.runner import delivery_factory
    from kombu_worker_sdk.worker.runtime import build_runtime

    config = WorkerConfig(
        broker_url=broker_url,
        queue=queue,
        data_dir=tmp,
        bucket=BUCKET,
        log_level="WARNING",
        worker_id=f"bench-{uuid.uuid4().hex[:6]}",
        **settings,
    )
    if state is None:
        state = SqliteStateStore(tmp / f"state-{uuid.uuid4().hex[:8]}.db")
    if isinstance(storage, str):
        storage = make_storage(storage)
    if publisher is None:
        publisher = MemoryPublisher()
    elif publisher == "default":
        publisher = None
    runtime = build_runtime(config, hooks, storage=storage, state=state, publisher=publisher)
    runtime.state.upgrade()
    runtime.start()
    worker = Worker(
        runtime,
        connection or broker_connection(config),
        delivery_factory=delivery_factory(runtime),
        max_messages=max_messages,
    )
    kw = KW(worker, runtime)
    if threaded:
        kw.thread = threading.Thread(target=worker.run, name="bench-kombu-worker", daemon=True)
        kw.thread.start()
        if not worker.ready.wait(30):
            raise RuntimeError("kombu-worker did not start consuming")
    return kw


def drain_memory(hooks: Any, count: int, *, name: str, poll: float, **settings: Any) -> tuple[float, float]:
    """Queue ``count`` messages on memory://, then run a worker until it has settled them all.

    Returns the ``perf_counter`` times of the worker's start and of the last settle seen.
    """
    queue = unique(f"bench-{name}")
    seed_memory(queue, count)
    with tmpdir(f"bench-{name}-") as tmp:
        started = time.perf_counter()
        kw = kombu_worker(hooks, queue=queue, tmp=tmp, **settings)
        wait_settled(kw.worker, count, poll=poll)
        ended = time.perf_counter()
        kw.stop()
    return started, ended


def celery_app(broker: str, queue: str, **conf: Any) -> Any:
    """A Celery 5 app with the same at-least-once guarantee as kombu-worker (acks_late),
    results ignored and no events: the work a kombu-worker does, no more."""
    from celery import Celery

    app = Celery(f"bench{uuid.uuid4().hex[:6]}", broker=broker, set_as_current=False)
    settings: dict[str, Any] = {
        "task_default_queue": queue,
        "task_acks_late": True,
        "task_ignore_result": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "broker_connection_retry_on_startup": True,
    }
    app.conf.update({**settings, **conf})
    return app


@contextlib.contextmanager
def celery_worker(
    app: Any, shutdown_timeout: float, pool: str = "solo", concurrency: int = 1
) -> Iterator[None]:
    """A Celery pool (solo by default) in a thread of this process (its own test helper, no
    ping task)."""
    from celery.contrib.testing.worker import start_worker

    with start_worker(
        app,
        pool=pool,
        concurrency=concurrency,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=shutdown_timeout,
    ):
        yield
