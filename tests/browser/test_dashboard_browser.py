"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium.

A new user's folder runs ``kombu-worker demo`` (embedded defaults) and a job that fails for
good, then ``kombu-worker dashboard`` as a subprocess. The browser checks the job list, the
task tree and its states, the result thumbnail, the queue counts, and redrives the dead
letter from the page; a running worker consumes it, and the open job page turns DONE by
itself (htmx polling). It saves the job page's screenshot as docs/dashboard.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.browser.chromium import chromium_driver, free_port, wait_until

REPO = Path(__file__).parents[2]
SCREENSHOT = REPO / "docs" / "dashboard.png"
HOOKS = '''
from kombu_worker_sdk import PermanentError, WorkerHooks


class NeedsInputHooks(WorkerHooks):
    """Fails for good until its input exists: the dead letter a person redrives once fixed."""

    def load_pipeline(self, ctx):
        return None

    def process(self, ctx, msg):
        try:
            data = ctx.storage.read(msg["input_uri"])
        except Exception as exc:
            raise PermanentError(f"input not ready: {exc}") from exc
        return {"result": {"bytes": len(data)}, "metrics": {}}

    def publish_next(self, ctx, msg, outputs):
        return []
'''


def _kw(folder: Path, *args: str, **popen: Any) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kombu_worker_sdk.runner",
        "--data-dir",
        str(folder / ".kombu-worker/demo"),
        *args,
    ]


def _env(folder: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "PYTHONPATH": f"{folder}{os.pathsep}{REPO}",
        "KOMBU_WORKER_ALLOWED_BUCKETS": '["demo"]',
        "KOMBU_WORKER_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, Any]]:
    servers.require_module("selenium")
    servers.require_module("cv2")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        msg = "chromium/chromedriver missing: scripts/test.sh installs them"
        pytest.fail(msg) if servers.in_ci() else pytest.skip(msg)
    env = _env(tmp_path)
    demo = subprocess.run(
        [sys.executable, "-m", "kombu_worker_sdk.runner", "demo"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "hooks.py").write_text(HOOKS)
    send = subprocess.run(
        _kw(tmp_path, "send", "--job-id", "failing-job", "--input-uri", "s3://demo/inputs/later.txt",
            "--output-prefix", "s3://demo/jobs/failing-job/root/", "--queue", "needs-input"),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert send.returncode == 0, send.stderr
    procs = []
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        procs.append(
            subprocess.Popen(
                _kw(tmp_path, "--hooks", "service.hooks:NeedsInputHooks", "--queue", "needs-input"),
                cwd=tmp_path,
                env=env,
                stdout=(logs / "worker.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        port = free_port()
        procs.append(
            subprocess.Popen(
                _kw(tmp_path, "dashboard", "--port", str(port)),
                cwd=tmp_path,
                env=env,
                stdout=(logs / "dashboard.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(base + "/healthz"), 60, "the dashboard to answer")
        yield {"base": base, "folder": tmp_path, "demo_out": demo.stdout, "logs": logs}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_the_dashboard_in_a_real_browser(site: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    base = site["base"]
    demo_job = next(w for w in site["demo_out"].split() if w.startswith("demo-") and w.endswith(":"))[:-1]
    with chromium_driver(site["folder"] / "chromium-profile") as driver:
        # The job list: the demo job DONE, the failing job FAILED (once its worker gave up).
        driver.get(base + "/jobs")
        wait_until(lambda: _row_state(driver, "failing-job") == "FAILED", 120, "the failing job to fail")
        assert _row_state(driver, demo_job) == "DONE"
        counts = {
            e.get_attribute("data-state"): e.get_attribute("data-count")
            for e in driver.find_elements(By.CSS_SELECTOR, "#job-counts [data-state]")
        }
        assert counts == {"RUNNING": "0", "DONE": "1", "FAILED": "1", "CANCELLED": "0"}

        # The demo job's tree: detection → one analysis per face → completion, all DONE.
        driver.get(f"{base}/jobs/{demo_job}")
        nodes = driver.find_elements(By.CSS_SELECTOR, "#tree svg a.node")
        names = {n.get_attribute("data-task").removeprefix(demo_job + "-") for n in nodes}
        assert {"detection", "completion"} <= names and any(n.startswith("analysis-") for n in names)
        assert {n.get_attribute("data-state") for n in nodes} == {"DONE"}
        edges = driver.find_elements(By.CSS_SELECTOR, "#tree svg line.edge")
        assert len(edges) == len(nodes) - 1 + (len(nodes) - 3)  # fan-out, plus fan-in into completion
        thumb = driver.find_element(By.CSS_SELECTOR, "img.thumb[data-name='result.png']")
        wait_until(
            lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumb),
            30,
            "the thumbnail",
        )
        assert driver.execute_script("return arguments[0].naturalWidth", thumb) > 100
        SCREENSHOT.parent.mkdir(exist_ok=True)
        driver.set_window_size(1280, 1000)
        assert driver.save_screenshot(str(SCREENSHOT))

        # Queues: the dead letter is counted, the demo's queues are empty.
        driver.get(base + "/queues")
        assert _queue(driver, "needs-input-dlq") == "1"
        assert _queue(driver, "detection") == "0" and _queue(driver, "completion-dlq") == "0"

        # The failing job's page stays open in a first tab, FAILED.
        driver.get(base + "/jobs/failing-job")
        assert driver.find_element(By.ID, "job-state").get_attribute("data-state") == "FAILED"
        job_tab = driver.current_window_handle

        # Fix the input, then redrive the dead letter from the page in a second tab.
        later = site["folder"] / ".kombu-worker/demo/storage/demo/inputs/later.txt"
        later.write_text("here now")
        driver.switch_to.new_window("tab")
        driver.get(base + "/dead-letters?queue=needs-input&live=0")
        row = driver.find_element(By.CSS_SELECTOR, "#dead-letters tr[data-task='failing-job-root']")
        assert "input not ready" in row.text
        row.find_element(By.CSS_SELECTOR, "button.redrive").click()
        wait_until(
            lambda: driver.find_elements(By.ID, "moved"), 30, "the redrive", lambda: driver.page_source
        )
        assert "redrove 1 message(s)" in driver.find_element(By.ID, "moved").text

        # The worker consumes it; the open job page turns DONE with no reload.
        driver.switch_to.window(job_tab)
        wait_until(
            lambda: driver.find_element(By.ID, "job-state").get_attribute("data-state") == "DONE",
            120, "the redriven job to be DONE on the open page",
        )  # fmt: skip
        assert driver.execute_script("return performance.getEntriesByType('navigation').length") == 1
        driver.get(base + "/workers")
        assert "service.hooks:NeedsInputHooks" in driver.find_element(By.ID, "workers").text


def _row_state(driver: Any, job_id: str) -> str | None:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f"#jobs tr[data-job='{job_id}']")
    return rows[0].get_attribute("data-state") if rows else None


def _queue(driver: Any, name: str) -> str:
    from selenium.webdriver.common.by import By

    value: str = driver.find_element(By.CSS_SELECTOR, f"#queues tr[data-queue='{name}']").get_attribute(
        "data-visible"
    )
    return value
