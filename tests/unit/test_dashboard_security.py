"""The dashboard's token, CSRF, origin and host rules, and what a page may reveal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import servers

servers.require_module("starlette")
servers.require_module("httpx")

from starlette.testclient import TestClient  # noqa: E402

from kombu_worker_sdk.config import WorkerConfig  # noqa: E402
from kombu_worker_sdk.dashboard.app import create_app  # noqa: E402
from kombu_worker_sdk.dashboard.data import DashboardData  # noqa: E402
from kombu_worker_sdk.dashboard.security import CSRF_COOKIE, Guard, check_bind  # noqa: E402
from kombu_worker_sdk.errors import ConfigError  # noqa: E402
from kombu_worker_sdk.state import open_state  # noqa: E402
from kombu_worker_sdk.transport import broker_connection  # noqa: E402
from kombu_worker_sdk.transport.publish import KombuPublisher  # noqa: E402

TOKEN = "s3cret-token"


def _config(tmp_path: Path, **extra: object) -> WorkerConfig:
    return WorkerConfig(data_dir=tmp_path / "data", broker_url="filesystem://", queue="work", **extra)


def _dead_letter(config: WorkerConfig) -> None:
    state = open_state(config.effective_db_dsn)
    state.upgrade()
    state.close()
    publisher = KombuPublisher(broker_connection(config))
    body = json.dumps({"job_id": "j", "task_id": "t", "input_uri": "s3://b/i", "output_prefix": "s3://b/o/"})
    publisher.publish_raw("work-dlq", body, {"x-error": "boom", "x-task-id": "t", "x-attempts": 3})
    publisher.close()


def _client(config: WorkerConfig, token: str | None = None, base: str = "http://127.0.0.1") -> TestClient:
    return TestClient(create_app(DashboardData(config), token=token), base_url=base, follow_redirects=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_binds_need_no_token(host: str) -> None:
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "dashboard.internal"])
def test_any_other_bind_is_refused_without_a_token(host: str) -> None:
    with pytest.raises(ConfigError, match="KOMBU_WORKER_DASHBOARD_TOKEN"):
        check_bind(host, None)
    check_bind(host, TOKEN)


def test_the_command_refuses_a_public_bind_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kombu_worker_sdk.runner", "dashboard", "--host", "0.0.0.0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: dashboard --host 0.0.0.0")
    assert not (tmp_path / ".kombu-worker").exists()


def test_guard_rules() -> None:
    guard = Guard(TOKEN)
    assert not guard.authenticated({}, {})
    assert guard.authenticated({"authorization": f"Bearer {TOKEN}"}, {})
    assert not guard.authenticated({"authorization": "Bearer wrong"}, {})
    assert guard.authenticated({}, {"kwd_session": guard.session_value})
    assert TOKEN not in guard.session_value
    assert not guard.authenticated({}, {"kwd_session": Guard("other").session_value})
    assert Guard(None).authenticated({}, {})
    assert Guard.csrf_ok("abc", "abc") and not Guard.csrf_ok("abc", "abd")
    assert not Guard.csrf_ok(None, "abc") and not Guard.csrf_ok("", "")
    assert Guard.same_origin("POST", {"sec-fetch-site": "same-origin"}, "h:1")
    assert not Guard.same_origin("POST", {"sec-fetch-site": "cross-site"}, "h:1")
    assert not Guard.same_origin("POST", {"origin": "http://evil.example"}, "h:1")
    assert Guard.same_origin("POST", {"origin": "http://h:1"}, "h:1")
    assert not Guard.same_origin("POST", {"origin": "null"}, "h:1")
    assert Guard.same_origin("GET", {"sec-fetch-site": "cross-site"}, "h:1")


def test_with_a_token_pages_need_it_by_header_or_login(tmp_path: Path) -> None:
    client = _client(_config(tmp_path), token=TOKEN)
    assert client.get("/jobs").headers["location"] == "/login"
    assert client.get("/jobs", headers={"authorization": "Bearer nope"}).status_code == 401
    assert client.get("/jobs", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/login").status_code == 200
    csrf = client.cookies[CSRF_COOKIE]
    assert client.post("/login", data={"token": TOKEN}).status_code == 403  # no CSRF token
    assert client.post("/login", data={"token": "wrong", "csrf_token": csrf}).status_code == 401
    logged = client.post("/login", data={"token": TOKEN, "csrf_token": csrf})
    assert logged.status_code == 303
    assert client.get("/jobs").status_code == 200  # the session cookie now carries it


def test_redrive_needs_the_csrf_token_and_the_same_origin(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _dead_letter(config)
    client = _client(config)
    page = client.get("/dead-letters?queue=work")
    assert "boom" in page.text
    csrf = client.cookies[CSRF_COOKIE]
    form = {"queue": "work", "all": "1"}
    assert client.post("/dead-letters/redrive", data=form).status_code == 403
    assert client.post("/dead-letters/redrive", data={**form, "csrf_token": "forged"}).status_code == 403
    cross = client.post(
        "/dead-letters/redrive", data={**form, "csrf_token": csrf}, headers={"sec-fetch-site": "cross-site"}
    )
    assert cross.status_code == 403
    assert "boom" in client.get("/dead-letters?queue=work").text  # nothing moved yet
    done = client.post("/dead-letters/redrive", data={**form, "csrf_token": csrf})
    assert done.status_code == 303 and "moved=1" in done.headers["location"]
    assert "no dead letters" in client.get("/dead-letters?queue=work").text


def test_gets_never_change_state_and_unknown_queues_are_refused(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _dead_letter(config)
    client = _client(config)
    assert client.get("/dead-letters/redrive").status_code == 405
    client.get("/jobs")
    csrf = client.cookies[CSRF_COOKIE]
    bad = client.post("/dead-letters/redrive", data={"queue": "../etc", "all": "1", "csrf_token": csrf})
    assert bad.status_code == 400
    assert "boom" in client.get("/dead-letters?queue=work").text


def test_loopback_without_a_token_serves_only_loopback_host_headers(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert _client(config).get("/jobs").status_code == 200
    assert _client(config, base="http://evil.example").get("/jobs").status_code == 400  # DNS rebinding


def test_headers_are_strict_and_secrets_never_reach_a_page(tmp_path: Path) -> None:
    config = _config(tmp_path, db_dsn=f"sqlite:///{tmp_path}/s.db")
    config = config.model_copy(update={"broker_url": "filesystem://user:hunter2@/"})
    response = _client(config).get("/jobs")
    assert "hunter2" not in response.text and "user:***@" in response.text
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
    assert "access-control-allow-origin" not in response.headers


def test_files_are_served_only_from_under_the_storage_root(tmp_path: Path) -> None:
    config = _config(tmp_path)
    root = tmp_path / "data" / "storage"
    (root / "b" / "o").mkdir(parents=True)
    (root / "b" / "o" / "result.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "data" / "secret.txt").write_text("private")
    (root / "b" / "link").symlink_to(tmp_path / "data" / "secret.txt")
    client = _client(config)
    assert client.get("/files", params={"uri": "s3://b/o/result.png"}).content == b"\x89PNG fake"
    for uri in ("s3://b/../secret.txt", "s3://b/link", "file:///etc/passwd", "s3://b/%2e%2e/secret.txt"):
        response = client.get("/files", params={"uri": uri})
        assert response.status_code == 404, uri
        assert b"private" not in response.content
