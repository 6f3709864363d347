"""A CI-sized chaos run (``scripts/chaos.py``): workers SIGKILL themselves at every stage
boundary, or hang in the hooks until their hard time limit ends them, while a fan-out / fan-in
pipeline runs on moto and PostgreSQL; nothing may be lost and no result may be written twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import servers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).parents[2]
JOBS, FANOUT = 4, 3


def test_kills_at_every_boundary_lose_nothing_and_write_every_result_once(tmp_path: Path) -> None:
    servers.require_moto()
    servers.require_postgres()
    report_path = tmp_path / "chaos.json"
    # Seeded fault draws (a new seed per worker launch), at a rate that makes ~10 kills likely.
    argv = [
        *(sys.executable, str(REPO / "scripts" / "chaos.py")),
        *("--jobs", str(JOBS), "--fanout", str(FANOUT), "--workers", "2"),
        *("--rate", "0.1", "--seed", "7", "--timeout", "110", "--drain", "15"),
        *("--hang-rate", "0.25", "--time-limit", "2"),  # hangs likely enough to happen in a short run
        *("--visibility-timeout", "3"),  # CI-sized: the shipped 60 s would make every kill cost a minute
        *("--json", str(report_path)),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=200, cwd=REPO, check=False)
    output = done.stdout + done.stderr
    assert report_path.exists(), output
    report = json.loads(report_path.read_text())
    failed = [c for c in report["checks"] if not c["ok"]]
    assert failed == [], output
    assert done.returncode == 0, output

    stats = report["stats"]
    checks = {c["name"]: c["value"] for c in report["checks"]}
    assert checks["jobs lost (not DONE)"] == []
    assert checks["duplicate results (result.* with >1 version)"] == []
    assert checks["fan-in (join) not exactly once"] == []
    assert checks["tasks PENDING/PROCESSING/FAILED"] == {"PENDING": 0, "PROCESSING": 0, "FAILED": 0}
    assert checks["dead-letter queue depth"] == 0
    # tests/invariants.py's stranded_jobs, run by chaos.py on the run's own database and queues.
    assert checks["jobs RUNNING with no task queued or leased"] == {}
    # Every task's result exists once: one version each, split + parts + join per job.
    assert stats["result_objects"] == stats["result_versions"] == JOBS * (FANOUT + 2)
    assert all(runs >= 1 for runs in stats["join_process_runs_per_job"].values())
    # The chaos really happened, at several boundaries, and every dead worker came back.
    kills = stats["kills_per_boundary"]
    assert stats["kills_total"] >= 3, kills
    assert sum(1 for n in kills.values() if n) >= 3, kills
    # A hang is never recovered by a visibility timeout (the heartbeat would hold it for ever):
    # every job DONE above means each hang was cut off at the hard limit and retried.
    assert kills["hang_in_hooks"] >= 1, kills
    assert stats["worker_restarts"] >= stats["faulted_processes"] - stats["faults_during_stop"]
    # Every claim a killed worker left behind was DONE elsewhere, and the time was measured.
    recovery = report["recovery"]
    assert recovery["claims_unrecovered"] == []
    assert len(recovery["samples_seconds"]) == recovery["claims_recovered"]
    assert all(seconds >= 0 for seconds in recovery["samples_seconds"])
    assert "recovery" in done.stdout
