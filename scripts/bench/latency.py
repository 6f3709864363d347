"""Section f's world: in-process backends that cost what the real ones do, and one device.

Latencies are injected with ``time.sleep``, which releases the GIL as a network wait does, so
the figures measure how the worker overlaps its waits, not this machine's CPU:

- :func:`latency_storage`: MemoryStorage with ``storage_s`` per request (S3 in-region);
- :func:`latency_state`: file-backed SQLite with ``state_s`` per public call (PostgreSQL in-VPC);
  a call made from inside another (a batch method built on per-message ones) costs once, so a
  micro-batch's ``claim_many`` is one round trip, as one statement over arrays would be (a
  transaction of one statement per row would cost a round trip per statement on a network);
- :func:`latency_transport`: Kombu's memory transport whose receive costs ``sqs_s`` per call
  and returns up to 10 messages, never more than the channel's QoS can take (as Kombu's SQS
  transport asks ``ReceiveMessage`` for ``min(10, prefetch room)``);
- :class:`Device`: one accelerator, a lock held ``a + b·n`` for a batch of ``n``.

Built lazily, so that the parent process imports no SDK module.
"""

from __future__ import annotations

import collections
import functools
import io
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .settings import BUCKET

#: Not charged: schema set-up and teardown happen once, outside the measured window.
FREE_STATE_CALLS = frozenset({"upgrade", "schema_version", "close"})
RECEIVE_MAX = 10  # SQS's MaxNumberOfMessages ceiling


class OpCounter:
    """Requests per backend operation, counted thread-safely, and how many were in flight at
    once (the peak): a peak stuck at a pool's size says the pool is what requests wait for."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.inflight = 0
        self.peak = 0
        self._lock = threading.Lock()

    def add(self, op: str) -> None:
        with self._lock:
            self.counts[op] += 1

    def wait(self, op: str, seconds: float) -> None:
        """Count ``op`` and sleep ``seconds`` as its round trip, tracking the concurrency."""
        with self._lock:
            self.counts[op] += 1
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
        try:
            time.sleep(seconds)
        finally:
            with self._lock:
                self.inflight -= 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self.counts.items()))


def latency_storage(storage_s: float, counter: OpCounter) -> Any:
    """A MemoryStorage whose every request (read, open, put, find_result) waits ``storage_s``."""
    from kombu_worker_sdk.storage import MemoryStorage

    class LatencyStorage(MemoryStorage):
        def _wait(self, op: str) -> None:
            counter.wait(op, storage_s)

        def read(self, uri: str) -> bytes:
            self._wait("read")
            return super().read(uri)

        def open(self, uri: str) -> Any:
            self._wait("open")
            return io.BytesIO(MemoryStorage.read(self, uri))  # one request: not also a charged read

        def put(self, uri: str, data: bytes, content_type: str) -> None:
            self._wait("put")
            super().put(uri, data, content_type)

        def find_result(self, output_prefix: str) -> str | None:
            self._wait("find_result")
            return super().find_result(output_prefix)

    return LatencyStorage(allowed_buckets=[BUCKET])


def latency_state(path: Path, state_s: float, counter: OpCounter) -> Any:
    """A SqliteStateStore whose public calls each wait ``state_s`` (one round trip).

    Every public method is wrapped, so batch methods added later (one statement for a
    micro-batch) are charged one round trip too, without this module knowing their names.
    """
    from kombu_worker_sdk.state import SqliteStateStore

    depth = threading.local()

    def charged(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            outer = getattr(depth, "n", 0) == 0
            if outer:
                counter.add(name)
                time.sleep(state_s)
            depth.n = getattr(depth, "n", 0) + 1
            try:
                return fn(self, *args, **kwargs)
            finally:
                depth.n -= 1

        return call

    methods = {
        name: charged(name, getattr(SqliteStateStore, name))
        for name in dir(SqliteStateStore)
        if not name.startswith("_")
        and name not in FREE_STATE_CALLS
        and callable(getattr(SqliteStateStore, name))
        and not isinstance(getattr(SqliteStateStore, name), type)
    }
    cls = type("LatencyStateStore", (SqliteStateStore,), methods)
    return cls(path)


def latency_transport(sqs_s: float, counter: OpCounter) -> type:
    """Kombu's memory transport with an SQS-like receive: ``sqs_s`` a call, up to 10 back."""
    from queue import Empty

    from kombu.transport import memory

    class LatencyChannel(memory.Channel):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._received: dict[str, collections.deque[Any]] = collections.defaultdict(collections.deque)

        def _get(self, queue: str, timeout: float | None = None) -> Any:
            buffered = self._received[queue]
            if not buffered:
                counter.add("ReceiveMessage")
                time.sleep(sqs_s)
                room = self.qos.can_consume_max_estimate() if self.qos is not None else None
                for _ in range(RECEIVE_MAX if room is None else min(RECEIVE_MAX, max(room, 1))):
                    try:
                        buffered.append(self._queue_for(queue).get(block=False))
                    except Empty:
                        break
            if not buffered:
                raise Empty()
            return buffered.popleft()

    class Transport(memory.Transport):  # type: ignore[misc]
        Channel = LatencyChannel

    return Transport


class Device:
    """One accelerator: a lock held for ``a + b·n`` seconds per call on ``n`` items.

    Records busy time and the first start and last end, so duty = busy / (last - first).
    ``overlaps`` counts calls that found the lock taken: a device lane of one never does.
    """

    def __init__(self, a: float, b: float):
        self.a, self.b = a, b
        self.busy = 0.0
        self.calls = 0
        self.items = 0
        self.overlaps = 0
        self.first: float | None = None
        self.last: float | None = None
        self.sizes: Counter[int] = Counter()
        self._lock = threading.Lock()

    def run(self, n: int) -> None:
        if not self._lock.acquire(blocking=False):
            self.overlaps += 1
            self._lock.acquire()
        try:
            start = time.perf_counter()
            time.sleep(self.a + self.b * n)
            end = time.perf_counter()
            self.busy += end - start
            self.calls += 1
            self.items += n
            self.sizes[n] += 1
            self.first = start if self.first is None else self.first
            self.last = end
        finally:
            self._lock.release()

    def limit(self, batch: int) -> float:
        """The device's own ceiling in items per second at full batches of ``batch``."""
        return batch / (self.a + self.b * batch)

    def figures(self, batch: int) -> dict[str, Any]:
        wall = (self.last - self.first) if self.first is not None and self.last is not None else 0.0
        return {
            "duty": self.busy / wall if wall > 0 else float("nan"),
            "rate": self.items / wall if wall > 0 else float("nan"),
            "device_limit": self.limit(batch),
            "device_calls": self.calls,
            "items": self.items,
            "mean_batch": self.items / self.calls if self.calls else 0.0,
            "overlapping_calls": self.overlaps,
            "window_s": wall,
        }
