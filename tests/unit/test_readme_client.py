"""The README's Client API web handler, run as written, behind a real HTTP server.

In a fresh service folder with the shipped defaults (no config/, none of the SDK's
variables): the handler's ``Client()`` and a real worker subprocess find the same
``.kombu-worker`` folder, as they would in a user's project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from tests.unit.test_readme import example

REPO = Path(__file__).parents[2]
CLEARED = ("DB_DSN", "BROKER_URL", "STORAGE_URL", "QUEUE_URL", "NEXT_QUEUE_URL", "DLQ_URL", "BUCKET")
LEAF = {"input_uri": "s3://bucket/in.txt", "output_prefix": "s3://bucket/out/", "params": {}}


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the test's stderr."""


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith(("KOMBU_WORKER_", "WORKER_CONFIG")) or key in CLEARED:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def server(service: Path) -> Iterator[str]:
    namespace: dict[str, Any] = {}
    exec(example("client-web"), namespace)
    httpd: WSGIServer = make_server("127.0.0.1", 0, namespace["app"], handler_class=QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    namespace["client"].close()


@pytest.fixture
def start_worker(service: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "KOMBU_WORKER_NEXT_QUEUE": "tasks"}
        log = (service / "worker.log").open("wb")
        cmd = [sys.executable, "-m", "kombu_worker_sdk.runner", "--hooks", "tests.sample_hooks:StepHooks"]
        procs.append(subprocess.Popen(cmd, cwd=service, env=env, stdout=log, stderr=subprocess.STDOUT))

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(10)


def call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=180) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_handler_submits_returns_the_id_then_reports_and_waits(server: str, start_worker: Any) -> None:
    code, made = call("POST", f"{server}/jobs", LEAF)
    assert code == 202 and len(made["job_id"]) == 32
    job_id = made["job_id"]
    assert call("GET", f"{server}/jobs/{job_id}") == (
        200,
        {"status": "RUNNING", "results": {}, "error": None},
    )
    code, waited = call("GET", f"{server}/jobs/{job_id}?wait=0.2")  # no worker yet
    assert code == 200 and waited["status"] == "RUNNING" and "still RUNNING" in waited["error"]
    start_worker()
    code, done = call("GET", f"{server}/jobs/{job_id}?wait=120")
    assert (code, done["status"], done["error"]) == (200, "DONE", None)
    (result,) = done["results"].values()  # the one task's parsed result.json
    assert list(done["results"]) == [f"{job_id}-root"] and result["step"] is None and result["model_pid"]
    assert call("GET", f"{server}/jobs/nope")[0] == 404


def test_the_handler_cancels_and_reports_a_failure(server: str, start_worker: Any) -> None:
    _, made = call("POST", f"{server}/jobs", {**LEAF, "job_id": "web-c"})
    assert call("DELETE", f"{server}/jobs/{made['job_id']}") == (200, {"cancelled": 1})
    start_worker()
    _, failing = call("POST", f"{server}/jobs", {**LEAF, "params": {"permanent": True}})
    code, failed = call("GET", f"{server}/jobs/{failing['job_id']}?wait=120")
    assert (code, failed["status"]) == (200, "FAILED")
    assert "this input can never work" in failed["error"]
    code, cancelled = call("GET", f"{server}/jobs/web-c?wait=120")
    assert (code, cancelled["status"], cancelled["results"]) == (200, "CANCELLED", {})
    assert "was cancelled" in cancelled["error"]
