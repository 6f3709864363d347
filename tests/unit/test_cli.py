"""The kombu-worker CLI, run as real subprocesses on the embedded defaults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import wait_for

REPO = Path(__file__).parents[2]
KW = [sys.executable, "-m", "kombu_worker_sdk.runner"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "WORKER_CONFIG_DIR": str(REPO / "config"),
        "KOMBU_WORKER_DATA_DIR": str(tmp_path / "data"),
        "KOMBU_WORKER_LOG_LEVEL": "WARNING",
    }


def kw(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KW, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "command",
    [[], ["send"], ["status"], ["demo"], ["config"], ["config", "show"], ["db"], ["db", "upgrade"]],
)
def test_every_command_has_help(env: dict[str, str], command: list[str]) -> None:
    result = kw(env, *command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout


@pytest.mark.parametrize(
    ("args", "extra_env", "message"),
    [
        (["--hooks", "no.such:Hooks"], {}, "error: cannot import hooks module 'no.such'"),
        (["--hooks", "tests.sample_hooks:MissingPublishNext"], {}, "missing required hook(s): publish_next"),
        (["--hooks", "tests.sample_hooks:StepHooks"], {"WORKER_CONFIG": "nope"}, "no config file"),
        (
            ["--hooks", "tests.sample_hooks:StepHooks"],
            {"KOMBU_WORKER_CONCURENCY": "2"},
            "unknown config key 'concurency'",
        ),
        (
            ["--hooks", "tests.sample_hooks:StepHooks"],
            {"DB_DSN": "sqlite:////proc/no/such/state.db"},
            "error: SQLite state folder",
        ),
        (["config", "show"], {"DB_DSN": "mysql://u:hunter2@h/db"}, None),
    ],
)
def test_errors_are_one_line_without_traceback(
    env: dict[str, str], args: list[str], extra_env: dict[str, str], message: str | None
) -> None:
    result = kw({**env, **extra_env}, *args)
    if message is None:  # config show does not connect, but must mask the password
        assert "hunter2" not in result.stdout and "u:***@h" in result.stdout
        return
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_send_from_flags_file_and_stdin_then_status(env: dict[str, str], tmp_path: Path) -> None:
    body = {"job_id": "c1", "task_id": "c1-b", "input_uri": "s3://b/i", "output_prefix": "s3://b/c1/b/"}
    path = tmp_path / "msg.json"
    path.write_text(json.dumps(body))
    assert (
        kw(
            env,
            "send",
            "--job-id",
            "c1",
            "--input-uri",
            "s3://b/i",
            "--output-prefix",
            "s3://b/c1/a/",
            "--param",
            "step=split",
            "--param",
            "parts=2",
        ).returncode
        == 0
    )
    assert kw(env, "send", str(path)).stdout.strip() == "sent 1 message(s) to tasks"
    lines = "\n".join(json.dumps({**body, "task_id": f"c1-s{i}"}) for i in range(2))
    assert kw(env, "send", "-", stdin=lines).stdout.strip() == "sent 2 message(s) to tasks"
    bad = kw(env, "send", "-", stdin='{"job_id": "c1"}')
    assert bad.returncode == 1 and "invalid task message" in bad.stderr
    status = kw(env, "status", "c1")
    assert status.returncode == 0
    assert "job c1: RUNNING (0/4 done, 0 failed)" in status.stdout
    assert "c1-root" in status.stdout and "PENDING" in status.stdout
    as_json = json.loads(kw(env, "status", "c1", "--json").stdout)
    assert sorted(t["task_id"] for t in as_json["tasks"]) == ["c1-b", "c1-root", "c1-s0", "c1-s1"]
    assert kw(env, "status", "nope").returncode != 0


def test_db_upgrade_is_idempotent(env: dict[str, str]) -> None:
    assert "applied migrations [1, 2]" in kw(env, "db", "upgrade").stdout
    assert "schema is up to date" in kw(env, "db", "upgrade").stdout


def test_two_worker_processes_share_a_queue_and_run_each_task_once(
    env: dict[str, str], tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    parts = 24
    message = {
        "job_id": "tw",
        "task_id": "tw-split",
        "input_uri": "s3://b/in",
        "output_prefix": "s3://b/tw/split/",
        "params": {"step": "split", "parts": parts, "marker_dir": str(markers)},
    }
    assert kw(env, "send", "-", stdin=json.dumps(message)).returncode == 0
    workers = [
        subprocess.Popen(
            [*KW, "--hooks", "tests.sample_hooks:StepHooks", "--next-queue", "tasks"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        wait_for(lambda: "DONE" in kw(env, "status", "tw").stdout.splitlines()[0], timeout=60, interval=0.2)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(30) for proc in workers]
    assert codes == [0, 0]
    runs = Counter(name.split(".")[0] for name in os.listdir(markers))
    assert len(runs) == parts + 2, "split, every part and the join each ran"
    assert set(runs.values()) == {1}, f"a task ran twice: {runs.most_common(3)}"
    job = json.loads(kw(env, "status", "tw", "--json").stdout)
    assert job["status"] == "DONE" and job["done"] == job["total"] == parts + 2


def test_health_readiness_and_metrics_endpoints(env: dict[str, str]) -> None:
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    proc = subprocess.Popen(
        [*KW, "--hooks", "tests.sample_hooks:StepHooks", "--health-port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: get("/readyz")[0] == 200, timeout=30, interval=0.1)
        assert get("/healthz")[0] == 200
        body = {
            "job_id": "h1",
            "task_id": "h1-a",
            "input_uri": "s3://b/i",
            "output_prefix": "s3://b/h1/",
            "params": {"step": "leaf"},
        }
        assert kw(env, "send", "-", stdin=json.dumps(body)).returncode == 0
        wait_for(
            lambda: 'kombu_worker_messages_total{outcome="ack",queue="tasks"} 1.0' in get("/metrics")[1],
            timeout=30,
            interval=0.1,
        )
        metrics = get("/metrics")[1]
        assert 'kombu_worker_stage_duration_seconds_count{stage="hooks"} 1.0' in metrics
        assert "kombu_worker_model_load_seconds" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
