#!/usr/bin/env python3
"""Chaos run: a fan-out / fan-in pipeline on moto + PostgreSQL while workers SIGKILL themselves.

Run it inside the services harness::

    python scripts/services.py -- python scripts/chaos.py [--jobs 8 --fanout 4 --workers 2 ...]

Three steps, one SQS queue each (split → N parts → join), ``--workers`` real ``kombu-worker``
processes per step. Every worker runs with ``KOMBU_WORKER_FAULTS`` set on all seven fault points
(``kombu_worker_sdk/worker/faults.py``), so it kills itself at random stage boundaries, or hangs in
the hooks stage (``hang_in_hooks``, at ``--hang-rate``) until its hard time limit (``--time-limit``)
records the attempt and ends the process with 124; a supervisor restarts whatever died. Workers run with the shipped visibility timeout (``--visibility-timeout``
sets a shorter one); a claim's lease is one visibility timeout, pushed by the heartbeat, so a dead
worker's message and claim come back together. The bucket is versioned, so every write of every
``result.*`` object can be counted afterwards.

When every job is DONE (or ``--timeout`` passes) the work queues are left to drain, the workers
get SIGTERM, and the run is checked:

* jobs lost (not DONE): 0;
* duplicate results (``result.*`` objects with more than one version): 0;
* every task has its result, and every join (fan-in) task exists once, with one result version,
  and its barrier released once;
* no task PENDING, PROCESSING or FAILED; the dead-letter queue is empty;
* no job RUNNING without a task PENDING-and-queued or PROCESSING-and-leased (tests/invariants.py);
* ``process`` re-ran only after a kill between ``process`` and the result write (``during_hooks``;
  with ``--concurrency``/``--batch-size`` above 1, any kill may interrupt several messages);
* every worker death was an injected fault (a SIGKILL per killed process, a 124 per process that
  only hung), and every SIGTERM stop exited 0 (or ended in an injected fault).

``--concurrency``/``--batch-size`` put several messages in flight per worker, ``--sleep`` makes
the split and part steps slow (longer than the visibility timeout: the heartbeat must keep them), ``--seed``
makes the fault draws reproducible (a different seed for each worker launch).

Kills per boundary, restarts, redeliveries and the duplicates the SDK suppressed are reported,
and the recovery time: from each kill that left a claim behind to that task's DONE elsewhere,
p50 and max, against the target of one visibility timeout + the step's ``--sleep`` + 10 s.
The exit status is 0 only when every check passes; ``--json PATH`` writes the same report.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from chaoslib.checks import job_ids, jobs_done, split_message, verify, work_depth  # noqa: E402
from chaoslib.report import recovery, render  # noqa: E402
from chaoslib.workers import (  # noqa: E402
    MAX_ATTEMPTS,
    STEPS,
    Supervisor,
    config_rejects_faults,
    time_limit_of,
)

from kombu_worker_sdk.config import load_config  # noqa: E402
from tests import servers  # noqa: E402
from tests.integration.stack import new_stack  # noqa: E402


def log(text: str) -> None:
    print(f"chaos: {text}", file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8, help="jobs to send (default 8)")
    parser.add_argument("--fanout", type=int, default=4, help="parts per job (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per step (default 2)")
    parser.add_argument("--concurrency", type=int, default=1, help="hook threads per worker (default 1)")
    parser.add_argument("--batch-size", type=int, default=1, help="micro-batch size per worker (default 1)")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each split/part step takes")
    parser.add_argument("--rate", type=float, default=0.08, help="kill probability per fault point")
    parser.add_argument(
        "--hang-rate",
        type=float,
        default=None,
        help="probability of the hang fault in hooks (default --rate)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="the workers' hard time limit (default 3 + 2 x --sleep)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=None,
        help=f"seconds; default: the shipped default ({shipped_visibility()} s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for every job (default 150 + 4 x visibility)",
    )
    parser.add_argument("--drain", type=float, default=30, help="seconds to let queues drain afterwards")
    parser.add_argument("--seed", type=int, default=None, help="seed the workers' fault draws")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, markers)")
    args = parser.parse_args(argv)
    if min(args.jobs, args.fanout, args.workers, args.concurrency, args.batch_size) < 1:
        parser.error("--jobs, --fanout, --workers, --concurrency and --batch-size must be >= 1")
    if args.jobs * (args.fanout + 2) > 600:
        parser.error("keep jobs x (fanout + 2) <= 600: moto slows down on deep queues")
    if args.timeout is None:
        args.timeout = 150 + 4 * visibility_of(args)
    return args


def shipped_visibility() -> int:
    return load_config(config_dir=REPO / "config", env={}).visibility_timeout


def visibility_of(args: argparse.Namespace) -> int:
    vt: int = args.visibility_timeout if args.visibility_timeout is not None else shipped_visibility()
    return vt


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    began = time.monotonic()
    timings: dict[str, float] = {}
    stack = new_stack(tmp, *STEPS)
    visibility = visibility_of(args)
    for step in STEPS:  # the workers pass it on every receive too; the queue agrees with them
        stack.sqs.set_queue_attributes(
            QueueUrl=stack.queues[step], Attributes={"VisibilityTimeout": str(visibility)}
        )
    stack.s3.put_bucket_versioning(Bucket=stack.bucket, VersioningConfiguration={"Status": "Enabled"})
    (tmp / "markers").mkdir()
    (tmp / "logs").mkdir()
    warnings = []
    refused = config_rejects_faults()
    if refused:
        warnings.append(
            f"the config loader refuses KOMBU_WORKER_FAULTS* ({refused}); workers run the CLI "
            "through a shim that hides those variables from it"
        )
        log("WARNING: " + warnings[-1])
    sup = Supervisor(stack, args, tmp / "faults.log", tmp / "logs", config_shim=bool(refused))
    jobs = job_ids(args.jobs)
    try:
        sup.start()
        for job in jobs:
            stack.send("split", split_message(stack, job, args.fanout, tmp / "markers", args.sleep))
        timings["setup"] = time.monotonic() - began
        log(f"sent {len(jobs)} jobs; {len(sup.slots)} workers; temp folder {tmp}")

        t0 = time.monotonic()
        deadline = t0 + args.timeout
        last_look, done = 0.0, 0
        while time.monotonic() < deadline:
            sup.revive()
            if time.monotonic() - last_look >= 1.0:
                last_look = time.monotonic()
                now_done = jobs_done(stack, jobs)
                if now_done != done:
                    done = now_done
                    log(f"{done}/{len(jobs)} jobs DONE after {last_look - t0:.0f}s, {sup.restarts} restarts")
                if done == len(jobs):
                    break
            time.sleep(0.2)
        timings["run"] = time.monotonic() - t0

        t0 = time.monotonic()  # let duplicate copies and retries settle (they must be skipped)
        deadline = t0 + (args.drain if done == len(jobs) else 0)
        while time.monotonic() < deadline:
            sup.revive()
            if work_depth(stack) == 0:
                break
            time.sleep(0.5)
        timings["drain"] = time.monotonic() - t0

        t0 = time.monotonic()
        sup.revive()
        stop_codes, hung = sup.stop()
        timings["stop"] = time.monotonic() - t0
    finally:
        sup.kill_all()

    t0 = time.monotonic()
    stats, checks = verify(stack, sup, jobs, args.fanout, tmp, stop_codes, hung)
    recovered = recovery(stack, sup, sup.faults_log, visibility=visibility, step_seconds=args.sleep)
    timings["verify"] = time.monotonic() - t0
    timings["total"] = time.monotonic() - began
    return {
        "config": {
            "jobs": args.jobs,
            "fanout": args.fanout,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "batch_size": args.batch_size,
            "sleep": args.sleep,
            "rate": args.rate,
            "hang_rate": args.hang_rate if args.hang_rate is not None else args.rate,
            "time_limit_seconds": time_limit_of(args),
            "timeout": args.timeout,
            "seed": args.seed,
            "visibility_timeout": visibility,
            "lease_seconds": visibility,  # a claim's lease is one visibility timeout
            "max_attempts": MAX_ATTEMPTS,
        },
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "stats": stats,
        "recovery": recovered,
        "checks": [c.__dict__ for c in checks],
        "warnings": warnings,
        "ok": all(c.ok for c in checks),
        "tmp": str(tmp),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (servers.moto_url() and servers.pg_dsn()):
        log("KWS_TEST_MOTO_URL / KWS_TEST_PG_DSN unset: run under scripts/services.py")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="kws-chaos-"))
    try:
        report = run(args, tmp)
    except BaseException:
        log(f"chaos run crashed; logs kept in {tmp}")
        raise
    print(render(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    if report["ok"] and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        log(f"logs, markers and the faults log are in {tmp}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
