"""Shared fixtures: an embedded worker running the real Kombu consumer in a thread."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.signals import models
from kombu_worker_sdk.storage import MemoryStorage
from kombu_worker_sdk.transport import broker_connection
from kombu_worker_sdk.worker.consumer import Worker
from kombu_worker_sdk.worker.runtime import Runtime, build_runtime
from tests import sample_hooks, servers

#: Modules some tests skip without (``pytest.importorskip`` at a module's top); the test
#: command installs them all, so under CI=true a missing one fails the run instead.
INSTALLED_BY_THE_TEST_COMMAND = ("opentelemetry.sdk", "opentelemetry.proto", "selenium", "cv2", "celery")


def pytest_configure(config: pytest.Config) -> None:
    if servers.in_ci():
        for name in INSTALLED_BY_THE_TEST_COMMAND:
            servers.require_module(name)


FIXTURES = Path(__file__).parent / "fixtures"


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it is truthy or the deadline passes (then fail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {predicate}")


@dataclass
class RunningWorker:
    worker: Worker
    runtime: Runtime
    thread: threading.Thread
    config: WorkerConfig
    stopped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def storage(self) -> MemoryStorage:
        assert isinstance(self.runtime.storage, MemoryStorage)
        return self.runtime.storage

    def send(self, *msgs: dict[str, Any]) -> None:
        self.runtime.publisher.publish(self.config.queue, list(msgs))

    def send_raw(self, body: str | bytes, **publish_kwargs: Any) -> None:
        with Connection(self.config.broker_url) as conn:
            producer = conn.Producer()
            producer.publish(body, routing_key=self.config.queue, **publish_kwargs)

    def dead_letters(self, timeout: float = 0.2) -> list[tuple[str, dict[str, Any]]]:
        """Drain the dead-letter queue: (raw body, headers) pairs."""
        found = []
        with Connection(self.config.broker_url) as conn:
            queue = conn.SimpleQueue(self.config.effective_dead_letter_queue)
            while True:
                try:
                    msg = queue.get(block=True, timeout=timeout)
                except queue.Empty:
                    return found
                found.append((msg.body, dict(msg.headers)))
                msg.ack()

    def status(self, task_id: str) -> str | None:
        record = self.runtime.state.get_task(task_id)
        return record.status.value if record else None

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.worker.should_stop = True
            self.thread.join(10)
            self.worker.shutdown(2)
            self.runtime.close()


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Callable[..., RunningWorker]]:
    """Start embedded workers (memory:// transport, memory storage, SQLite state)."""
    started: list[RunningWorker] = []

    def factory(hooks: Any = None, *, storage: Any = None, **settings: Any) -> RunningWorker:
        queue = settings.pop("queue", f"q-{uuid.uuid4().hex[:8]}")
        config = WorkerConfig(
            broker_url="memory://",
            queue=queue,
            next_queue=settings.pop("next_queue", queue),
            data_dir=tmp_path,
            db_dsn=f"sqlite:///{tmp_path / 'state.db'}",
            retry_backoff_seconds=settings.pop("retry_backoff_seconds", 0.01),
            retry_backoff_max_seconds=settings.pop("retry_backoff_max_seconds", 0.05),
            **settings,
        )
        runtime = build_runtime(config, hooks or sample_hooks.StepHooks(), storage=storage or MemoryStorage())
        runtime.state.upgrade()
        runtime.start()
        worker = Worker(runtime, broker_connection(config))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        assert worker.ready.wait(10), "worker did not start consuming"
        running = RunningWorker(worker, runtime, thread, config)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop()


@pytest.fixture(autouse=True)
def _fresh_models() -> Iterator[None]:
    """Each test loads models anew (the singleton is process-wide by design)."""
    models.clear()
    sample_hooks.LOADS.clear()
    yield
    models.clear()


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())
