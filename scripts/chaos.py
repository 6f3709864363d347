#!/usr/bin/env python3
"""Chaos run: a fan-out / fan-in pipeline on moto + PostgreSQL while workers SIGKILL themselves.

Run it inside the services harness::

    python scripts/services.py -- python scripts/chaos.py [--jobs 8 --fanout 4 --workers 2 ...]

Three steps, one SQS queue each (split → N parts → join), ``--workers`` real ``kombu-worker``
processes per step. Every worker runs with ``KOMBU_WORKER_FAULTS`` set on all six fault points
(``kombu_worker_sdk/faults.py``), so it kills itself at random stage boundaries; a supervisor
restarts whatever died. Queues have a 3 s visibility timeout and tasks a 4 s lease, so a dead
worker's message and claim come back quickly. The bucket is versioned, so every write of every
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
* every worker death was an injected fault, and every SIGTERM stop exited 0.

``--concurrency``/``--batch-size`` put several messages in flight per worker, ``--sleep`` makes
the split and part steps slow (longer than the lease: the heartbeat must keep them), ``--seed``
makes the fault draws reproducible (a different seed for each worker launch).

Kills per boundary, restarts, redeliveries and the duplicates the SDK suppressed are reported.
The exit status is 0 only when every check passes; ``--json PATH`` writes the same report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kombu_worker_sdk.faults import POINTS  # noqa: E402
from tests import servers  # noqa: E402
from tests.integration.stack import RUNNER, Stack, new_stack  # noqa: E402
from tests.invariants import sqs_counter, stranded_jobs  # noqa: E402

STEPS = ("split", "part", "join")
NEXT_STEP: dict[str, str | None] = {"split": "part", "part": "join", "join": None}
HOOKS = "tests.sample_hooks:StepHooks"
QUEUE_VISIBILITY = 3  # seconds: a killed worker's message comes back quickly
LEASE_SECONDS = 4
MAX_ATTEMPTS = 20
SEED_ENV = "KWS_CHAOS_SEED"
SHIM_ENV = "KWS_CHAOS_CONFIG_SHIM"
# Runs the real CLI (``python -m kombu_worker_sdk.runner``) after, optionally, seeding ``random``
# (which the fault points draw from) and hiding the KOMBU_WORKER_FAULTS* variables from the
# config loader when it refuses them as unknown config keys (see ``config_rejects_faults``).
SHIM = """
import os, random, runpy
if os.environ.get("KWS_CHAOS_SEED"):
    random.seed(int(os.environ["KWS_CHAOS_SEED"]))
if os.environ.get("KWS_CHAOS_CONFIG_SHIM"):
    import kombu_worker_sdk.config as config
    env_layers = config._env_layers
    config._env_layers = lambda environ: env_layers(
        {k: v for k, v in environ.items() if not k.startswith("KOMBU_WORKER_FAULTS")}
    )
runpy.run_module("kombu_worker_sdk.runner", run_name="__main__", alter_sys=True)
"""
SHIM_RUNNER = [sys.executable, "-c", SHIM]
#: Give up early when workers keep dying of something other than an injected SIGKILL.
MAX_OTHER_DEATHS = 6


def config_rejects_faults() -> str | None:
    """The config loader's error when KOMBU_WORKER_FAULTS* are set, or None if it accepts them."""
    from kombu_worker_sdk.config import load_config
    from kombu_worker_sdk.errors import ConfigError

    env = {"KOMBU_WORKER_FAULTS": "after_receive=0", "KOMBU_WORKER_FAULTS_LOG": "/dev/null"}
    try:
        load_config(config_dir=REPO / "config", env=env)
    except ConfigError as exc:
        return str(exc)
    return None


