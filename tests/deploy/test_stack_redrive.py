"""The step stack's redrive policy, exercised by SQS itself: a message that kills its worker.

The worker dead-letters what fails (test_aws_stack.py); what it can never settle, because the
pod dies on it every time (an OOM on one input), only the queue's RedrivePolicy can move.
The stack sets maxReceiveCount from MaxAttempts, so after MaxAttempts crashes SQS (moto)
moves the message to the stack's dead-letter queue, and the next worker keeps running.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.deploy.cfn import deploy_pipeline, step_env

pytestmark = pytest.mark.integration
HOOKS = "tests.deploy.aws_hooks:StackHooks"


def test_a_message_that_kills_every_worker_is_moved_to_the_dlq_by_the_stacks_redrive_policy(
    tmp_path: Path,
) -> None:
    stack, outputs = deploy_pipeline(tmp_path, max_attempts=2, visibility_timeout=3)
    crashes = tmp_path / "crashes"
    crashes.mkdir()
    env = step_env(stack, outputs["first"])
    try:
        assert stack.cli("db", "upgrade", env=env).returncode == 0
        stack.send(
            "in",
            {
                "job_id": "job-oom",
                "task_id": "oom",
                "input_uri": f"s3://{stack.bucket}/inputs/huge.bin",
                "output_prefix": f"s3://{stack.bucket}/jobs/job-oom/first/",
                "params": {"crash_dir": str(crashes)},
            },
        )
        worker = stack.start_worker(HOOKS, env=env)
        for _ in range(int(outputs["first"]["MaxAttempts"])):
            assert worker.wait(60) == -9  # SIGKILLed by the hook, as the OOM killer would
            worker = stack.start_worker(HOOKS, env=env)
        wait_for(lambda: stack.depth("dlq") == 1, timeout=60, interval=0.2)
        dead = stack.receive_all("dlq")
        assert worker.poll() is None, "the worker after the redrive must keep running"
        assert stack.stop_workers()[-1] == 0
    except subprocess.TimeoutExpired:
        raise AssertionError(stack.logs()) from None
    finally:
        stack.kill_workers()
    assert len(list(crashes.iterdir())) == 2
    assert [json.loads(m["Body"])["task_id"] for m in dead] == ["oom"]
    # The original message, moved by SQS: no dead-letter attributes that the worker would add.
    assert "MessageAttributes" not in dead[0]
    assert int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= 2
    assert stack.depth("in") == 0
