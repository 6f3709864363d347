"""A crashed or twice-signalled worker's task is picked up within the visibility timeout.

Real worker subprocesses on moto's SQS and PostgreSQL. The step blocks on a gate file
until the test releases it, so a worker can be killed mid-task at a known point. The
input queue has a redrive policy with ``maxReceiveCount`` 2: a held copy that went back
through SQS to wait would be dead-lettered, so the task ending DONE proves it did not.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.integration.stack import Stack, new_stack

pytestmark = pytest.mark.integration

VISIBILITY = 3  # seconds: short, so a dead worker's message comes back quickly


def gated(stack: Stack, task: str, tmp: Path) -> dict[str, Any]:
    (tmp / "started").mkdir(exist_ok=True)
    (tmp / "done").mkdir(exist_ok=True)
    return {
        "job_id": task.split("-")[0],
        "task_id": task,
        "input_uri": f"s3://{stack.bucket}/in",
        "output_prefix": f"s3://{stack.bucket}/jobs/{task}/",
        "params": {
            "step": "leaf",
            "gate": str(tmp / "gate"),
            "started_dir": str(tmp / "started"),
            "marker_dir": str(tmp / "done"),
        },
    }


@pytest.fixture
def redrive(tmp_path: Path) -> Any:
    """Queues with a short visibility timeout and a redrive policy of 2 receives."""
    stack = new_stack(tmp_path, "in", "next")
    stack.set_redrive(2, VisibilityTimeout=str(VISIBILITY))
    yield stack
    stack.kill_workers()


def short_visibility_env(stack: Stack) -> dict[str, str]:
    return stack.env(KOMBU_WORKER_VISIBILITY_TIMEOUT=str(VISIBILITY), PYTHONUNBUFFERED="1")


def count(folder: Path) -> int:
    return sum(1 for _ in folder.iterdir())


def metrics_attempt(stack: Stack, task: str) -> int:
    body = stack.s3.get_object(Bucket=stack.bucket, Key=f"jobs/{task}/metrics.json")["Body"].read()
    attempt: int = json.loads(body)["sdk"]["attempt"]
    return attempt


def finish(stack: Stack, task: str) -> None:
    wait_for(lambda: stack.task_status(task) == "DONE", timeout=90, interval=0.2)
    wait_for(lambda: stack.depth("in") == 0, timeout=30, interval=0.2)  # every copy acked
    assert stack.stop_workers()[-1] == 0


def test_sigkilled_workers_task_is_done_by_another_and_never_dead_lettered(
    redrive: Stack, tmp_path: Path
) -> None:
    stack = redrive
    stack.send("in", gated(stack, "ck1-a", tmp_path))
    first = stack.start_worker(env=short_visibility_env(stack))
    wait_for(lambda: count(tmp_path / "started") == 1, timeout=60, interval=0.05)
    first.send_signal(signal.SIGKILL)  # mid-task, as a spot reclaim or an OOM kill would
    assert first.wait(10) == -signal.SIGKILL
    assert stack.task_status("ck1-a") == "PROCESSING", "the dead worker's claim is left behind"
    (tmp_path / "gate").touch()
    stack.start_worker(env=short_visibility_env(stack))
    finish(stack, "ck1-a")
    assert count(tmp_path / "done") == 1
    assert stack.query("SELECT attempts FROM kw_tasks WHERE task_id = 'ck1-a'") == [(2,)]
    assert metrics_attempt(stack, "ck1-a") == 2, "one receive by the dead worker, one by the next"
    assert stack.depth("dlq") == 0


def test_a_copy_held_while_the_holder_runs_waits_without_counting_receives(
    redrive: Stack, tmp_path: Path
) -> None:
    stack = redrive
    body = gated(stack, "ck2-a", tmp_path)
    stack.send("in", body)
    holder = stack.start_worker(env=short_visibility_env(stack))
    wait_for(lambda: count(tmp_path / "started") == 1, timeout=60, interval=0.05)
    stack.start_worker(env=short_visibility_env(stack))
    stack.send("in", body)  # a duplicate copy (at-least-once delivery, or a republished child)
    # The second worker finds the task held and looks again as each of the holder's leases
    # would end: several looks, none of them a receive.
    wait_for(lambda: stack.logs().count("task is held by another worker") >= 3, timeout=60, interval=0.2)
    holder.send_signal(signal.SIGKILL)
    assert holder.wait(10) == -signal.SIGKILL
    (tmp_path / "gate").touch()
    finish(stack, "ck2-a")
    assert count(tmp_path / "done") == 1
    assert stack.query("SELECT attempts FROM kw_tasks WHERE task_id = 'ck2-a'") == [(2,)]
    assert stack.depth("dlq") == 0, "held looks did not raise ApproximateReceiveCount"


def test_two_signals_hand_the_task_back_before_exiting(stack: Stack, tmp_path: Path) -> None:
    stack.send("in", gated(stack, "ck3-a", tmp_path))
    env = stack.env(PYTHONUNBUFFERED="1")  # shipped visibility timeout and grace period
    first = stack.start_worker(env=env)
    wait_for(lambda: count(tmp_path / "started") == 1, timeout=60, interval=0.05)
    first.send_signal(signal.SIGTERM)
    wait_for(lambda: "received SIGTERM" in stack.logs(), timeout=30, interval=0.05)
    first.send_signal(signal.SIGTERM)
    assert first.wait(20) == 130
    # Handed back before the exit: PENDING at once, not PROCESSING until the lease ends,
    # and the message visible at once, not after the visibility timeout.
    assert stack.task_status("ck3-a") == "PENDING"
    assert stack.depth("in") == 1 and visible(stack) == 1
    (tmp_path / "gate").touch()
    stack.start_worker(env=env)
    finish(stack, "ck3-a")
    assert count(tmp_path / "done") == 1
    assert stack.query("SELECT attempts FROM kw_tasks WHERE task_id = 'ck3-a'") == [(2,)]


def visible(stack: Stack) -> int:
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=stack.queues["in"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])