def log(text: str) -> None:
    print(f"chaos: {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ workers


class CrashLoop(RuntimeError):
    """Workers die of something other than the injected faults: no point going on."""


@dataclass
class Slot:
    """One worker position of a step; the supervisor keeps a live process in it."""

    step: str
    index: int
    proc: subprocess.Popen[str] | None = None
    starts: int = 0


@dataclass
class Supervisor:
    stack: Stack
    options: argparse.Namespace
    faults_log: Path
    logs: Path
    config_shim: bool = False
    slots: list[Slot] = field(default_factory=list)
    restarts: int = 0
    deaths: Counter[int] = field(default_factory=Counter)
    _launches: int = 0

    def env(self, step: str) -> dict[str, str]:
        spec = ",".join(f"{point}={self.options.rate}" for point in POINTS)
        env = self.stack.env(
            step,
            NEXT_STEP[step],
            KOMBU_WORKER_FAULTS=spec,
            KOMBU_WORKER_FAULTS_LOG=str(self.faults_log),
            KOMBU_WORKER_VISIBILITY_TIMEOUT=str(QUEUE_VISIBILITY),
            KOMBU_WORKER_LEASE_SECONDS=str(LEASE_SECONDS),
            KOMBU_WORKER_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
            KOMBU_WORKER_SHUTDOWN_GRACE_SECONDS="20",
            KOMBU_WORKER_CONCURRENCY=str(self.options.concurrency),
            KOMBU_WORKER_BATCH_SIZE=str(self.options.batch_size),
            KOMBU_WORKER_BATCH_WAIT_MS="200" if self.options.batch_size > 1 else "0",
        )
        if self.options.seed is not None:
            # A new seed per launch: a restarted worker must not replay the draw that killed it.
            env[SEED_ENV] = str(self.options.seed * 100_000 + self._launches)
        if self.config_shim:
            env[SHIM_ENV] = "1"
        return env

    def launch(self, slot: Slot) -> None:
        plain = self.options.seed is None and not self.config_shim
        argv = [*(RUNNER if plain else SHIM_RUNNER), "--hooks", HOOKS]
        out = (self.logs / f"{slot.step}-{slot.index}-{slot.starts}.log").open("w")
        try:
            slot.proc = subprocess.Popen(
                argv, env=self.env(slot.step), stdout=out, stderr=subprocess.STDOUT, text=True
            )
        finally:
            out.close()  # the child has its own copy
        self._launches += 1
        slot.starts += 1

    def start(self) -> None:
        for step in STEPS:
            for index in range(self.options.workers):
                slot = Slot(step, index)
                self.slots.append(slot)
                self.launch(slot)

    def revive(self) -> None:
        """Restart every worker that died since the last look."""
        for slot in self.slots:
            assert slot.proc is not None
            code = slot.proc.poll()
            if code is None:
                continue
            self.deaths[code] += 1
            if self.other_deaths() > MAX_OTHER_DEATHS:
                tail = (self.logs / f"{slot.step}-{slot.index}-{slot.starts - 1}.log").read_text()[-800:]
                raise CrashLoop(f"workers keep exiting with codes {dict(self.deaths)}; last log:\n{tail}")
            self.restarts += 1
            self.launch(slot)

    def other_deaths(self) -> int:
        return sum(n for code, n in self.deaths.items() if code != -signal.SIGKILL)

    def stop(self, timeout: float = 60) -> tuple[list[int], int]:
        """SIGTERM every worker and wait for each: (exit codes, workers killed for hanging)."""
        live = [s.proc for s in self.slots if s.proc is not None and s.proc.returncode is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        codes, hung = [], 0
        deadline = time.monotonic() + timeout
        for proc in live:
            try:
                codes.append(proc.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                hung += 1
        return codes, hung

    def kill_all(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.kill()
                slot.proc.wait(10)


# -------------------------------------------------------------------------------- jobs


def job_ids(count: int) -> list[str]:
    return [f"job{i:03d}" for i in range(count)]


def split_message(stack: Stack, job: str, fanout: int, marker_dir: Path, sleep: float) -> dict[str, Any]:
    params: dict[str, Any] = {"step": "split", "parts": fanout, "marker_dir": str(marker_dir)}
    if sleep:
        params["sleep"] = sleep  # the parts inherit it; the join does not
    return {
        "job_id": job,
        "task_id": f"{job}-split",
        "input_uri": f"s3://{stack.bucket}/in.txt",
        "output_prefix": f"s3://{stack.bucket}/jobs/{job}/split/",
        "params": params,
    }


def expected_results(job: str, fanout: int) -> dict[str, str]:
    """task_id → the key of its result.json, for one job."""
    out = {f"{job}-split": f"jobs/{job}/split/result.json", f"{job}-join": f"jobs/{job}/join/result.json"}
    out.update({f"{job}-part-{i:03d}": f"jobs/{job}/part/{i:03d}/result.json" for i in range(fanout)})
    return out


def jobs_done(stack: Stack, jobs: list[str]) -> int:
    try:
        rows = stack.query("SELECT job_id FROM kw_jobs WHERE status = 'DONE'")
    except Exception:
        return 0  # the schema is created by the first worker
    return len({r[0] for r in rows} & set(jobs))


def work_depth(stack: Stack) -> int:
    return sum(stack.depth(step) for step in STEPS)


# ------------------------------------------------------------------------------ checks


def object_versions(stack: Stack) -> Counter[str]:
    counts: Counter[str] = Counter()
    pages = stack.s3.get_paginator("list_object_versions").paginate(Bucket=stack.bucket)
    for page in pages:
        for version in page.get("Versions", []):
            counts[version["Key"]] += 1
    return counts


def read_logs(folder: Path) -> tuple[list[dict[str, Any]], int]:
    """Every JSON log line of every worker run; and the number of non-JSON lines."""
    records, other = [], 0
    for path in sorted(folder.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                other += 1 if line.strip() else 0
                continue
            if isinstance(record, dict):
                records.append(record)
    return records, other


def markers_by_task(folder: Path) -> Counter[str]:
    """How often ``process`` ran per task (one marker file ``<task_id>.<pid>.<ns>`` per run)."""
    return Counter(path.name.rsplit(".", 2)[0] for path in folder.iterdir())


@dataclass
class Check:
    name: str
    value: Any
    expected: str
    ok: bool


def verify(
    stack: Stack,
    sup: Supervisor,
    jobs: list[str],
    fanout: int,
    tmp: Path,
    stop_codes: list[int],
    hung: int,
) -> tuple[dict[str, Any], list[Check]]:
    kill_lines = (
        [ln for ln in sup.faults_log.read_text().splitlines() if ln] if sup.faults_log.exists() else []
    )
    kills = Counter(kill_lines)
    tasks = stack.query("SELECT task_id, job_id, status, attempts FROM kw_tasks")
    job_rows = {r[0]: r[1:] for r in stack.query("SELECT job_id, status, total, done, failed FROM kw_jobs")}
    barriers = {
        r[0]: r[1:]
        for r in stack.query(
            "SELECT b.group_id, b.size, b.arrived, b.released_by, "
            "(SELECT COUNT(*) FROM kw_barrier_members m WHERE m.group_id = b.group_id) FROM kw_barriers b"
        )
    }
    versions = object_versions(stack)
    records, non_json = read_logs(sup.logs)
    markers = markers_by_task(tmp / "markers")
    statuses = Counter(r[2] for r in tasks)
    task_ids = {r[0] for r in tasks}

    def said(*needles: str) -> int:
        return sum(1 for r in records if all(n in str(r.get("message", "")) for n in needles))

    skipped_done = sum(
        1
        for r in records
        if str(r.get("message", "")).startswith("skipped:")
        and any(n in str(r.get("message", "")) for n in ("already DONE", "result exists"))
    )
    redelivered = {
        (r.get("task_id"), r.get("attempt"))
        for r in records
        if r.get("task_id") and isinstance(r.get("attempt"), int) and r["attempt"] > 1
    }
    expected = {t: k for job in jobs for t, k in expected_results(job, fanout).items()}
    result_keys = {k for k in versions if k.rsplit("/", 1)[-1].startswith("result.")}
    duplicate_results = sorted(k for k in result_keys if versions[k] > 1)
    missing_results = sorted(t for t, k in expected.items() if versions.get(k, 0) == 0)
    unexpected_results = sorted(result_keys - set(expected.values()))
    lost = sorted(j for j in jobs if (job_rows.get(j) or ("MISSING",))[0] != "DONE")
    rerun = {t: n - 1 for t, n in markers.items() if n > 1}
    never_ran = sorted(t for t in expected if markers.get(t, 0) == 0)
    joins_bad = []
    for job in jobs:
        join = f"{job}-join"
        rows = [r for r in tasks if r[0] == join]
        barrier = barriers.get(f"{job}/{job}-parts")
        ok = (
            len(rows) == 1
            and rows[0][2] == "DONE"
            and versions.get(f"jobs/{job}/join/result.json", 0) == 1
            and barrier is not None
            and barrier[0] == barrier[1] == barrier[3] == fanout
            and barrier[2] is not None
        )
        if not ok:
            joins_bad.append(job)
    join_runs = [markers.get(f"{job}-join", 0) for job in jobs]
    # A worker may also kill itself at a fault point while it finishes its work after SIGTERM.
    deaths = sup.deaths + Counter(c for c in stop_codes if c != 0)
    sigkilled = deaths.get(-signal.SIGKILL, 0)
    other_deaths = {code: n for code, n in deaths.items() if code != -signal.SIGKILL}
    bad_stops = [c for c in stop_codes if c not in (0, -signal.SIGKILL)]
    # ``process`` re-runs only when a kill lands after it ran and before the result was written.
    # One message in flight: that is a ``during_hooks`` kill. More: a kill anywhere interrupts
    # up to ``in_flight`` messages (and two threads may log a kill before the process dies).
    in_flight = sup.options.concurrency * sup.options.batch_size
    rerun_bound = kills.get("during_hooks", 0) if in_flight == 1 else len(kill_lines) * in_flight
    dlq = stack.depth("dlq")
    leftover = work_depth(stack)
    stranded = stranded_jobs(stack.dsn, sqs_counter(stack.sqs), default_queue=stack.queues["split"])

    stats: dict[str, Any] = {
        "kills_total": len(kill_lines),
        "kills_per_boundary": {point: kills.get(point, 0) for point in POINTS},
        "kills_during_stop": stop_codes.count(-signal.SIGKILL),
        "worker_restarts": sup.restarts,
        "worker_deaths_by_exit_code": {str(k): v for k, v in sorted(sup.deaths.items())},
        "redeliveries_receive_count_gt_1": len(redelivered),
        "reclaims_attempts_minus_1": sum(max(r[3] - 1, 0) for r in tasks),
        "duplicates_suppressed_already_done": skipped_done,
        "resumed_at_fan_out": said("resuming at fan-out"),
        "held_by_another_worker": said("task is held by another worker"),
        "hook_reruns_after_kill": sum(rerun.values()),
        "hook_reruns_by_task": rerun,
        "join_process_runs_per_job": dict(zip(jobs, join_runs, strict=True)),
        "tasks": len(tasks),
        "task_statuses": dict(statuses),
        "result_objects": len(result_keys),
        "result_versions": sum(versions[k] for k in result_keys),
        "metrics_json_multi_version": sorted(
            k for k, n in versions.items() if k.endswith("metrics.json") and n > 1
        ),
        "leftover_work_messages": leftover,
        "stop_exit_codes": stop_codes,
        "log_lines": len(records),
        "non_json_log_lines": non_json,
    }
    checks = [
        Check("jobs lost (not DONE)", lost, "0", not lost),
        Check("duplicate results (result.* with >1 version)", duplicate_results, "0", not duplicate_results),
        Check("tasks without a result", missing_results, "0", not missing_results),
        Check("unexpected result objects", unexpected_results, "0", not unexpected_results),
        Check(
            "tasks per job",
            len(tasks),
            str(len(expected)),
            len(tasks) == len(expected) and task_ids == set(expected),
        ),
        Check("fan-in (join) not exactly once", joins_bad, "0", not joins_bad),
        Check(
            "tasks PENDING/PROCESSING/FAILED",
            {s: statuses.get(s, 0) for s in ("PENDING", "PROCESSING", "FAILED")},
            "0",
            not any(statuses.get(s, 0) for s in ("PENDING", "PROCESSING", "FAILED")),
        ),
        Check("dead-letter queue depth", dlq, "0", dlq == 0),
        Check("jobs RUNNING with no task queued or leased", stranded, "0", not stranded),
        Check("tasks whose process never ran", never_ran, "0", not never_ran),
        Check(
            "hook re-runs not explained by kills",
            sum(rerun.values()),
            f"<= {rerun_bound}",
            sum(rerun.values()) <= rerun_bound,
        ),
        Check(
            "worker deaths not from an injected fault",
            {"other_exit_codes": other_deaths, "sigkills": sigkilled, "kills_logged": len(kill_lines)},
            "0",
            not other_deaths
            and (sigkilled == len(kill_lines) if in_flight == 1 else sigkilled <= len(kill_lines)),
        ),
        Check(
            "SIGTERM stops not exiting 0",
            {"exit_codes": bad_stops, "hung": hung},
            "0",
            not bad_stops and not hung,
        ),
    ]
    return stats, checks


# ------------------------------------------------------------------------------ report


def compact(value: Any) -> str:
    """A list by its length, a mapping as ``k=v`` pairs (nested ones flattened), else str."""
    if isinstance(value, list):
        return str(len(value))
    if isinstance(value, dict):
        return " ".join(f"{k}={compact(v) if not isinstance(v, dict) else v or 0}" for k, v in value.items())
    return str(value)


def render(report: dict[str, Any]) -> str:
    stats, timings = report["stats"], report["timings"]
    rows: list[tuple[str, str, str]] = []
    for point, n in stats["kills_per_boundary"].items():
        rows.append((f"kills at {point}", str(n), ""))
    rows += [
        ("kills total", str(stats["kills_total"]), ""),
        ("worker restarts", str(stats["worker_restarts"]), ""),
        ("redeliveries (receive count > 1)", str(stats["redeliveries_receive_count_gt_1"]), ""),
        ("re-claims (kw_tasks attempts - 1)", str(stats["reclaims_attempts_minus_1"]), ""),
        ("duplicates suppressed (already DONE)", str(stats["duplicates_suppressed_already_done"]), ""),
        ("resumed at fan-out (result existed)", str(stats["resumed_at_fan_out"]), ""),
        ("deferred: held by another worker", str(stats["held_by_another_worker"]), ""),
        ("hook re-runs after a kill", str(stats["hook_reruns_after_kill"]), ""),
        ("result objects / versions", f"{stats['result_objects']} / {stats['result_versions']}", ""),
        ("leftover work-queue messages", str(stats["leftover_work_messages"]), ""),
    ]
    for check in report["checks"]:
        value = check["value"]
        shown = compact(value)
        rows.append(
            (check["name"], shown[:60], ("ok" if check["ok"] else "FAIL") + f" (want {check['expected']})")
        )
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    cfg = report["config"]
    lines = [
        f"chaos run: {cfg['jobs']} jobs x fan-out {cfg['fanout']}, {cfg['workers']} workers/step, "
        f"fault rate {cfg['rate']} at {len(POINTS)} points, seed {cfg['seed']}",
        "-" * (width + vwidth + 30),
    ]
    lines += [f"{name:<{width}}  {value:>{vwidth}}  {verdict}".rstrip() for name, value, verdict in rows]
    lines.append("-" * (width + vwidth + 30))
    lines += [f"WARNING: {w}" for w in report["warnings"]]
    lines.append(
        "timings: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        + f"  =>  {'PASS' if report['ok'] else 'FAIL'}"
    )
    return "\n".join(lines)


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
    parser.add_argument("--timeout", type=float, default=150, help="seconds to wait for every job")
    parser.add_argument("--drain", type=float, default=30, help="seconds to let queues drain afterwards")
    parser.add_argument("--seed", type=int, default=None, help="seed the workers' fault draws")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, markers)")
    args = parser.parse_args(argv)
    if min(args.jobs, args.fanout, args.workers, args.concurrency, args.batch_size) < 1:
        parser.error("--jobs, --fanout, --workers, --concurrency and --batch-size must be >= 1")
    if args.jobs * (args.fanout + 2) > 600:
        parser.error("keep jobs x (fanout + 2) <= 600: moto slows down on deep queues")
    return args


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    began = time.monotonic()
    timings: dict[str, float] = {}
    stack = new_stack(tmp, *STEPS)
    for step in STEPS:
        stack.sqs.set_queue_attributes(
            QueueUrl=stack.queues[step], Attributes={"VisibilityTimeout": str(QUEUE_VISIBILITY)}
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
            "timeout": args.timeout,
            "seed": args.seed,
            "visibility_timeout": QUEUE_VISIBILITY,
            "lease_seconds": LEASE_SECONDS,
            "max_attempts": MAX_ATTEMPTS,
        },
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "stats": stats,
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
