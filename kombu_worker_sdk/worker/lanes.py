"""The worker's lanes: the device lane that runs the hooks, and the I/O lane's two halves.

Runs reach the :class:`ReadyQueue` already validated and claimed (a :class:`PhaseLane`
prepared them). A device thread takes its next micro-batch as Triton's dynamic batcher
does: as many ready runs as there are, up to ``batch_size``, waiting for more only until
the oldest has waited ``batch_wait_ms``. With a backlog the queue is never empty when the
device frees up, so batch N+1 starts the moment batch N ends; another PhaseLane finishes
batch N-1 meanwhile. Every user hook runs on a device thread (:meth:`DeviceLane.call`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, cast

from kombu_worker_sdk.transport.delivery import Delivery

R = TypeVar("R")


Chore = Callable[[], None]


class ReadyQueue:
    """Prepared deliveries waiting for the device, oldest first, and chores for it.

    A chore is a short user-hook call (``publish_next``) that another lane needs run on
    a device thread; device threads run chores between batches. ``close`` refuses new
    runs (the stop); ``stop`` also ends the device threads, once nothing needs them.
    """

    def __init__(self, batch_size: int, batch_wait_seconds: float):
        self.batch_size = batch_size
        self.batch_wait = batch_wait_seconds
        self._items: deque[tuple[float, Delivery]] = deque()
        self._chores: deque[Chore] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._stopped = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, deliveries: list[Delivery]) -> bool:
        """Queue deliveries for the device; False (nothing queued) once closed."""
        now = time.monotonic()
        with self._cond:
            if self._closed:
                return False
            self._items.extend((now, d) for d in deliveries)
            self._cond.notify_all()
        return True

    def post(self, chore: Chore) -> bool:
        """Queue a chore for the next free device thread; False once stopped."""
        with self._cond:
            if self._stopped:
                return False
            self._chores.append(chore)
            self._cond.notify()
        return True

    def take(self) -> tuple[list[Chore], list[Delivery]] | None:
        """Block for chores or the next micro-batch; None once stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self._chores or self._items or self._stopped)
            if self._stopped:
                return None
            if not self._chores:
                self._fill()
            chores = list(self._chores)
            self._chores.clear()
            if chores or self._closed:
                return chores, []
            count = min(self.batch_size, len(self._items))
            return [], [self._items.popleft()[1] for _ in range(count)]

    def _fill(self) -> None:
        """Wait for a full batch until the oldest ready run has waited ``batch_wait``."""
        if not self._items:
            return
        deadline = self._items[0][0] + self.batch_wait
        while len(self._items) < self.batch_size and not (self._closed or self._chores):
            left = deadline - time.monotonic()
            if left <= 0 or not self._cond.wait(left):
                return

    def close(self) -> list[Delivery]:
        """Refuse new runs and return those that never started; chores still run."""
        with self._cond:
            self._closed = True
            left = [d for _, d in self._items]
            self._items.clear()
            self._cond.notify_all()
        return left

    def stop(self) -> None:
        """End the device threads (after the drain): chores still queued run inline."""
        with self._cond:
            self._stopped = True
            left = list(self._chores)
            self._chores.clear()
            self._cond.notify_all()
        for chore in left:
            chore()


class DeviceLane:
    """``threads`` daemon threads: chores, then a batch handed to ``run_batch``, in turn.

    Every user hook runs here: :meth:`call` is the runtime's ``hook_runner`` in a worker.
    """

    def __init__(self, threads: int, ready: ReadyQueue, run_batch: Callable[[list[Delivery]], None]):
        self.ready = ready
        self._run_batch = run_batch
        self._threads = [
            threading.Thread(target=self._loop, name=f"kombu-worker-device-{i}", daemon=True)
            for i in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            if not thread.is_alive():
                thread.start()

    def _loop(self) -> None:
        while (work := self.ready.take()) is not None:
            chores, batch = work
            for chore in chores:
                chore()
            if batch:
                self._run_batch(batch)

    def call(self, fn: Callable[[], R]) -> R:
        """Run ``fn`` on a device thread (at once if this is one) and return what it returns."""
        if threading.current_thread() in self._threads or not any(t.is_alive() for t in self._threads):
            return fn()
        done = threading.Event()
        outcome: list[Any] = []

        def chore() -> None:
            try:
                outcome.append((True, fn()))
            except BaseException as exc:
                outcome.append((False, exc))
            done.set()

        if not self.ready.post(chore):
            return fn()
        done.wait()
        ok, value = outcome[0]
        if not ok:
            raise value
        return cast(R, value)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(deadline - time.monotonic(), 0))


class CpuMeter:
    """The process's CPU use, in cores, over the last ``window`` seconds (cheap to ask often)."""

    def __init__(self, window: float = 0.2):
        self.window = window
        self._at = time.monotonic()
        self._cpu = time.process_time()
        self.cores = 1.0  # busy until measured: no thread is added before the first window

    def load(self) -> float:
        now = time.monotonic()
        if now - self._at >= self.window:
            cpu = time.process_time()
            self.cores = (cpu - self._cpu) / (now - self._at)
            self._at, self._cpu = now, cpu
        return self.cores


#: Below this CPU use (in cores) the process is waiting on I/O, and another I/O thread helps;
#: above it, Python's GIL is the limit and another thread only adds contention.
GROW_BELOW_CORES = 0.6


class PhaseLane:
    """Up to ``threads`` threads that take queued deliveries in groups of up to ``group_max``.

    The I/O lane's two halves (prepare, finish) are each one of these. A push wakes one
    idle thread; a thread that leaves work behind wakes the next. Under load, work that
    queued while every thread was busy goes as one group: one state transaction, and the
    group's storage requests made at once (``concurrency.IOPool``). The lane starts with
    one thread and adds one when work waits, every thread is busy, and the process has
    CPU to spare: waiting on S3 or PostgreSQL, more threads overlap the waits; bound by
    Python's own CPU (in-memory backends), they would only contend for the GIL.
    """

    def __init__(
        self,
        name: str,
        threads: int,
        group_max: int,
        run_group: Callable[[list[Delivery]], None],
        cpu: CpuMeter | None = None,
    ):
        self.name = name
        self.max_threads = threads
        self.group_max = group_max
        self._run_group = run_group
        self._cpu = cpu or CpuMeter()
        self._items: deque[Delivery] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._idle = 0
        self.threads: list[threading.Thread] = []
        self._grow()

    def _grow(self) -> None:
        thread = threading.Thread(
            target=self._loop, name=f"kombu-worker-{self.name}-{len(self.threads)}", daemon=True
        )
        self.threads.append(thread)
        thread.start()

    def __len__(self) -> int:
        return len(self._items)

    def push(self, deliveries: list[Delivery]) -> bool:
        """Queue deliveries; False (nothing queued) once closed."""
        with self._cond:
            if self._closed:
                return False
            self._items.extend(deliveries)
            if self._idle:
                self._cond.notify()
            elif len(self.threads) < self.max_threads and self._cpu.load() < GROW_BELOW_CORES:
                self._grow()
        return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                self._cond.wait_for(lambda: self._items or self._closed)
                self._idle -= 1
                if self._closed:
                    return
                count = min(self.group_max, len(self._items))
                group = [self._items.popleft() for _ in range(count)]
                if self._items and self._idle:
                    self._cond.notify()
            self._run_group(group)

    def close(self) -> list[Delivery]:
        """Stop taking work; returns what was queued and never taken."""
        with self._cond:
            self._closed = True
            left = list(self._items)
            self._items.clear()
            self._cond.notify_all()
        return left
