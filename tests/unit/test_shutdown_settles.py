"""A clean stop settles every message once: a task that finished is acked, never released.

Kombu's virtual transports restore unacked messages when the channel closes, and the
consume loop closes it before in-flight tasks finish; these tests run a real worker
process on the embedded filesystem transport and stop it mid-task.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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


def queued_files(data_dir: Path) -> list[str]:
    """Message files still waiting in the filesystem transport's folder."""
    folder = data_dir / "queue"
    return sorted(p.name for p in folder.glob("*.msg")) if folder.is_dir() else []


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_a_task_finished_during_a_clean_stop_is_acked_not_redelivered(
    env: dict[str, str], tmp_path: Path, stop_signal: signal.Signals
) -> None:
    started = tmp_path / "started"
    started.mkdir()
    message = {
        "job_id": "stop1",
        "task_id": "stop1-root",
        "input_uri": "s3://b/in",
        "output_prefix": "s3://b/stop1/",
        "params": {"step": "leaf", "sleep": 2, "started_dir": str(started)},
    }
    sent = subprocess.run(
        [*KW, "send", "-"], env=env, input=json.dumps(message).encode(), capture_output=True
    )
    assert sent.returncode == 0, sent.stderr
    proc = subprocess.Popen(
        [*KW, "--hooks", "tests.sample_hooks:StepHooks"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: list(started.iterdir()), timeout=30, interval=0.05)
        proc.send_signal(stop_signal)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    status = subprocess.run([*KW, "status", "stop1", "--json"], env=env, capture_output=True, text=True)
    assert json.loads(status.stdout)["status"] == "DONE"
    assert queued_files(tmp_path / "data") == [], "the finished task's message went back to the queue"
    assert len(list(started.iterdir())) == 1


def test_an_unstarted_message_is_released_at_a_clean_stop(env: dict[str, str], tmp_path: Path) -> None:
    started = tmp_path / "started"
    started.mkdir()
    for n in (1, 2):
        body = {
            "job_id": f"rel{n}",
            "task_id": f"rel{n}-root",
            "input_uri": "s3://b/in",
            "output_prefix": f"s3://b/rel{n}/",
            "params": {"step": "leaf", "sleep": 2, "started_dir": str(started)},
        }
        assert subprocess.run([*KW, "send", "-"], env=env, input=json.dumps(body).encode()).returncode == 0
    proc = subprocess.Popen(
        [*KW, "--hooks", "tests.sample_hooks:StepHooks"],
        env={**env, "KOMBU_WORKER_PREFETCH": "2"},
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: list(started.iterdir()), timeout=30, interval=0.05)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert len(list(started.iterdir())) == 1, "only the first message started"
    assert len(queued_files(tmp_path / "data")) == 1, "the unstarted message is back in the queue, once"
