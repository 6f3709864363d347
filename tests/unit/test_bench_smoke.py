"""Smoke test for ``scripts/bench.py``: a tiny section-a run writes the JSON and chart it promises.

No timing is checked: the numbers depend on the machine. Only the shape of the output is.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import servers

REPO = Path(__file__).parents[2]
BENCH = REPO / "scripts" / "bench.py"


@pytest.mark.slow
def test_quick_overhead_section_writes_json_and_chart(tmp_path: Path) -> None:
    for module in ("celery", "matplotlib", "psutil", "sqlalchemy"):  # the bench extra
        servers.require_module(module)
    out = tmp_path / "bench-out"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--only", "a", "--messages", "200", "--out-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    data = json.loads((out / "bench.json").read_text())
    assert {"meta", "targets", "table", "a"} <= set(data)
    assert set(data) & {"b", "c", "d", "e", "f"} == set()  # --only a
    section = data["a"]
    assert section["transport"] == "memory://"
    assert section["messages"] == 200
    for key in ("kombu_worker_vs_bare", "kombu_worker_vs_celery", "targets", "setup"):
        assert key in section
    consumers = section["consumers"]
    assert set(consumers) == {
        "bare_kombu",
        "kombu_worker",
        "kombu_worker_files",
        "celery",
        "celery_file_backend",
        "celery_sqlite_backend",
    }
    for figures in consumers.values():
        assert {"rate", "rates", "us_per_message", "wall_s", "processed"} <= set(figures)
        assert math.isfinite(figures["rate"]) and figures["rate"] > 0
    # the fair Celery rows kept a result per message in their backend, as they are timed for
    for consumer in ("celery_file_backend", "celery_sqlite_backend"):
        assert consumers[consumer]["results_stored"] == consumers[consumer]["processed"] == [200]
    assert "kombu-worker / celery" in data["table"]
    assert "kombu-worker files / celery file backend" in data["table"]
    assert "kombu-worker / celery" in proc.stdout
    assert (out / "bench.png").stat().st_size > 0


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--only", "z", "--out-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown section" in proc.stderr


@pytest.mark.slow
def test_device_duty_section_reports_every_consumer_and_prints_the_duty_line_last(tmp_path: Path) -> None:
    for module in ("celery", "matplotlib", "psutil"):  # the bench extra
        servers.require_module(module)
    out = tmp_path / "bench-out"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--only",
            "f",
            "--device-backlog",
            "8",
            "--repeats",
            "1",
            "--out-dir",
            str(out),
            "--no-chart",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert re.fullmatch(r"f: device duty at batch 8: \d+\.\d%", proc.stdout.strip().splitlines()[-1])

    f = json.loads((out / "bench.json").read_text())["f"]
    assert set(f["runs"]) == {
        "kombu_worker_b1",
        "kombu_worker_b8",
        "kombu_worker_b32",
        "celery_solo",
        "celery_threads_8",
    }
    assert f["repeats"] == 1
    for name, run in [*f["runs"].items(), ("moto", f["moto"])]:
        assert run["processed"] == 8, name  # the whole backlog, well inside the time cap
        assert run["items"] == 8, name  # each message reached the device once
        assert 0 < run["duty"] <= 1, name
    # the same per-message work on both sides: an idempotency check, an input read, two writes
    for name in ("kombu_worker_b1", "celery_solo"):
        requests = f["runs"][name]["storage_requests"]
        inputs = requests.get("read", 0) + requests.get("open", 0)  # the SDK may prefetch by streaming
        assert requests["find_result"] == 8 and inputs == 8 and requests["put"] == 16, name
    assert f["runs"]["kombu_worker_b8"]["mean_batch"] > 1  # micro-batches reached the device
    # the real clients, through the proxies: per message one listing, one input read, two writes
    assert f["moto"]["s3_requests"] == {"GET bucket": 8, "GET object": 8, "PUT object": 16}
    assert f["moto"]["sqs_requests"]["ReceiveMessage"] >= 1
