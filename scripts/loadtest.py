#!/usr/bin/env python3
"""Load test: N jobs, each split → F parts (fan-out) → join (fan-in), on real workers.

Against the throwaway servers of ``scripts/services.py`` (moto + PostgreSQL)::

    python scripts/services.py -- python scripts/loadtest.py --jobs 10 --fanout 5 --workers 2

or against AWS (queues ``<prefix>-split``, ``-part``, ``-join``, ``-dlq`` must exist)::

    python scripts/loadtest.py --queue-prefix-url https://sqs.REGION.amazonaws.com/ACCOUNT/kw-load \\
        --bucket my-bucket --db-dsn postgresql://user:pw@host/db --jobs 100 --fanout 10 --workers 4

Starts ``--workers`` ``kombu-worker`` processes per step (hooks ``tests.sample_hooks:StepHooks``),
sends the jobs with ``kombu-worker send`` (which registers each job in PostgreSQL first), samples
the queue backlogs and the finished tasks every 0.5 s until every job is DONE or FAILED (or
``--timeout``), then prints throughput and end-to-end job latency and writes a PNG of the run.
See tests/load-recipe.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import boto3
import psycopg2
from botocore.config import Config
from psycopg2 import sql

REPO = Path(__file__).resolve().parents[1]
STEPS = ("split", "part", "join")
NEXT = {"split": "part", "part": "join", "join": None}
HOOKS = "tests.sample_hooks:StepHooks"
WORKER = [sys.executable, "-m", "kombu_worker_sdk.runner"]  # what the kombu-worker script runs
SAMPLE_SECONDS = 0.5
BOTO = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3})
DEPTH_WARNING = 1000


def log(msg: str) -> None:
    print(f"[loadtest] {msg}", file=sys.stderr, flush=True)


@dataclass
class Target:
    """Where the run happens: queue URLs by role, bucket, database, optional endpoint."""

    queues: dict[str, str]
    bucket: str
    dsn: str
    region: str
    endpoint: str | None = None
    dummy_creds: bool = False
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = boto3.client(
                service, region_name=self.region, endpoint_url=self.endpoint, config=BOTO
            )
        return self.clients[service]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=10, help="jobs to send (default 10)")
    p.add_argument("--fanout", type=int, default=5, help="part tasks per job (default 5)")
    p.add_argument("--workers", type=int, default=2, help="worker processes per step (default 2)")
    p.add_argument("--concurrency", type=int, default=1, help="threads per worker (default 1)")
    p.add_argument("--work-ms", type=float, default=0, help="simulated work per task, ms (default 0)")
    p.add_argument("--out", type=Path, default=REPO / "bench-out" / "loadtest.png", help="PNG to write")
    p.add_argument("--timeout", type=float, default=600, help="give up after this many seconds of processing")
    p.add_argument("--queue-prefix-url", help="real SQS: queues are <prefix>-split/-part/-join/-dlq")
    p.add_argument("--bucket", help="real S3 bucket (with --queue-prefix-url)")
    p.add_argument("--db-dsn", help="real PostgreSQL DSN (with --queue-prefix-url)")
    args = p.parse_args(argv)
    real = [args.queue_prefix_url, args.bucket, args.db_dsn]
    if any(real) and not all(real):
        p.error("--queue-prefix-url, --bucket and --db-dsn go together")
    if min(args.jobs, args.fanout, args.workers, args.concurrency) < 1:
        p.error("--jobs, --fanout, --workers and --concurrency must be at least 1")
    return args


def mask(text: str) -> str:
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", text)


# -- targets -----------------------------------------------------------------
def harness_target(run_id: str) -> Target:
    """Fresh queues, bucket and database on the servers of scripts/services.py."""
    endpoint, admin_dsn = os.environ.get("KWS_TEST_MOTO_URL"), os.environ.get("KWS_TEST_PG_DSN")
    if not endpoint or not admin_dsn:
        sys.exit("loadtest: run under scripts/services.py, or give --queue-prefix-url/--bucket/--db-dsn")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    target = Target({}, run_id, "", "us-east-1", endpoint, dummy_creds=True)
    sqs = target.client("sqs")
    for role in (*STEPS, "dlq"):
        target.queues[role] = sqs.create_queue(QueueName=f"{run_id}-{role}")["QueueUrl"]
    target.client("s3").create_bucket(Bucket=run_id)
    conn = psycopg2.connect(admin_dsn, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(run_id.replace("-", "_"))))
    finally:
        conn.close()
    parts = urllib.parse.urlsplit(admin_dsn)
    target.dsn = urllib.parse.urlunsplit(parts._replace(path="/" + run_id.replace("-", "_")))
    return target


def aws_target(args: argparse.Namespace) -> Target:
    """Existing queues ``<prefix>-<role>``, bucket and database; credentials from the AWS chain."""
    prefix = args.queue_prefix_url.rstrip("/")
    found = re.search(r"sqs[.-]([a-z0-9-]+)\.amazonaws\.com", prefix)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or (found and found[1])
    if not region:
        sys.exit("loadtest: set AWS_REGION (cannot read the region from --queue-prefix-url)")
    target = Target({r: f"{prefix}-{r}" for r in (*STEPS, "dlq")}, args.bucket, args.db_dsn, region)
    for role, url in target.queues.items():
        depth = backlog(target, url)
        if depth[0] or depth[1]:
            log(f"warning: {role} queue already holds {depth[0]} visible / {depth[1]} in-flight messages")
    return target


# -- workers -----------------------------------------------------------------
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


# -- sending and sampling -------------------------------------------------------
def send_jobs(target: Target, args: argparse.Namespace, run_id: str, env: dict[str, str]) -> None:
    """``kombu-worker send -``: registers each job in PostgreSQL, then publishes in batches."""
    params: dict[str, Any] = {"step": "split", "parts": args.fanout}
    if args.work_ms:
        params["sleep"] = args.work_ms / 1000
    msgs = [
        {
            "job_id": f"{run_id}-{i:05d}",
            "task_id": f"{run_id}-{i:05d}-split",
            "input_uri": f"s3://{target.bucket}/loadtest/input.txt",
            "output_prefix": f"s3://{target.bucket}/loadtest/{run_id}-{i:05d}/split/",
            "params": params,
        }
        for i in range(args.jobs)
    ]
    done = subprocess.run(
        [*WORKER, "send", "-"],
        input=json.dumps(msgs).encode(),
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kombu-worker send failed: {mask(done.stderr.decode(errors='replace'))[-2000:]}")


def start_sender(
    target: Target, args: argparse.Namespace, run_id: str, env: dict[str, str]
) -> tuple[threading.Thread, list[str]]:
    """Send on a thread, so that sampling (and the plot) starts at t=0 with the send."""
    errors: list[str] = []

    def send() -> None:
        started = time.monotonic()
        try:
            send_jobs(target, args, run_id, env)
        except Exception as exc:
            errors.append(mask(str(exc)))
            return
        log(f"sent {args.jobs} jobs in {time.monotonic() - started:.1f}s")

    thread = threading.Thread(target=send, name="sender", daemon=True)
    thread.start()
    return thread, errors


def backlog(target: Target, url: str) -> tuple[int, int]:
    attrs = target.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def db_counts(conn: Any, pattern: str) -> tuple[int, int, int]:
    """(tasks DONE, jobs DONE, jobs FAILED) of this run."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM kw_tasks WHERE job_id LIKE %s AND status = 'DONE'", (pattern,))
        tasks = cur.fetchone()[0]
        cur.execute("SELECT status, count(*) FROM kw_jobs WHERE job_id LIKE %s GROUP BY status", (pattern,))
        jobs = dict(cur.fetchall())
    return tasks, jobs.get("DONE", 0), jobs.get("FAILED", 0)


