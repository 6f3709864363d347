"""The health server's probes and the Prometheus metrics, over real HTTP on an ephemeral port."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from kombu_worker_sdk.errors import BackendUnavailableError
from kombu_worker_sdk.observability.health import HealthServer
from kombu_worker_sdk.observability.metrics import Metrics
from kombu_worker_sdk.pipeline import Disposition
from kombu_worker_sdk.signals import hooks_key, models
from kombu_worker_sdk.testing import LocalRunner
from tests.sample_hooks import StepHooks, split_message


class FakeState:
    def __init__(self) -> None:
        self.error: Exception | None = None
        self.pings = 0

    def ping(self) -> None:
        self.pings += 1
        if self.error is not None:
            raise self.error


def fake_worker() -> SimpleNamespace:
    return SimpleNamespace(
        ready=threading.Event(), last_progress=time.monotonic(), inflight=set(), settled=0, should_stop=False
    )


def fake_runtime(wait_time_seconds: int = 1) -> SimpleNamespace:
    return SimpleNamespace(
        config=SimpleNamespace(wait_time_seconds=wait_time_seconds),
        hooks=StepHooks(),
        worker_id="w-test",
        state=FakeState(),
    )


def get(port: int, path: str) -> tuple[int, str, bytes]:
    """GET a route: (status, content type, body), 5xx answers included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers["Content-Type"], err.read()


def get_json(port: int, path: str) -> tuple[int, dict[str, Any]]:
    code, ctype, body = get(port, path)
    assert ctype == "application/json"
    return code, json.loads(body)


