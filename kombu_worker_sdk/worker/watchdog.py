"""The time-limit watchdog: one daemon thread watching every device call.

A device thread registers its micro-batch for the length of the hooks stage
(:meth:`Watchdog.watch`). At the batch's soft limit the watchdog raises
``SoftTimeLimitExceeded`` inside the hook (``limits.interrupt``: pure-Python code
only, see README "Operating hooks that misbehave"). At its hard limit it calls
``on_hard`` with the batch, once: a thread cannot be killed, so the worker records
the attempt and ends the process (``worker.overrun``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kombu_worker_sdk.limits import TimeLimits, interrupt, message_limits, worker_limits
from kombu_worker_sdk.transport.delivery import Delivery

#: How soon to look again when the soft limit found the thread between two hooks.
SOFT_RETRY_SECONDS = 0.05


@dataclass
class Watch:
    """One device call under its limits."""

    ident: int
    deliveries: list[Delivery]
    limits: TimeLimits
    started: float
    soft_done: bool = False
    #: Set by the watchdog when the hard limit cut this call off: its results are void.
    fired: threading.Event = field(default_factory=threading.Event)

    @property
    def soft_at(self) -> float | None:
        return None if self.limits.soft is None or self.soft_done else self.started + self.limits.soft

    @property
    def hard_at(self) -> float | None:
        return None if self.limits.hard is None else self.started + self.limits.hard


class Watchdog:
    """Enforces soft and hard time limits on device calls; idle (no thread) until one has a limit."""

    def __init__(self, runtime: Any, on_hard: Callable[[Watch], None]):
        self.base = worker_limits(runtime.config, runtime.hooks)
        self.on_hard = on_hard
        self._cond = threading.Condition()
        self._watches: dict[int, Watch] = {}
        self._thread: threading.Thread | None = None
        self.overruns = 0

    def limits_for(self, runs: Sequence[Any]) -> TimeLimits:
        """The strictest limits among a batch's messages (each may lower, never raise them)."""
        limits = TimeLimits()
        for run in runs:
            params = run.message.params if run.message is not None else None
            limits = limits.tighter(message_limits(self.base, params))
        return limits if runs else self.base

    @contextmanager
    def watch(self, deliveries: list[Delivery], runs: Sequence[Any]) -> Iterator[Watch]:
        """Watch the calling thread's device call; the hook's ``ctx.deadline`` starts now."""
        limits = self.limits_for(runs)
        now = time.monotonic()
        watch = Watch(threading.get_ident(), deliveries, limits, now)
        for run in runs:
            if run.ctx is not None:
                run.ctx.deadline.start(limits, now)
        if not limits.any:
            yield watch
            return
        with self._cond:
            self._watches[watch.ident] = watch
            self._ensure_thread()
            self._cond.notify_all()
        try:
            yield watch
        finally:
            with self._cond:
                if self._watches.get(watch.ident) is watch:
                    del self._watches[watch.ident]

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="kombu-worker-watchdog", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            fired = self._next_due()
            for watch in fired:
                self.overruns += 1
                watch.fired.set()
                self.on_hard(watch)

    def _next_due(self) -> list[Watch]:
        """Wait for the next deadline; send soft interrupts, return the calls past their hard limit."""
        with self._cond:
            while True:
                now = time.monotonic()
                due: list[Watch] = []
                wake: float | None = None
                for ident, watch in list(self._watches.items()):
                    if watch.hard_at is not None and now >= watch.hard_at:
                        del self._watches[ident]
                        due.append(watch)
                        continue
                    soft_at = watch.soft_at
                    if soft_at is not None and now >= soft_at:
                        watch.soft_done = interrupt(ident)
                        soft_at = None if watch.soft_done else now + SOFT_RETRY_SECONDS
                    for at in (soft_at, watch.hard_at):
                        if at is not None:
                            wake = at if wake is None else min(wake, at)
                if due:
                    return due
                self._cond.wait(None if wake is None else max(wake - now, 0.0))
