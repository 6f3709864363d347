"""Issue 15 as a new user met it: on the embedded defaults, a hook that hangs for ever.

The installed ``kombu-worker`` console script in a fresh folder (no ``config/``, no SDK
variables but the limits): the hard time limit ends the process with 124, the next run
retries the task, and the run that uses the last attempt leaves it FAILED and dead-lettered.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from kombu_worker_sdk.worker.overrun import EXIT_TIME_LIMIT
from tests.unit.test_cli_first_use import SCRIPT, send_leaf, user_env

HANGING_HOOKS = """\
import threading

from kombu_worker_sdk import WorkerHooks


class HangHooks(WorkerHooks):
    def load_pipeline(self, ctx):
        return None

    def process(self, ctx, msg):
        threading.Event().wait()  # a call that never returns

    def publish_next(self, ctx, msg, outputs):
        return []
"""


def test_a_hook_that_hangs_on_the_embedded_defaults_exits_124_then_fails_for_good(tmp_path: Path) -> None:
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "hooks.py").write_text(HANGING_HOOKS)
    send_leaf(tmp_path)
    env = {**user_env(), "KOMBU_WORKER_TIME_LIMIT_SECONDS": "1", "KOMBU_WORKER_MAX_ATTEMPTS": "2"}

    def worker() -> subprocess.CompletedProcess[str]:
        argv = [str(SCRIPT), "--hooks", "service.hooks:HangHooks"]
        return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    def status() -> str:
        argv = [str(SCRIPT), "status", "j1"]
        return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60).stdout

    first = worker()
    assert first.returncode == EXIT_TIME_LIMIT, first.stderr
    assert "hook ran past its hard time limit of 1s" in first.stderr
    assert "job j1: RUNNING" in status(), "attempt 1 recorded; the task waits for the next worker"
    second = worker()
    assert second.returncode == EXIT_TIME_LIMIT, second.stderr
    shown = status()
    assert "job j1: FAILED" in shown and "TimeLimitExceeded" in shown, shown
    dead = list((tmp_path / ".kombu-worker" / "queue").glob("*tasks-dlq*"))
    assert len(dead) == 1, sorted(p.name for p in (tmp_path / ".kombu-worker" / "queue").iterdir())
