"""The chaos run's report: recovery times after each kill, and the rendered table."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from chaoslib.checks import kill_records
from chaoslib.workers import Supervisor
from kombu_worker_sdk.worker.faults import POINTS
from tests.integration.stack import Stack

#: Slack the recovery target allows on top of one visibility timeout and the step itself.
RECOVERY_SLACK_SECONDS = 10.0


def recovery(
    stack: Stack, sup: Supervisor, faults_log: Path, *, visibility: int, step_seconds: float
) -> dict[str, Any]:
    """Seconds from each kill to its task's DONE elsewhere, for every claim a kill left behind.

    Kills before a claim (after_receive) or after the commit (the task already DONE)
    leave no claim: their message comes back after the visibility timeout, lease or not.
    When the worker that picked a task up was killed too, the earlier kill's recovery ended
    at that pick-up: only the task's last kill is timed to DONE (``superseded`` counts the rest;
    ``chain_max_seconds`` is the longest time from a first kill to DONE).
    """
    killed_at = {int(row[1]): float(row[2]) for row in kill_records(faults_log) if len(row) >= 3}
    done_at = dict(stack.query("SELECT task_id, updated_at FROM kw_tasks WHERE status = 'DONE'"))
    kills_by_task: dict[str, list[float]] = {}
    for death in sup.killed:
        for task in death.claims:
            kills_by_task.setdefault(task, []).append(killed_at.get(death.pid, death.noticed_at))
    samples, chains, unrecovered = [], [], []
    for task, times in kills_by_task.items():
        if task not in done_at:
            unrecovered.append(task)
            continue
        samples.append(round(float(done_at[task]) - max(times), 2))
        chains.append(round(float(done_at[task]) - min(times), 2))
    target = visibility + step_seconds + RECOVERY_SLACK_SECONDS
    return {
        "kills_leaving_a_claim": sum(1 for d in sup.killed if d.claims),
        "kills_leaving_no_claim": sum(1 for d in sup.killed if not d.claims),
        "claims_recovered": len(samples),
        "claims_unrecovered": sorted(unrecovered),
        "superseded": sum(len(t) for t in kills_by_task.values()) - len(kills_by_task),
        "p50_seconds": round(statistics.median(samples), 2) if samples else None,
        "max_seconds": max(samples) if samples else None,
        "chain_max_seconds": max(chains) if chains else None,
        "target_max_seconds": target,
        "within_target": bool(samples) and max(samples) <= target and not unrecovered,
        "samples_seconds": sorted(samples),
        "visibility_timeout": visibility,
    }


def recovery_line(rec: dict[str, Any]) -> str:
    if not rec["claims_recovered"] and not rec["claims_unrecovered"]:
        return f"recovery: no kill left a claim behind (visibility timeout {rec['visibility_timeout']}s)"
    verdict = "within target" if rec["within_target"] else "OVER TARGET"
    return (
        f"recovery (kill -> DONE elsewhere, {rec['claims_recovered']} tasks, "
        f"visibility timeout {rec['visibility_timeout']}s): p50 {rec['p50_seconds']}s, "
        f"max {rec['max_seconds']}s; target max <= {rec['target_max_seconds']:.0f}s: {verdict}"
        + (
            f" ({rec['superseded']} earlier kill(s) of a re-killed task not timed; "
            f"first kill to DONE at most {rec['chain_max_seconds']}s)"
            if rec["superseded"]
            else ""
        )
        + (f"; never DONE: {rec['claims_unrecovered']}" if rec["claims_unrecovered"] else "")
    )


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
    lines.append(recovery_line(report["recovery"]))
    lines += [f"WARNING: {w}" for w in report["warnings"]]
    lines.append(
        "timings: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        + f"  =>  {'PASS' if report['ok'] else 'FAIL'}"
    )
    return "\n".join(lines)