def wait_until(port: int, path: str, code: int, timeout: float = 10.0) -> dict[str, Any]:
    """Poll a route until it answers ``code`` (fails at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        got, body = get_json(port, path)
        if got == code:
            return body
        assert time.monotonic() < deadline, f"{path} still answers {got}: {body}"
        time.sleep(0.02)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[HealthServer] = []

    def start(worker: Any, runtime: Any, **kwargs: Any) -> HealthServer:
        server = HealthServer(worker, runtime, 0, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_healthz_fails_on_a_stalled_loop_and_on_a_dead_consume_thread(serve: Any) -> None:
    worker, runtime = fake_worker(), fake_runtime()
    server = serve(worker, runtime, stall_seconds=30)
    assert server.port > 0
    code, body = get_json(server.port, "/healthz")
    assert (code, body["status"], body["worker_id"]) == (200, "ok", "w-test")

    worker.last_progress = time.monotonic() - 31  # no loop iteration for longer than stall_seconds
    body = wait_until(server.port, "/healthz", 503)
    assert body["status"] == "fail" and "no progress" in body["reason"]

    worker.last_progress = time.monotonic()
    wait_until(server.port, "/healthz", 200)

    finished = threading.Thread(target=lambda: None)
    finished.start()
    finished.join()
    dead = serve(worker, runtime, stall_seconds=30, consume_thread=finished)
    assert "consume thread" in wait_until(dead.port, "/healthz", 503)["reason"]


def test_default_stall_allows_several_long_polls() -> None:
    for wait, expected in ((1, 60.0), (20, 60.0)):
        server = HealthServer(fake_worker(), fake_runtime(wait), 0)
        try:
            assert server.stall_seconds == expected
        finally:
            server.stop()
    server = HealthServer(fake_worker(), SimpleNamespace(config=SimpleNamespace(wait_time_seconds=30)), 0)
    try:
        assert server.stall_seconds == 90.0
    finally:
        server.stop()


def test_readyz_needs_consuming_model_and_backends(serve: Any) -> None:
    worker, runtime = fake_worker(), fake_runtime()
    server = serve(worker, runtime, backend_cache_seconds=0)
    code, body = get_json(server.port, "/readyz")
    assert code == 503
    assert set(body["failed"]) == {"worker", "model"}

    worker.ready.set()
    models.load(hooks_key(runtime.hooks), lambda: {"weights": 1})
    assert wait_until(server.port, "/readyz", 200)["status"] == "ok"

    runtime.state.error = BackendUnavailableError("postgresql://kw:hunter2@db.internal/kw refused")
    body = wait_until(server.port, "/readyz", 503)
    assert "BackendUnavailableError" in body["failed"]["backends"]
    assert "hunter2" not in json.dumps(body) and "kw:***@" in body["failed"]["backends"]

    runtime.state.error = None
    wait_until(server.port, "/readyz", 200)
    worker.should_stop = True
    assert wait_until(server.port, "/readyz", 503)["failed"] == {"worker": "stopping"}


def test_readyz_calls_check_backends_and_caches_the_result(serve: Any) -> None:
    worker, runtime = fake_worker(), fake_runtime()
    worker.ready.set()
    models.load(hooks_key(runtime.hooks), lambda: None)
    calls: list[int] = []
    runtime.check_backends = lambda: calls.append(1)
    server = serve(worker, runtime, backend_cache_seconds=60)
    for _ in range(5):
        assert get_json(server.port, "/readyz")[0] == 200
    assert runtime.state.pings == 1 and len(calls) == 1


def test_unknown_route_is_a_json_404(serve: Any) -> None:
    server = serve(fake_worker(), fake_runtime())
    code, body = get_json(server.port, "/nope")
    assert code == 404 and "/metrics" in body["routes"]


def test_metrics_after_real_runs(serve: Any) -> None:
    metrics = Metrics()
    runner = LocalRunner(StepHooks())
    done = runner.run(split_message("m1", parts=2))
    retried = runner.run(split_message("m2", fail_times=1))
    dead = runner.run(split_message("m3", permanent=True))
    assert [r.disposition for r in (done, retried, dead)] == [
        Disposition.ACK,
        Disposition.RETRY,
        Disposition.DEAD_LETTER,
    ]
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/split"
    for result in (done, retried, dead):
        metrics.observe_run(queue, result.run)
    metrics.inflight(2)
    metrics.inflight(-1)
    metrics.visibility_extended()
    metrics.model_loaded(1.5)

    value = metrics.registry.get_sample_value
    assert value("kombu_worker_messages_total", {"queue": "split", "outcome": "ack"}) == 1
    assert value("kombu_worker_messages_total", {"queue": "split", "outcome": "retry"}) == 1
    assert value("kombu_worker_messages_total", {"queue": "split", "outcome": "dead_letter"}) == 1
    assert value("kombu_worker_retries_total", {"queue": "split"}) == 1
    assert value("kombu_worker_dead_letters_total", {"queue": "split", "reason": "PermanentError"}) == 1
    assert value("kombu_worker_stage_duration_seconds_count", {"stage": "hooks"}) == 3
    assert value("kombu_worker_stage_duration_seconds_count", {"stage": "fanout"}) == 1
    assert value("kombu_worker_task_duration_seconds_count", {"queue": "split"}) == 3
    assert value("kombu_worker_messages_in_flight") == 1
    assert value("kombu_worker_visibility_extensions_total") == 1
    assert value("kombu_worker_model_load_seconds") == 1.5

    server = serve(fake_worker(), fake_runtime(), metrics=metrics)
    code, ctype, body = get(server.port, "/metrics")
    assert code == 200 and ctype.startswith("text/plain; version=")
    text = body.decode()
    for name in (
        "kombu_worker_messages_total",
        "kombu_worker_retries_total",
        "kombu_worker_dead_letters_total",
        "kombu_worker_stage_duration_seconds_bucket",
        "kombu_worker_task_duration_seconds_bucket",
        "kombu_worker_messages_in_flight",
        "kombu_worker_visibility_extensions_total",
        "kombu_worker_model_load_seconds",
    ):
        assert name in text
    assert "python_gc" not in text  # a dedicated registry, not the process-global one


def test_fresh_metrics_do_not_share_values() -> None:
    first, second = Metrics(), Metrics()
    first.visibility_extended()
    assert first.registry.get_sample_value("kombu_worker_visibility_extensions_total") == 1
    assert second.registry.get_sample_value("kombu_worker_visibility_extensions_total") == 0
