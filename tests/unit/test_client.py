"""The Client API on the embedded defaults: filesystem broker, SQLite, local files.

The client runs in the test, as in a producer's process; workers are real
``python -m kombu_worker_sdk.runner`` subprocesses in a fresh folder with the shipped
defaults (no config/ folder), reading the same ``.kombu-worker`` data folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kombu_worker_sdk import Client, load_config
from tests import client_cases

REPO = Path(__file__).parents[2]
RUNNER = [sys.executable, "-m", "kombu_worker_sdk.runner"]
PREFIX = "s3://bucket/"  # the local storage maps s3://bucket/key to .kombu-worker/storage/bucket/key


@dataclass
class Embedded:
    folder: Path
    client: Client
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """A user's shell, plus the tests' hooks on the path; children go back to ``tasks``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KOMBU_WORKER_", "WORKER_CONFIG"))}
        for key in ("DB_DSN", "BROKER_URL", "STORAGE_URL", "QUEUE_URL", "NEXT_QUEUE_URL", "BUCKET"):
            env.pop(key, None)
        return {**env, "PYTHONPATH": str(REPO), "KOMBU_WORKER_NEXT_QUEUE": "tasks"}

    def start_worker(self) -> subprocess.Popen[str]:
        log = (self.folder / f"worker-{len(self.procs)}.log").open("w")
        proc = subprocess.Popen(
            [*RUNNER, "--hooks", "tests.sample_hooks:StepHooks"],
            cwd=self.folder,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.folder.glob("worker-*.log")))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*RUNNER, *args], cwd=self.folder, env=self.env(), capture_output=True, text=True, timeout=60
        )


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Embedded]:
    folder = tmp_path / "service"
    folder.mkdir()
    # What a producer in the service folder gets from load_config(): the shipped defaults.
    config = load_config(
        config_dir=folder / "config", env={}, overrides={"data_dir": folder / ".kombu-worker"}
    )
    built = Embedded(folder, Client(config))
    yield built
    for proc in built.procs:
        proc.kill()
        proc.wait(10)
    built.client.close()


def test_submit_then_wait_then_results(embedded: Embedded) -> None:
    client_cases.submit_wait_results(embedded.client, embedded.start_worker, PREFIX)


def test_a_failing_task_makes_wait_raise_with_its_error(embedded: Embedded) -> None:
    client_cases.a_failing_task_raises_with_its_error(embedded.client, embedded.start_worker, PREFIX)


def test_cancel_queued_tasks_then_a_worker_skips_them(embedded: Embedded) -> None:
    client_cases.cancel_queued_then_start_a_worker(
        embedded.client, embedded.start_worker, PREFIX, embedded.folder / "markers", embedded.logs
    )
    status = embedded.cli("status", "cx")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("job cx: CANCELLED (0/2 done, 0 failed)")
    assert status.stdout.count("CANCELLED") == 3  # the job and both tasks


def test_cancel_while_running_skips_the_children_registered_later(embedded: Embedded) -> None:
    client_cases.cancel_while_running_skips_later_children(
        embedded.client, embedded.start_worker, PREFIX, embedded.folder, embedded.logs
    )
