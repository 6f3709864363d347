"""The face-redaction example end to end: embedded defaults, and three workers on SQS/S3/PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kombu_worker_sdk.examples.faces import sample_image
from kombu_worker_sdk.examples.faces.verify import check_redaction
from kombu_worker_sdk.state import open_state
from tests import servers
from tests.integration.stack import REPO

servers.require_module("cv2")


def test_demo_on_embedded_defaults(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "kombu_worker_sdk.runner", "demo", "--data-dir",
                             str(tmp_path), "--jobs", "2"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("demo finished: every job DONE")
    pngs = sorted(tmp_path.glob("storage/demo/jobs/*/completion/result.png"))
    assert len(pngs) == 2 and all(str(p) in result.stdout for p in pngs)
    state = open_state(f"sqlite:///{tmp_path / 'state.db'}")
    for png in pngs:
        job_id = png.parents[1].name
        tasks = state.job_tasks(job_id)
        assert sum("-analysis-" in t.task_id for t in tasks) == 1
        assert sum(t.task_id.endswith("-completion") for t in tasks) == 1
        assert state.get_job(job_id).status == "DONE"  # type: ignore[union-attr]
        detection = json.loads((png.parents[1] / "detection" / "result.json").read_text())
        check_redaction(sample_image(), png.read_bytes(), detection["boxes"])


@pytest.mark.integration
def test_three_workers_on_sqs_s3_and_postgres() -> None:
    servers.require_moto()
    servers.require_postgres()
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "faces_on_sqs.py"), "--jobs", "2"],
                            capture_output=True, text=True, timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("job ")]
    assert len(lines) == 2 and all("('DONE', 3, 3, 0)" in line and "'boxes': 1" in line for line in lines)
    assert "workers stopped with exit codes [0, 0, 0]" in result.stdout
