"""The health server (``/healthz``, ``/readyz``, ``/metrics``) for Kubernetes probes.

It answers from a daemon thread. Liveness only asks "is the consume loop still
turning?", so a slow database never gets a pod restarted; readiness asks "can this
pod do work now?" (consuming, model loaded, backends answering), with the backend
check cached so probes do not hammer them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from kombu_worker_sdk.masking import mask_url
from kombu_worker_sdk.observability.metrics import BACKEND_CACHE_SECONDS, METRICS, MIN_STALL_SECONDS, Metrics
from kombu_worker_sdk.signals import hooks_key, models


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
        overrun = getattr(self.worker, "overrun", None)
        if overrun:  # the hung hook's thread cannot be stopped: only a restart frees the device
            return False, {"status": "fail", "reason": f"{overrun}; the process has not exited", **body}
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
            recycling = getattr(getattr(self.worker, "recycler", None), "reason", None)
            failed["worker"] = f"draining to recycle: {recycling}" if recycling else "stopping"
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


__all__ = ["HealthServer"]
