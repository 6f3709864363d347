"""The dashboard's pages over HTTP on SQS (moto's server), S3 and PostgreSQL.

A real worker runs one job that writes result.png and one that fails for good; a real
``kombu-worker dashboard`` subprocess serves the pages. Checks: the job list, presigned
S3 thumbnails, GetQueueAttributes counts, a dead-letter page that leaves the message
in the queue, and a redrive through the page's form (CSRF cookie and field).
"""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest

from tests.browser.chromium import free_port
from tests.conftest import wait_for
from tests.integration.stack import RUNNER, Stack


def _task(stack: Stack, job: str, **params: Any) -> dict[str, Any]:
    return {
        "job_id": job,
        "task_id": f"{job}-root",
        "input_uri": f"s3://{stack.bucket}/in.txt",
        "output_prefix": f"s3://{stack.bucket}/jobs/{job}/root/",
        "params": {"step": "last", **params},
    }


class Browser:
    """urllib with a cookie jar: enough to follow the dashboard's form like a browser."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=30) as response:
            return str(response.read().decode())

    def post(self, path: str, form: dict[str, str]) -> str:
        data = urllib.parse.urlencode(form).encode()
        with self.opener.open(self.base + path, data=data, timeout=60) as response:
            return str(response.read().decode())


@pytest.fixture
def dashboard(stack: Stack) -> Iterator[Browser]:
    port = free_port()
    log = (stack.tmp / "dashboard.log").open("w")
    proc = subprocess.Popen(
        [*RUNNER, "dashboard", "--port", str(port)], env=stack.env(), stdout=log, stderr=log
    )
    browser = Browser(f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: _answers(browser), timeout=60, interval=0.1)
        yield browser
    finally:
        proc.terminate()
        proc.wait(20)


def _answers(browser: Browser) -> bool:
    try:
        return browser.get("/healthz") == "ok"
    except OSError:
        return False


def test_dashboard_pages_on_sqs_s3_and_postgres(stack: Stack, dashboard: Browser) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key="in.txt", Body=b"x")
    stack.cli("db", "upgrade")
    stack.send("in", _task(stack, "good-job", blob=True))
    stack.send("in", _task(stack, "bad-job", permanent=True))
    worker = stack.start_worker("tests.sample_hooks:StepHooks")
    wait_for(lambda: stack.job("bad-job") and stack.job("bad-job")[0] == "FAILED", timeout=90, interval=0.2)
    wait_for(lambda: stack.job("good-job") and stack.job("good-job")[0] == "DONE", timeout=90, interval=0.2)
    wait_for(lambda: stack.depth("dlq") == 1, timeout=30, interval=0.2)

    jobs = dashboard.get("/jobs")
    assert re.search(r'data-job="good-job" data-state="DONE"', jobs)
    assert re.search(r'data-job="bad-job" data-state="FAILED"', jobs)
    assert 'data-state="FAILED" data-count="1"' in jobs
    password = urllib.parse.urlsplit(stack.dsn).password
    assert not password or password not in jobs

    page = dashboard.get("/jobs/good-job")
    (src,) = re.findall(r'<img class="thumb" src="([^"]+)"', page)
    src = unescape(src)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(src).query)
    assert {"Signature", "Expires"} <= set(query) or {"X-Amz-Signature", "X-Amz-Expires"} <= set(query)
    with urllib.request.urlopen(src, timeout=30) as image:  # the presigned URL itself, from S3
        assert image.read().startswith(b"\x89PNG")

    queues = dashboard.get("/queues")
    dlq = re.search(rf'data-queue="{re.escape(stack.queues["dlq"])}"[^>]*data-visible="(\d+)"', queues)
    assert dlq is not None and dlq.group(1) == "1"

    quoted = urllib.parse.quote(stack.queues["in"], safe="")
    letters = dashboard.get(f"/dead-letters?queue={quoted}")
    assert 'data-task="bad-job-root"' in letters and "this input can never work" in letters
    wait_for(lambda: stack.depth("dlq") == 1, timeout=30, interval=0.2)  # looked at, not consumed
    assert stack.depth("in") == 0

    # The worker's heartbeat row, upserted into PostgreSQL's kw_workers.
    workers = dashboard.get("/workers")
    assert "tests.sample_hooks:StepHooks" in workers and stack.queues["in"] in workers

    worker.terminate()
    worker.wait(30)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', letters)
    assert csrf is not None
    moved = dashboard.post(
        "/dead-letters/redrive", {"csrf_token": csrf.group(1), "queue": stack.queues["in"], "all": "1"}
    )
    assert "redrove 1 message(s)" in moved
    assert stack.depth("dlq") == 0 and stack.depth("in") == 1
    (back,) = stack.receive_all("in")
    assert '"bad-job-root"' in back["Body"]
