"""Prometheus metrics and the health server (``/healthz``, ``/readyz``, ``/metrics``).

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

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from .config import mask_url
from .pipeline import Disposition, TaskRun
from .signals import hooks_key, models
from .sqs import queue_name

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

    def observe_run(self, queue: str, run: TaskRun) -> None:
        """Record one finished run: its outcome, retry or dead letter, and stage timings."""
        outcome = run.outcome
        if outcome is None:
            return
        name = queue_name(queue)  # a label, not a URL: same series whatever the account
        self.messages.labels(queue=name, outcome=outcome.disposition.value).inc()
        if outcome.disposition is Disposition.RETRY:
            self.retries.labels(queue=name).inc()
        elif outcome.disposition is Disposition.DEAD_LETTER:
            reason = type(outcome.error).__name__ if outcome.error is not None else "unknown"
            self.dead_letters.labels(queue=name, reason=reason).inc()
        for stage, seconds in run.timings.items():
            self.stage_duration.labels(stage=stage).observe(seconds)
        self.task_duration.labels(queue=name).observe(sum(run.timings.values()))

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


METRICS = Metrics()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    health: HealthServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A broken probe connection is not worth a traceback on stderr."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        health = self.server.health
        route = self.path.split("?", 1)[0]
        try:
            if route == "/metrics":
                self._send(200, health.metrics.exposition(), CONTENT_TYPE_LATEST)
                return
            checks: dict[str, Callable[[], tuple[bool, dict[str, Any]]]] = {
                "/healthz": health.liveness,
                "/readyz": health.readiness,
            }
            if route not in checks:
                self._json(404, {"status": "not found", "routes": ["/healthz", "/readyz", "/metrics"]})
                return
            ok, body = checks[route]()
            self._json(200 if ok else 503, body)
        except Exception as exc:  # answer, never print a traceback
            self._json(500, {"status": "error", "error": mask_url(f"{type(exc).__name__}: {exc}")[:500]})

    def _json(self, code: int, body: dict[str, Any]) -> None:
        self._send(code, json.dumps(body).encode(), "application/json")

    def _send(self, code: int, payload: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would drown the worker's own log lines."""


class HealthServer:
    """Liveness, readiness and metrics over HTTP for one worker, on a daemon thread.

    ``port=0`` binds an ephemeral port (see :attr:`port`). ``consume_thread`` is the
    thread running ``worker.run()``; by default the thread that calls :meth:`start`.
    """

    def __init__(
        self,
        worker: Any,
        runtime: Any,
        port: int,
        *,
        stall_seconds: float | None = None,
        metrics: Metrics = METRICS,
        consume_thread: threading.Thread | None = None,
        backend_cache_seconds: float = BACKEND_CACHE_SECONDS,
        host: str = "0.0.0.0",  # probes come from the kubelet, off-pod
    ) -> None:
        self.worker = worker
        self.runtime = runtime
        wait = float(getattr(runtime.config, "wait_time_seconds", 20))
        # A long poll legitimately takes wait_time_seconds per iteration; allow several.
        self.stall_seconds = stall_seconds if stall_seconds is not None else max(MIN_STALL_SECONDS, 3 * wait)
        self.metrics = metrics
        self.consume_thread = consume_thread
        self.backend_cache_seconds = backend_cache_seconds
        self._httpd = _Server((host, port), _Handler)
        self._httpd.health = self
        self._thread: threading.Thread | None = None
        self._check_lock = threading.Lock()
        self._checked: tuple[float, str | None] | None = None  # (monotonic time, error or None)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        if self.consume_thread is None:
            self.consume_thread = threading.current_thread()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="kombu-worker-health",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    # -- the checks -------------------------------------------------------
    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Alive while the consume loop turns; a stall or a dead consume thread fails it."""
        idle = time.monotonic() - self.worker.last_progress
        body: dict[str, Any] = {
            "seconds_since_progress": round(idle, 3),
            "stall_seconds": self.stall_seconds,
            "inflight": len(self.worker.inflight),
            "settled": self.worker.settled,
            "worker_id": self.runtime.worker_id,
        }
        thread = self.consume_thread
        if thread is not None and not thread.is_alive():
            return False, {"status": "fail", "reason": "the consume thread has exited", **body}
        if idle > self.stall_seconds:
            return False, {"status": "fail", "reason": f"no progress for {idle:.0f}s", **body}
        return True, {"status": "ok", **body}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when consuming, the model is loaded and the backends answer."""
        failed: dict[str, str] = {}
        if not self.worker.ready.is_set():
            failed["worker"] = "not consuming yet"
        elif getattr(self.worker, "should_stop", False):
            failed["worker"] = "stopping"
        if not models.is_loaded(hooks_key(self.runtime.hooks)):
            failed["model"] = "not loaded"
        backend_error = self._backends()
        if backend_error is not None:
            failed["backends"] = backend_error
        if failed:
            return False, {"status": "fail", "failed": failed, "worker_id": self.runtime.worker_id}
        return True, {"status": "ok", "worker_id": self.runtime.worker_id}

    def _backends(self) -> str | None:
        """The backend error, or None; one check per cache period however many probes come."""
        cached = self._checked
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.backend_cache_seconds:
            return cached[1]
        if not self._check_lock.acquire(blocking=False):  # a check is running (maybe hung)
            return cached[1] if cached is not None else "backend check in progress"
        try:
            error: str | None = None
            try:
                self.runtime.state.ping()
                check = getattr(self.runtime, "check_backends", None)
                if callable(check):
                    check()
            except Exception as exc:
                error = mask_url(f"{type(exc).__name__}: {exc}")[:500]
            self._checked = (time.monotonic(), error)
            return error
        finally:
            self._check_lock.release()


__all__ = ["METRICS", "HealthServer", "Metrics"]
