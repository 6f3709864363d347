"""Prometheus metrics for the worker.

Metrics live in their own :class:`CollectorRegistry`, not prometheus-client's
global one, so a worker exposes only its own series and tests can build a fresh
:class:`Metrics` for exact values. The SDK records into the one default
instance, :data:`METRICS`.

The health server answers Kubernetes probes from a daemon thread. Liveness only
asks "is the consume loop still turning?", so a slow database never gets a pod
restarted; readiness asks "can this pod do work now?" (consuming, model loaded,
backends answering), with the backend check cached so probes do not hammer them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kombu_worker_sdk.pipeline import Disposition, TaskRun
from kombu_worker_sdk.transport.names import queue_name

#: Seconds, from a cheap stage (a few ms) to a long model forward pass (minutes).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
MIN_STALL_SECONDS = 60.0
BACKEND_CACHE_SECONDS = 5.0


class Metrics:
    """The worker's Prometheus series, registered in ``registry`` (a new one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "kombu_worker_messages_total",
            "Messages settled, by queue and outcome.",
            ["queue", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "kombu_worker_retries_total", "Messages scheduled for a retry.", ["queue"], registry=r
        )
        self.dead_letters = Counter(
            "kombu_worker_dead_letters_total",
            "Messages dead-lettered, by error type.",
            ["queue", "reason"],
            registry=r,
        )
        self.stage_duration = Histogram(
            "kombu_worker_stage_duration_seconds",
            "Time spent in each pipeline stage.",
            ["stage"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.task_duration = Histogram(
            "kombu_worker_task_duration_seconds",
            "Time a message spent in the pipeline, all stages together.",
            ["queue"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "kombu_worker_messages_in_flight", "Messages received, not yet settled.", registry=r
        )
        self.visibility_extensions = Counter(
            "kombu_worker_visibility_extensions_total", "Visibility timeout extensions.", registry=r
        )
        self.model_load = Gauge(
            "kombu_worker_model_load_seconds", "How long load_pipeline took in this process.", registry=r
        )

        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.lanes = LaneCollector()
        r.register(self.lanes)

    def watch_lanes(self, counts: Callable[[], dict[str, int]], governor: Any) -> None:
        """Report a worker's lanes at scrape time: no cost on the message path."""
        self.lanes.counts, self.lanes.governor = counts, governor

    def observe_run(self, queue: str, run: TaskRun) -> None:
        """Record one finished run: its outcome, retry or dead letter, and stage timings."""
        outcome = run.outcome
        if outcome is None:
            return
        name = queue_name(queue)  # a label, not a URL: same series whatever the account
        self._child(self.messages, name, outcome.disposition.value).inc()
        if outcome.disposition is Disposition.RETRY:
            self.retries.labels(queue=name).inc()
        elif outcome.disposition is Disposition.DEAD_LETTER:
            reason = type(outcome.error).__name__ if outcome.error is not None else "unknown"
            self.dead_letters.labels(queue=name, reason=reason).inc()
        for stage, seconds in run.timings.items():
            self._child(self.stage_duration, stage).observe(seconds)
        self._child(self.task_duration, name).observe(sum(run.timings.values()))

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: it costs microseconds on every message."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def inflight(self, delta: int) -> None:
        """Add ``delta`` (+1 on receive, -1 on settle or release) to the in-flight gauge."""
        self.in_flight.inc(delta)

    def visibility_extended(self) -> None:
        self.visibility_extensions.inc()

    def model_loaded(self, seconds: float) -> None:
        self.model_load.set(seconds)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class LaneCollector(Collector):
    """Messages held per lane, the prefetch limit, and the device's busy time (its duty cycle)."""

    def __init__(self) -> None:
        self.counts: Callable[[], dict[str, int]] | None = None
        self.governor: Any = None

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        if self.counts is None or self.governor is None:
            return
        held = GaugeMetricFamily(
            "kombu_worker_messages_held", "Messages held invisible, by lane.", labels=["lane"]
        )
        for lane, count in self.counts().items():
            held.add_metric([lane], count)
        yield held
        yield GaugeMetricFamily(
            "kombu_worker_prefetch_limit", "Messages the worker may hold now.", value=self.governor.limit()
        )
        yield CounterMetricFamily(
            "kombu_worker_device_busy_seconds",
            "Wall time the device lane spent in the hooks; rate() of it is the duty cycle.",
            value=self.governor.device_busy_seconds,
        )


METRICS = Metrics()
