"""The dashboard shows a cancelled job: its own count and filter, its state on the job page."""

from __future__ import annotations

import re
from pathlib import Path

from tests import servers

servers.require_module("starlette")
servers.require_module("httpx")

from starlette.testclient import TestClient  # noqa: E402

from kombu_worker_sdk import Client, WorkerConfig  # noqa: E402
from kombu_worker_sdk.dashboard.app import create_app  # noqa: E402
from kombu_worker_sdk.dashboard.data import DashboardData  # noqa: E402

BODY = {"input_uri": "s3://b/in", "output_prefix": "s3://b/o/"}


def test_a_cancelled_job_has_its_count_filter_badges_and_tree_colour(tmp_path: Path) -> None:
    config = WorkerConfig(data_dir=tmp_path / "data", broker_url="filesystem://", queue="work")
    with Client(config) as client:
        client.submit(None, [{**BODY, "job_id": "gone"}, {**BODY, "job_id": "gone"}]).cancel()
        client.submit(None, {**BODY, "job_id": "kept"})
    web = TestClient(create_app(DashboardData(config)), base_url="http://127.0.0.1")
    listed = web.get("/jobs?state=CANCELLED").text
    assert 'data-state="CANCELLED" data-count="1"' in listed
    assert re.findall(r'<tr data-job="([^"]+)" data-state="([^"]+)"', listed) == [("gone", "CANCELLED")]
    page = web.get("/jobs/gone").text
    assert 'id="job-state" data-state="CANCELLED"' in page
    assert page.count('class="node state-CANCELLED"') == 2  # both tasks in the tree
    assert page.count('<section class="task state-CANCELLED"') == 2
    css = web.get("/static/dashboard.css").text
    assert ".state-CANCELLED.badge" in css and "node.state-CANCELLED rect" in css
