"""The load test's worker processes: one ``kombu-worker`` group per step, started, awaited, stopped."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loadtest_target import STEPS, Target

REPO = Path(__file__).resolve().parents[1]
NEXT = {"split": "part", "part": "join", "join": None}
HOOKS = "tests.sample_hooks:StepHooks"
WORKER = [sys.executable, "-m", "kombu_worker_sdk.runner"]  # what the kombu-worker script runs


def worker_env(target: Target, step: str, args: argparse.Namespace, data_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "WORKER_CONFIG_DIR": str(REPO / "config"),
        "BROKER_URL": "sqs://",
        "STORAGE_URL": "s3://",
        "QUEUE_URL": target.queues[step],
        "DLQ_URL": target.queues["dlq"],
        "BUCKET": target.bucket,
        "DB_DSN": target.dsn,
        "AWS_DEFAULT_REGION": target.region,
        "KOMBU_WORKER_DATA_DIR": str(data_dir),
        "KOMBU_WORKER_WAIT_TIME_SECONDS": "1",
        "KOMBU_WORKER_CONCURRENCY": str(args.concurrency),
    }
    env.pop("NEXT_QUEUE_URL", None)
    nxt = NEXT[step]
    if nxt:
        env["NEXT_QUEUE_URL"] = target.queues[nxt]
    if target.endpoint:
        env["AWS_ENDPOINT_URL"] = target.endpoint
    return env


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM if this script dies, so no worker outlives a killed run."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_workers(target: Target, args: argparse.Namespace, logdir: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for step in STEPS:
        env = worker_env(target, step, args, logdir / "data")
        for i in range(args.workers):
            with (logdir / f"{step}-{i}.log").open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [*WORKER, "--hooks", HOOKS],
                        env=env,
                        cwd=REPO,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # signals reach workers only through this script
                        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                    )
                )
    return procs


def wait_consuming(procs: list[subprocess.Popen[bytes]], logdir: Path, timeout: float = 120) -> None:
    """Poll the worker logs until every worker logged that it consumes (fails at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        ready = sum("consuming from" in p.read_text(errors="replace") for p in logdir.glob("*.log"))
        if ready >= len(procs):
            return
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(
                f"{ready}/{len(procs)} workers consuming, {len(dead)} exited; logs in {logdir}"
            )
        time.sleep(0.2)


def stop_workers(procs: list[subprocess.Popen[bytes]], grace: float = 30) -> list[int | None]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return [proc.returncode for proc in procs]