@dataclass
class Sample:
    t: float
    visible: dict[str, int]
    inflight: dict[str, int]
    tasks_done: int
    jobs_done: int
    jobs_failed: int


def sample_until_done(
    target: Target,
    conn: Any,
    pattern: str,
    jobs: int,
    t0: float,
    timeout: float,
    abort: Callable[[], str | None],
) -> list[Sample]:
    """Sample every SAMPLE_SECONDS until every job ended, the deadline, or ``abort()`` names a reason."""
    samples: list[Sample] = []
    deadline = time.monotonic() + timeout
    while True:
        tick = time.monotonic()
        depths = {role: backlog(target, url) for role, url in target.queues.items()}
        tasks, done, failed = db_counts(conn, pattern)
        samples.append(
            Sample(
                tick - t0,
                {r: d[0] for r, d in depths.items()},
                {r: d[1] for r, d in depths.items()},
                tasks,
                done,
                failed,
            )
        )
        if done + failed >= jobs:
            return samples
        if time.monotonic() > deadline:
            log(f"timeout: {done} done, {failed} failed of {jobs} jobs after {timeout:.0f}s")
            return samples
        reason = abort()
        if reason:
            log(f"stopped sampling: {reason}")
            return samples
        time.sleep(max(0.0, SAMPLE_SECONDS - (time.monotonic() - tick)))


# -- results ---------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]


def summarize(conn: Any, pattern: str) -> dict[str, Any]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT j.job_id, j.status, j.created_at, max(t.updated_at), count(t.task_id) "
            "FROM kw_jobs j JOIN kw_tasks t ON t.job_id = j.job_id WHERE j.job_id LIKE %s "
            "GROUP BY j.job_id, j.status, j.created_at",
            (pattern,),
        )
        rows = cur.fetchall()
        cur.execute(
            "SELECT count(*), max(updated_at) FROM kw_tasks WHERE job_id LIKE %s AND status = 'DONE'",
            (pattern,),
        )
        tasks_done, last_done = cur.fetchone()
    done = [r for r in rows if r[1] == "DONE"]
    latencies = [last - created for _, _, created, last, _ in done]
    # From the first job registered to the last task finished, whether or not every job finished.
    window = (last_done - min(r[2] for r in rows)) if rows and last_done else 0.0
    return {
        "jobs_done": len(done),
        "jobs_failed": sum(r[1] == "FAILED" for r in rows),
        "tasks_done": tasks_done,
        "window_seconds": window,
        "jobs_per_second": len(done) / window if window else 0.0,
        "tasks_per_second": tasks_done / window if window else 0.0,
        "latency_p50": percentile(latencies, 50) if latencies else None,
        "latency_p95": percentile(latencies, 95) if latencies else None,
        "latency_max": max(latencies) if latencies else None,
    }


