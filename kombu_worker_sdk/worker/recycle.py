"""Worker recycling: Celery's ``worker_max_tasks_per_child`` / ``worker_max_memory_per_child``.

A tokenizer that grows with every request, or fragmentation creeping towards an
OOM kill, is cured by a fresh process. Before each batch reaches the device it asks
:meth:`Recycler.admit`; past ``max_tasks_per_worker`` tasks or ``max_memory_mb`` of
resident memory it stops receiving, drains (held and prefetched messages handed
back at once, running ones finished within the grace) and exits 0, and the
container restart loads the model again. ``/readyz`` fails while it drains, and
``/metrics`` shows how close the worker is to each limit.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kombu_worker_sdk.observability.metrics import METRICS

MB = 1_048_576


def resident_bytes() -> int:
    """The process's resident set now: /proc/self/statm on Linux (one read, a few µs).

    Elsewhere, ``ru_maxrss`` (the peak, not the current size: it never goes down).
    """
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


class Recycler:
    """Decides, between messages, whether this worker should drain and exit 0."""

    def __init__(self, config: Any):
        self.max_tasks: int | None = config.max_tasks_per_worker
        self.max_memory_mb: int | None = config.max_memory_mb
        self.tasks = 0
        self.reason: str | None = None  # set once recycling has begun

    @property
    def enabled(self) -> bool:
        return self.max_tasks is not None or self.max_memory_mb is not None

    def admit(self, count: int) -> bool:
        """Before a batch of ``count`` reaches the device: may it start?

        Memory is read here, between messages. Past ``max_memory_mb`` the batch is
        refused (handed back by the drain); the batch that reaches ``max_tasks_per_worker``
        is the last one admitted. Either way :attr:`reason` is set, once.
        """
        if self.reason is not None:
            return False
        if self.max_memory_mb is not None:
            resident = resident_bytes() / MB
            if resident >= self.max_memory_mb:
                self.reason = f"max_memory_mb {self.max_memory_mb} reached ({resident:.0f} MB resident)"
                return False
        self.tasks += count
        if self.max_tasks is not None and self.tasks >= self.max_tasks:
            self.reason = f"max_tasks_per_worker {self.max_tasks} reached"
        return True

    def describe(self) -> str:
        """For the start-up log: each limit and how close the worker is to it."""
        parts = []
        if self.max_tasks is not None:
            parts.append(f"after {self.max_tasks} tasks ({self.tasks} started)")
        if self.max_memory_mb is not None:
            parts.append(f"at {self.max_memory_mb} MB resident ({resident_bytes() / MB:.0f} MB now)")
        return "recycling " + (" or ".join(parts) if parts else "off")


class RecycleCollector(Collector):
    """The recycling gauges, read at scrape time: tasks and resident memory, each with its limit."""

    def __init__(self) -> None:
        self.recycler: Recycler | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        recycler = self.recycler
        yield GaugeMetricFamily(
            "kombu_worker_resident_memory_bytes", "Resident set of this process.", value=resident_bytes()
        )
        if recycler is None:
            return
        yield GaugeMetricFamily(
            "kombu_worker_tasks_started",
            "Messages whose hooks this process started (max_tasks_per_worker counts these).",
            value=recycler.tasks,
        )
        limits = GaugeMetricFamily(
            "kombu_worker_recycle_limit",
            "The recycling limits, by kind (tasks, memory_bytes).",
            labels=["kind"],
        )
        if recycler.max_tasks is not None:
            limits.add_metric(["tasks"], recycler.max_tasks)
        if recycler.max_memory_mb is not None:
            limits.add_metric(["memory_bytes"], recycler.max_memory_mb * MB)
        yield limits
        yield GaugeMetricFamily(
            "kombu_worker_recycling",
            "1 while the worker drains to recycle.",
            value=int(recycler.reason is not None),
        )


RECYCLE_METRICS = RecycleCollector()
METRICS.registry.register(RECYCLE_METRICS)
