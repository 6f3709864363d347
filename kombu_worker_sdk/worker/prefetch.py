"""How many messages to hold invisible: enough to keep the device fed, and no more.

A message is held from its receive to its ack: while it is prepared (idempotency,
claim, input read), waits ready, runs on the device, and is finished (results,
fan-out, ack). By Little's law the device stays busy when the worker holds one batch
running, one ready, and as many more as preparation and finishing take per device
batch. The governor keeps moving averages of those three times and sets the limit
from them, between the configured start (``effective_prefetch``) and ceiling
(``effective_prefetch_max``). A fixed ``prefetch`` is taken as is.
"""

from __future__ import annotations

import math
import threading

from kombu_worker_sdk.concurrency import moving_average
from kombu_worker_sdk.config import WorkerConfig

#: Batches held beyond those Little's law asks for: one ready for the device, one more for
#: the jitter of storage and receive latencies (measured in bench section f).
READY_MARGIN = 2.0


class PrefetchGovernor:
    """The prefetch limit, from the measured prepare, device and finish times per batch."""

    def __init__(self, config: WorkerConfig):
        self.floor = config.effective_prefetch
        self.ceiling = config.effective_prefetch_max
        self.slots = config.device_slots
        self.extra = config.receive_batch_size or 0
        self._means: dict[str, float] = {}
        self._lock = threading.Lock()
        self.device_busy_seconds = 0.0

    def observe(self, phase: str, seconds: float) -> None:
        """Record one batch's wall time in ``phase`` ("prepare", "device" or "finish")."""
        with self._lock:
            self._means[phase] = moving_average(self._means.get(phase), seconds)
            if phase == "device":
                self.device_busy_seconds += seconds

    def limit(self) -> int:
        """Messages the worker may hold now."""
        if self.floor >= self.ceiling:
            return self.floor
        with self._lock:
            device = self._means.get("device")
            around = self._means.get("prepare", 0.0) + self._means.get("finish", 0.0)
        if not device:
            return self.floor
        batches = 1 + math.ceil(around / device + READY_MARGIN)
        return max(self.floor, min(self.ceiling, batches * self.slots + self.extra))

    def means(self) -> dict[str, float]:
        with self._lock:
            return dict(self._means)
