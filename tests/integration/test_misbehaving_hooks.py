"""Hooks that hang, leak or get throttled, on SQS (moto) + S3 + PostgreSQL with real workers.

* a hook that hangs in a C call is cut off at its hard time limit: the process exits with
  EXIT_TIME_LIMIT, a restarted worker retries the task, and after ``max_attempts`` the task
  is FAILED with the time-limit error and its message is in the dead-letter queue;
* a hook that leaks makes each worker recycle (exit 0) at ``max_memory_mb``, and across the
  restarts every task runs exactly once;
* a hook throttled by a 429 waits out its Retry-After in-process: no receive is counted
  (the redrive policy would dead-letter a second receive) and no attempt is used.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kombu_worker_sdk.worker.overrun import EXIT_TIME_LIMIT
from tests.conftest import wait_for
from tests.integration.stack import Stack, new_stack

pytestmark = pytest.mark.integration


def message(stack: Stack, task: str, runs: Path, **params: Any) -> dict[str, Any]:
    return {
        "job_id": task.split("-")[0],
        "task_id": task,
        "input_uri": f"s3://{stack.bucket}/in",
        "output_prefix": f"s3://{stack.bucket}/jobs/{task}/",
        "params": {"runs_dir": str(runs), **params},
    }


def runs_of(runs: Path) -> Counter[str]:
    """How many times each task's hook started."""
    return Counter(p.name.split(".")[0] for p in runs.iterdir())


def pids_of(runs: Path, task: str) -> set[str]:
    return {p.name.split(".")[1] for p in runs.iterdir() if p.name.startswith(f"{task}.")}


def task_error(stack: Stack, task: str) -> str:
    rows = stack.query("SELECT error FROM kw_tasks WHERE task_id = %s", task)
    return str(rows[0][0]) if rows else ""


def test_a_hanging_hook_is_cut_off_retried_then_failed_and_dead_lettered(
    stack: Stack, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    stack.send("in", message(stack, "hg1-hang", runs, hang=True))
    stack.send("in", message(stack, "hg1-fine", runs))  # a neighbour, prefetched or not
    env = stack.env(KOMBU_WORKER_TIME_LIMIT_SECONDS="2", KOMBU_WORKER_MAX_ATTEMPTS="2", PYTHONUNBUFFERED="1")
    hooks = "tests.misbehaving_hooks:HangingHooks"

    first = stack.start_worker(hooks, env=env)
    assert first.wait(120) == EXIT_TIME_LIMIT
    assert stack.task_status("hg1-hang") == "PENDING", "attempt 1 recorded, the task handed back"
    assert "TimeLimitExceeded" in task_error(stack, "hg1-hang")

    second = stack.start_worker(hooks, env=env)
    assert second.wait(120) == EXIT_TIME_LIMIT
    assert stack.task_status("hg1-hang") == "FAILED"
    assert "TimeLimitExceeded" in task_error(stack, "hg1-hang")
    assert runs_of(runs)["hg1-hang"] == 2 and len(pids_of(runs, "hg1-hang")) == 2, "one attempt per process"
    letters = stack.receive_all("dlq")
    assert [m["MessageAttributes"]["task_id"]["StringValue"] for m in letters] == ["hg1-hang"]
    assert "TimeLimitExceeded" in letters[0]["MessageAttributes"]["error"]["StringValue"]
    assert "hard time limit of 2s" in stack.logs()

    if stack.task_status("hg1-fine") != "DONE":  # handed back by both cut-off workers: a third runs it
        stack.start_worker(hooks, env=env)
        wait_for(lambda: stack.task_status("hg1-fine") == "DONE", timeout=90, interval=0.2)
        assert stack.stop_workers()[-1] == 0
    assert runs_of(runs)["hg1-fine"] == 1, "the neighbour ran once, whichever worker had it"
    wait_for(lambda: stack.depth("in") == 0, timeout=30, interval=0.2)


def test_a_leaking_hook_recycles_the_worker_and_loses_or_repeats_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    tasks = [f"lk1-{i}" for i in range(7)]
    for task in tasks:
        stack.send("in", message(stack, task, runs, leak_mb=48))
    env = stack.env(KOMBU_WORKER_MAX_MEMORY_MB="200", PYTHONUNBUFFERED="1")
    recycled = []
    for _ in tasks:  # each worker recycles after a few messages: at most one worker per task
        proc = stack.start_worker("tests.misbehaving_hooks:LeakingHooks", env=env)
        wait_for(lambda p=proc: p.poll() is not None or all_done(stack, tasks), timeout=120, interval=0.1)
        if proc.poll() is None:  # the work ran out before the memory did: this one stays up
            break
        recycled.append(proc.returncode)
    assert all_done(stack, tasks)
    wait_for(lambda: stack.depth("in") == 0, timeout=30, interval=0.2)
    assert set(stack.stop_workers()) == {0}, "every recycle, and the last worker's stop, is a clean exit 0"
    assert len(recycled) >= 2
    assert stack.logs().count("recycling (max_memory_mb 200 reached") == len(recycled)
    assert runs_of(runs) == Counter(dict.fromkeys(tasks, 1)), "no message lost, none run twice"
    assert stack.depth("dlq") == 0


def all_done(stack: Stack, tasks: list[str]) -> bool:
    return all(stack.task_status(t) == "DONE" for t in tasks)


class ThrottlingApi:
    """A model API that answers 429 with Retry-After to the first ``throttles`` calls per task."""

    def __init__(self, throttles: int, retry_after: int):
        self.calls: dict[str, list[float]] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                task = self.path.strip("/")
                seen = api.calls.setdefault(task, [])
                seen.append(time.monotonic())
                throttled = len(seen) <= throttles
                body = json.dumps({"task": task}).encode()
                self.send_response(429 if throttled else 200)
                if throttled:
                    self.send_header("Retry-After", str(retry_after))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def one_receive(tmp_path: Path) -> Any:
    """Queues whose redrive policy dead-letters a message on its second receive."""
    stack = new_stack(tmp_path, "in", "next")
    stack.set_redrive(1)
    yield stack
    stack.kill_workers()


def test_a_throttled_hook_honours_retry_after_without_using_an_attempt(
    one_receive: Stack, tmp_path: Path
) -> None:
    stack, runs = one_receive, tmp_path / "runs"
    runs.mkdir()
    api = ThrottlingApi(throttles=2, retry_after=1)
    try:
        stack.send("in", message(stack, "th1-a", runs, api=api.url))
        stack.start_worker("tests.misbehaving_hooks:ApiHooks", env=stack.env(PYTHONUNBUFFERED="1"))
        wait_for(lambda: stack.task_status("th1-a") == "DONE", timeout=90, interval=0.2)
        wait_for(lambda: stack.depth("in") == 0, timeout=30, interval=0.2)
        assert stack.stop_workers()[-1] == 0
    finally:
        api.server.shutdown()
    calls = api.calls["th1-a"]
    assert len(calls) == 3, "two 429s, then the answer"
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(calls)), "each retry waited out Retry-After"
    assert len(pids_of(runs, "th1-a")) == 1, "held in-process, not redelivered to another worker"
    body = stack.s3.get_object(Bucket=stack.bucket, Key="jobs/th1-a/metrics.json")["Body"].read()
    assert json.loads(body)["sdk"]["attempt"] == 1, "throttles used no attempt"
    assert stack.depth("dlq") == 0, "one receive only: the redrive policy never fired"
    assert stack.logs().count("no attempt used") == 2