def plot(samples: list[Sample], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 7))
    for role in (*STEPS, "dlq"):
        (line,) = top.plot(t, [s.visible[role] for s in samples], label=f"{role} waiting")
        top.plot(
            t, [s.inflight[role] for s in samples], "--", color=line.get_color(), label=f"{role} in flight"
        )
    top.set_ylabel("messages (ApproximateNumberOf…)")
    top.set_title(title)
    top.legend(ncol=4, fontsize="small")
    top.grid(alpha=0.3)
    bottom.plot(t, [s.tasks_done for s in samples], label="tasks DONE", color="tab:green")
    bottom.set_ylabel("tasks DONE (cumulative)")
    bottom.set_xlabel("seconds since the jobs were sent")
    jobs_axis = bottom.twinx()
    jobs_axis.plot(t, [s.jobs_done for s in samples], color="tab:purple", label="jobs DONE")
    jobs_axis.set_ylabel("jobs DONE (cumulative)")
    lines = bottom.get_lines() + jobs_axis.get_lines()
    bottom.legend(lines, [str(line.get_label()) for line in lines], loc="upper left")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


# -- main ------------------------------------------------------------------------
def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    run_id = f"kwload-{uuid.uuid4().hex[:10]}"
    pattern = f"{run_id}-%"
    if args.jobs * args.fanout > DEPTH_WARNING:
        log(f"warning: up to {args.jobs * args.fanout} part messages queued at once; moto slows sharply")
    target = aws_target(args) if args.queue_prefix_url else harness_target(run_id)
    logdir = args.out.parent / "loadtest-logs" / run_id
    logdir.mkdir(parents=True, exist_ok=True)
    log(f"run {run_id}: {args.jobs} jobs x fan-out {args.fanout}, {args.workers} worker(s) per step")
    log(f"queues {', '.join(target.queues)} · bucket {target.bucket} · db {mask(target.dsn)} · logs {logdir}")
    procs: list[subprocess.Popen[bytes]] = []
    conn: Any = None
    code = 1
    try:
        procs = start_workers(target, args, logdir)
        started = time.monotonic()
        wait_consuming(procs, logdir)
        log(f"{len(procs)} workers consuming after {time.monotonic() - started:.1f}s; sending")
        conn = psycopg2.connect(target.dsn, connect_timeout=5, options="-c statement_timeout=10000")
        conn.autocommit = True
        sender, send_error = start_sender(
            target, args, run_id, worker_env(target, "split", args, logdir / "data")
        )

        def abort() -> str | None:
            if send_error:
                return send_error[0]
            if all(p.poll() is not None for p in procs):
                return "every worker exited before the jobs finished"
            return None

        samples = sample_until_done(target, conn, pattern, args.jobs, time.monotonic(), args.timeout, abort)
        sender.join(1)
        result = summarize(conn, pattern)
        expected = args.jobs * (args.fanout + 2)
        title = (
            f"{args.jobs} jobs x fan-out {args.fanout}, {args.workers} worker(s)/step: "
            f"{result['jobs_per_second']:.2f} jobs/s, {result['tasks_per_second']:.1f} tasks/s"
        )
        plot(samples, args.out, title)
        lat = [result[k] for k in ("latency_p50", "latency_p95", "latency_max")]
        print(f"jobs        {result['jobs_done']} DONE, {result['jobs_failed']} FAILED of {args.jobs}")
        print(f"tasks       {result['tasks_done']} DONE of {expected} expected ({args.fanout + 2} per job)")
        print(f"window      {result['window_seconds']:.2f} s (first job created → last task DONE)")
        print(f"throughput  {result['jobs_per_second']:.2f} jobs/s, {result['tasks_per_second']:.1f} tasks/s")
        if lat[0] is not None:
            print(
                f"latency     p50 {lat[0]:.2f} s, p95 {lat[1]:.2f} s, max {lat[2]:.2f} s (job created → last task)"
            )
        print(f"dlq         {samples[-1].visible['dlq'] + samples[-1].inflight['dlq']} message(s)")
        print(f"plot        {args.out}")
        code = 0 if result["jobs_done"] == args.jobs and result["tasks_done"] == expected else 2
        if code:
            print("INCOMPLETE  not every job finished: latency covers the finished jobs only")
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'SIGINT'}); stopping the workers")
        code = 130
    except Exception as exc:
        log(f"error: {mask(str(exc))}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        codes = stop_workers(procs)
        if any(c not in (0, None) for c in codes):
            log(f"worker exit codes {codes}; logs in {logdir}")
        if conn is not None:
            conn.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
