"""Two small tools the lanes share: a pool for one batch's I/O, and where user hooks run.

:class:`IOPool` runs one call per message of a micro-batch at once (the idempotency
check, the input read, the result writes), so a batch of 32 waits for one storage
round trip, not 32. It is separate from the I/O lane's own pool: a phase waiting on
its sub-calls must never wait behind other phases for a thread.

:class:`HookRunner` is the thread-safety contract: every user hook (``process``,
``process_batch``, ``publish_next``) runs on a device-lane thread, so a hooks class
written for ``concurrency 1`` is only ever entered by one thread, the same one each
time (thread-bound CUDA or TensorRT state stays valid). The finish lane asks the device
lane for ``publish_next`` between two batches (``worker.lanes.DeviceLane.call``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


#: Calls faster than this run inline: a thread hand-off (tens of µs) would cost more than
#: the overlap saves. Memory and local-disk storage stay inline; S3 requests fan out.
INLINE_BELOW_SECONDS = 0.001
#: Weight of the newest sample in the moving averages here and in ``worker.prefetch``.
SMOOTHING = 0.2


def moving_average(old: float | None, sample: float) -> float:
    """The exponential moving average after ``sample``: a few samples to adapt, not one."""
    return sample if old is None else old + SMOOTHING * (sample - old)


class IOPool:
    """Map a blocking call over items concurrently; results and errors keep their positions.

    Whether to fan out is measured, not configured: each call site's mean duration is
    kept, and a call that turns out cheap runs inline. An unmeasured call fans out (a
    slow first batch would cost far more than a few hand-offs), and a slow call
    measured inline switches the next batch to concurrent at once.
    """

    def __init__(self, max_workers: int, name: str = "kombu-worker-io"):
        self.max_workers = max_workers
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._means: dict[str, float] = {}

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R | Exception]:
        """``fn(item)`` for every item; one item, or a cheap call, runs inline."""
        key = getattr(fn, "__qualname__", "") or repr(fn)
        mean = self._means.get(key, INLINE_BELOW_SECONDS)  # unmeasured: fan out, and learn
        if len(items) <= 1 or self.max_workers <= 1 or mean < INLINE_BELOW_SECONDS:
            started = time.perf_counter()
            results = [capture(fn, item) for item in items]
            if items:
                self._learn(key, (time.perf_counter() - started) / len(items))
            return results
        futures = [self._pool().submit(_timed, fn, item) for item in items]
        timed = [future.result() for future in futures]
        self._learn(key, sum(seconds for _, seconds in timed) / len(timed))
        return [result for result, _ in timed]

    def _learn(self, key: str, seconds: float) -> None:
        self._means[key] = moving_average(self._means.get(key), seconds)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_workers, self._name)
            return self._executor

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def _timed(fn: Callable[[T], R], item: T) -> tuple[R | Exception, float]:
    started = time.perf_counter()
    result = capture(fn, item)
    return result, time.perf_counter() - started


def capture(fn: Callable[[T], R], item: T) -> R | Exception:
    """``fn(item)``, or the exception it raised: one item's error stays its own."""
    try:
        return fn(item)
    except Exception as exc:
        return exc


class HookRunner(Protocol):
    """Where user hooks run: the worker's device lane, or the calling thread."""

    def call(self, fn: Callable[[], R]) -> R: ...


class InlineHooks:
    """Run a hook on the calling thread: single-threaded runners (``testing``, ``LocalRunner``)."""

    def call(self, fn: Callable[[], R]) -> R:
        return fn()


def errors_by_position(results: Sequence[object]) -> dict[int, BaseException]:
    """The ``process_batch`` error map from :meth:`IOPool.map`'s results."""
    return {i: result for i, result in enumerate(results) if isinstance(result, BaseException)}
