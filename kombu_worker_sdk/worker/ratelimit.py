"""A per-worker rate limit on hook starts (Celery's ``rate_limit``): a token bucket.

For I/O-bound steps (an LLM or a model API with a quota): the device lane takes a
token per message before a micro-batch reaches the hooks, so the worker starts at
most ``rate`` hooks per second on average, with bursts of up to one second's worth.
A batch larger than the bucket takes it into debt and waits it out, so the average
holds at any batch size. The limit is per process; a global one would go through
the state store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kombu_worker_sdk.limits import worker_rate

#: The longest single wait, so a stop is noticed while throttled.
WAIT_SLICE_SECONDS = 0.25


class TokenBucket:
    """``rate`` tokens per second, holding at most ``capacity`` (default: one second's worth, at least 1)."""

    def __init__(
        self, rate: float, capacity: float | None = None, clock: Callable[[], float] = time.monotonic
    ):
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(rate, 1.0)
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def take(self, count: int = 1) -> float:
        """Take ``count`` tokens now (maybe into debt); returns the seconds to wait before using them."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= count
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(
        self, count: int, stopped: Callable[[], bool], wait: Callable[[float], object] = time.sleep
    ) -> bool:
        """Take tokens and wait until they are due; False if ``stopped()`` came first."""
        delay = self.take(count)
        deadline = self._clock() + delay
        self.waited_seconds += delay
        while delay > 0:
            if stopped():
                return False
            wait(min(delay, WAIT_SLICE_SECONDS))
            delay = deadline - self._clock()
        return True


def worker_bucket(config: Any, hooks: Any) -> TokenBucket | None:
    """The bucket for the hooks class's ``rate_limit``, else the config's; None for no limit."""
    rate = worker_rate(config, hooks)
    return TokenBucket(rate) if rate is not None else None
