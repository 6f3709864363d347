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
See tests/load-recipe.md. Beside this file: ``loadtest_target.py`` (the queues, bucket and
database, here or on AWS) and ``loadtest_workers.py`` (the worker processes).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg2
from loadtest_target import STEPS, Target, aws_target, backlog, harness_target, log, mask
from loadtest_workers import REPO, WORKER, start_workers, stop_workers, wait_consuming, worker_env

SAMPLE_SECONDS = 0.5
DEPTH_WARNING = 1000


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
