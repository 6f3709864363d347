"""The chaos run's jobs and its checks: what must hold once every job is DONE."""

from __future__ import annotations

import json
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaoslib.workers import FAULT_EXITS, STEPS, Supervisor
from kombu_worker_sdk.worker.faults import HANGS, POINTS
from kombu_worker_sdk.worker.overrun import EXIT_TIME_LIMIT
from tests.integration.stack import Stack
from tests.invariants import sqs_counter, stranded_jobs

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


def unexplained_reruns(folder: Path, killed_pids: set[str]) -> dict[str, int]:
    """Per task, the ``process`` runs that neither wrote the result nor died with their worker.

    Every run of a task but its last must have been cut short by a kill of the process
    it ran in (markers are ``<task_id>.<pid>.<ns>``). This holds whatever the worker ran
    beside it: with the lanes, a kill at any boundary of one message also ends the hooks
    of the batch on the device, and those runs are explained by that kill.
    """
    runs: dict[str, list[tuple[int, str]]] = {}
    for path in folder.iterdir():
        task, pid, ns = path.name.rsplit(".", 2)
        runs.setdefault(task, []).append((int(ns), pid))
    unexplained = {}
    for task, found in runs.items():
        earlier = [pid for _, pid in sorted(found)[:-1]]
        count = sum(1 for pid in earlier if pid not in killed_pids)
        if count:
            unexplained[task] = count
    return unexplained


def kill_records(path: Path) -> list[list[str]]:
    """The faults log as ``[point, pid, unix-time]`` rows (see kombu_worker_sdk/faults.py)."""
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.split() for line in lines if line.strip()]


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
    kill_lines = kill_records(sup.faults_log)
    kills = Counter(line[0] for line in kill_lines)
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
    cut_off = deaths.get(EXIT_TIME_LIMIT, 0)
    other_deaths = {code: n for code, n in deaths.items() if code not in FAULT_EXITS}
    bad_stops = [c for c in stop_codes if c not in (0, *FAULT_EXITS)]
    # ``process`` re-runs only when its worker died after it ran and before the result was
    # written: every earlier run of a task must come from a process that was killed.
    killed_pids = {line[1] for line in kill_lines if len(line) > 1}
    # A hang ends its process with the hard time limit (124) unless a kill got there first.
    sigkill_pids = {line[1] for line in kill_lines if len(line) > 1 and line[0] not in HANGS}
    hung_pids = killed_pids - sigkill_pids
    unexplained = unexplained_reruns(tmp / "markers", killed_pids)
    dlq = stack.depth("dlq")
    leftover = work_depth(stack)
    stranded = stranded_jobs(stack.dsn, sqs_counter(stack.sqs), default_queue=stack.queues["split"])

    stats: dict[str, Any] = {
        "kills_total": len(kill_lines),
        "kills_per_boundary": {point: kills.get(point, 0) for point in POINTS},
        "kills_during_stop": stop_codes.count(-signal.SIGKILL),
        # processes ended by a fault (a hang then a kill in one process is one), and those at stop
        "faulted_processes": len(killed_pids),
        "faults_during_stop": sum(1 for c in stop_codes if c in FAULT_EXITS),
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
            unexplained,
            "0",
            not unexplained,
        ),
        Check(
            "worker deaths not from an injected fault",
            {
                "other_exit_codes": other_deaths,
                "sigkills": sigkilled,
                "time_limit_exits": cut_off,
                "faults_logged": len(kill_lines),
            },
            "0",
            not other_deaths
            # one SIGKILL per killed process (two lanes may both log a kill before it dies),
            # one time-limit exit per process that only hung
            and sigkilled == len(sigkill_pids)
            and cut_off == len(hung_pids),
        ),
        Check(
            "SIGTERM stops not exiting 0",
            {"exit_codes": bad_stops, "hung": hung},
            "0",
            not bad_stops and not hung,
        ),
    ]
    return stats, checks
