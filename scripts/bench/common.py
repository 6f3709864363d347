"""What every section shares: task bodies, seeding the memory transport, the clock, polling."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .settings import BUCKET


def unique(prefix: str) -> str:
    """A fresh queue name: queues on one broker must not see another run's messages."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def task_body(job: str, task: str, step: str = "noop", **params: Any) -> dict[str, Any]:
    return {
        "job_id": job,
        "task_id": task,
        "input_uri": f"s3://{BUCKET}/input.bin",
        "output_prefix": f"s3://{BUCKET}/jobs/{job}/{task}/",
        "params": {"step": step, **params},
    }


def memory_publish(queue: str, bodies: list[dict[str, Any]]) -> None:
    """Queue raw JSON task bodies on Kombu's memory transport."""
    from kombu import Connection, Producer, Queue

    with Connection("memory://") as conn:
        producer = Producer(conn.default_channel)
        declare = [Queue(queue, routing_key=queue)]
        for body in bodies:
            producer.publish(
                json.dumps(body),
                routing_key=queue,
                content_type="application/json",
                content_encoding="utf-8",
                declare=declare,
            )
            declare = []


def seed_memory(queue: str, count: int, start: int = 0) -> None:
    """Queue ``count`` one-task jobs ``j<start>`` … on the memory transport."""
    memory_publish(queue, [task_body(f"j{i}", f"j{i}-t") for i in range(start, start + count)])


class Clock:
    """First and last handler times and a count, shared by every consumer under test."""

    def __init__(self, expected: int):
        self.expected = expected
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()

    def tick(self, n: int = 1) -> None:
        now = time.perf_counter()
        with self._lock:
            if self.first is None:
                self.first = now
            self.count += n
            self.last = now
            if self.count >= self.expected:
                self.done.set()

    def rate(self) -> float:
        """Messages per second between the first and the last handler call: (N-1) intervals."""
        if self.first is None or self.last is None or self.last <= self.first:
            return float("nan")
        return (self.count - 1) / (self.last - self.first)


def wait_settled(worker: Any, count: int, *, poll: float, timeout: float = 300.0) -> None:
    """Poll until the worker has settled ``count`` messages, or the deadline: a run that stalls
    is reported on what it got through rather than hanging the benchmark."""
    deadline = time.monotonic() + timeout
    while worker.settled < count and time.monotonic() < deadline:
        time.sleep(poll)


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def quiet_logging() -> None:
    """WARNING for everyone, as a production worker would log no line per message."""
    from kombu_worker_sdk.logs import configure_logging

    configure_logging("WARNING")
    for name in ("celery", "kombu", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)


@contextlib.contextmanager
def tmpdir(prefix: str) -> Iterator[Path]:
    """A temporary folder on tmpfs when there is one, so that SQLite's fsyncs cost no disk."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
