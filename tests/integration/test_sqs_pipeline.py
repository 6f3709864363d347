"""The real kombu-worker CLI against moto's SQS/S3 and PostgreSQL (issue: production backends)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.integration.stack import Stack, new_stack

pytestmark = pytest.mark.integration


def split(stack: Stack, job: str, parts: int = 3, **params: Any) -> dict[str, Any]:
    return {
        "job_id": job,
        "task_id": f"{job}-split",
        "input_uri": f"s3://{stack.bucket}/in.txt",
        "output_prefix": f"s3://{stack.bucket}/jobs/{job}/split/",
        "params": {"step": "split", "parts": parts, **params},
    }


def test_raw_json_message_ends_in_s3_postgres_and_next_queue(stack: Stack) -> None:
    assert stack.cli("db", "upgrade").returncode == 0
    stack.send("in", split(stack, "r1"))  # plain boto3, as any producer would
    stack.start_worker()
    wait_for(lambda: stack.task_status("r1-split") == "DONE", timeout=60, interval=0.2)
    assert stack.stop_workers() == [0]
    keys = stack.keys("jobs/r1/split/")
    assert set(keys) == {"jobs/r1/split/result.json", "jobs/r1/split/metrics.json"}
    obj = stack.s3.get_object(Bucket=stack.bucket, Key="jobs/r1/split/result.json")
    assert obj["ContentType"] == "application/json" and json.loads(obj["Body"].read())["step"] == "split"
    rows = stack.query("SELECT task_id, status, parent_task_id FROM kw_tasks ORDER BY task_id")
    assert rows == [
        ("r1-part-000", "PENDING", "r1-split"),
        ("r1-part-001", "PENDING", "r1-split"),
        ("r1-part-002", "PENDING", "r1-split"),
        ("r1-split", "DONE", None),
    ]
    children = stack.receive_all("next")
    bodies = [json.loads(m["Body"]) for m in children]
    assert sorted(b["task_id"] for b in bodies) == ["r1-part-000", "r1-part-001", "r1-part-002"]
    assert all(
        set(b) == {"job_id", "task_id", "input_uri", "output_prefix", "params", "trace_id"} for b in bodies
    )
    assert len({b["trace_id"] for b in bodies}) == 1
    assert stack.depth("in") == 0 and stack.depth("dlq") == 0


def test_three_step_pipeline_with_fan_out_and_fan_in_ends_done(stack: Stack) -> None:
    stack.send("in", split(stack, "p1", parts=5))
    stack.start_worker(env=stack.env("in", "next"))
    stack.start_worker(env=stack.env("next", "last"), log_name="parts")
    stack.start_worker(env=stack.env("last", None), log_name="join")
    wait_for(lambda: (stack.job("p1") or ("",))[0] == "DONE", timeout=90, interval=0.3)
    assert stack.stop_workers() == [0, 0, 0]
    assert stack.job("p1") == ("DONE", 7, 7, 0)
    assert stack.task_status("p1-join") == "DONE"
    assert stack.keys("jobs/p1/join/")
    assert all(stack.depth(q) == 0 for q in ("in", "next", "last", "dlq"))


def test_second_delivery_of_a_finished_message_writes_and_publishes_nothing(stack: Stack) -> None:
    message = split(stack, "d1", parts=2)
    stack.send("in", message)
    stack.start_worker()
    wait_for(lambda: stack.task_status("d1-split") == "DONE", timeout=60, interval=0.2)
    first = stack.receive_all("next")
    before = {k: (v["ETag"], v["LastModified"]) for k, v in stack.keys().items()}
    # Mark the children consumed, as the next step would, so nothing is PENDING any more.
    stack.query("UPDATE kw_tasks SET status = 'DONE' WHERE parent_task_id = %s RETURNING 1", "d1-split")
    stack.send("in", message)
    wait_for(lambda: stack.depth("in") == 0, timeout=60, interval=0.2)
    assert stack.stop_workers() == [0]
    assert len(first) == 2
    assert stack.receive_all("next") == []
    assert {k: (v["ETag"], v["LastModified"]) for k, v in stack.keys().items()} == before
    assert "skipped: result exists at s3://" in stack.logs()


def test_send_status_check_and_dlq_redrive_against_the_real_backends(stack: Stack) -> None:
    env = stack.env()
    assert stack.cli("db", "upgrade", env=env).stdout.strip() == "applied migrations [1, 2]"
    sent = stack.cli("send", "-", env=env, stdin=json.dumps(split(stack, "c1", parts=1)))
    assert sent.returncode == 0, sent.stderr
    status = stack.cli("status", "c1", env=env)
    assert "c1-split" in status.stdout and "PENDING" in status.stdout
    check = stack.cli("check", env=env)
    assert check.returncode == 0, check.stdout
    assert [line.split()[0] for line in check.stdout.splitlines()] == ["ok"] * 5
    bad = stack.cli("check", env={**env, "DB_DSN": "postgresql://u:secretpw@127.0.0.1:1/none"})
    assert bad.returncode == 1 and "FAIL database" in bad.stdout and "secretpw" not in bad.stdout
    stack.send("dlq", split(stack, "c2", parts=1))
    moved = stack.cli("dlq", "redrive", env=env)
    assert moved.stdout.startswith("moved 1 message(s)"), moved.stderr
    assert stack.depth("dlq") == 0 and stack.depth("in") == 2


def test_fifo_queues_get_group_and_dedup_ids(tmp_path: Any) -> None:
    stack = new_stack(tmp_path, "in", "next", fifo=True)
    try:
        stack.sqs.send_message(
            QueueUrl=stack.queues["in"],
            MessageBody=json.dumps(split(stack, "f1", parts=3)),
            MessageGroupId="f1",
            MessageDeduplicationId="f1-split",
        )
        stack.start_worker()
        wait_for(lambda: stack.task_status("f1-split") == "DONE", timeout=60, interval=0.2)
        assert stack.stop_workers() == [0]
        children = stack.receive_all("next")
        attrs = sorted(
            (m["Attributes"]["MessageGroupId"], m["Attributes"]["MessageDeduplicationId"]) for m in children
        )
        assert attrs == [("f1", f"f1-part-{i:03d}") for i in range(3)]
    finally:
        stack.kill_workers()
