"""No job left RUNNING (issue 10 §5) with a real ``kombu-worker`` on moto's SQS/S3 and PostgreSQL.

An oversized child and children with no next queue each end with the job FAILED on the
first attempt, the reason in ``kombu-worker status``, nothing stranded in the database or
the next queue; ``kombu-worker send`` of an oversized message registers nothing.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import wait_for
from tests.fanout_hooks import root_message
from tests.integration.stack import Stack
from tests.invariants import sqs_counter, stranded_jobs
from tests.sample_hooks import split_message

pytestmark = pytest.mark.integration

LIMIT = 1024


def job_status(stack: Stack, job_id: str) -> str | None:
    row = stack.job(job_id)
    return row[0] if row else None


def assert_nothing_stranded(stack: Stack) -> None:
    assert stranded_jobs(stack.dsn, sqs_counter(stack.sqs), default_queue=stack.queues["in"]) == {}


def test_an_oversized_child_fails_the_job_with_the_reason_in_status(stack: Stack) -> None:
    env = stack.env(KOMBU_WORKER_MAX_MESSAGE_BYTES=str(LIMIT), KOMBU_WORKER_MAX_ATTEMPTS="3")
    stack.start_worker("tests.fanout_hooks:ChildHooks", env=env)
    stack.send("in", root_message("ob", stack.bucket, child_pad=2 * LIMIT))
    wait_for(lambda: job_status(stack, "ob") == "FAILED", timeout=60, interval=0.2)
    assert stack.stop_workers() == [0]
    shown = stack.cli("status", "ob", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("job ob: FAILED (0/1 done, 1 failed)")
    assert "MessageTooLargeError: child task 'ob-child-0' is " in shown.stdout
    rows = stack.query("SELECT task_id, status, attempts, error FROM kw_tasks")
    assert [r[:3] for r in rows] == [("ob-root", "FAILED", 1)], "no child registered, no retry"
    assert f"over max_message_bytes={LIMIT}" in rows[0][3]
    assert stack.depth("next") == 0
    letters = stack.receive_all("dlq")
    assert [m["MessageAttributes"]["task_id"]["StringValue"] for m in letters] == ["ob-root"]
    assert_nothing_stranded(stack)


def test_children_without_a_next_queue_fail_on_the_first_attempt_saying_what_to_set(stack: Stack) -> None:
    env = stack.env(next_queue=None, KOMBU_WORKER_MAX_ATTEMPTS="3")
    stack.start_worker(env=env)
    split = split_message("nq", parts=2)
    split["input_uri"] = f"s3://{stack.bucket}/in.txt"
    split["output_prefix"] = f"s3://{stack.bucket}/jobs/nq/split/"
    stack.send("in", split)
    wait_for(lambda: job_status(stack, "nq") == "FAILED", timeout=60, interval=0.2)
    assert stack.stop_workers() == [0]
    shown = stack.cli("status", "nq", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["status"] == "FAILED"
    [task] = report["tasks"]
    assert task["task_id"] == "nq-split" and task["attempts"] == 1
    assert task["error"] == (
        "ConfigError: publish_next returned 2 message(s) but no next queue is configured: "
        "set NEXT_QUEUE_URL or next_queue, or return [] from publish_next"
    )
    assert "will retry" not in stack.logs()
    assert stack.depth("in") == 0 and len(stack.receive_all("dlq")) == 1
    assert_nothing_stranded(stack)


def test_send_of_an_oversized_message_registers_nothing(stack: Stack) -> None:
    env = stack.env(KOMBU_WORKER_MAX_MESSAGE_BYTES=str(LIMIT))
    assert stack.cli("db", "upgrade", env=env).returncode == 0
    args = ["--job-id", "sb", "--input-uri", f"s3://{stack.bucket}/in.txt"]
    args += ["--output-prefix", f"s3://{stack.bucket}/jobs/sb/", "--param", "pad=" + "x" * 2 * LIMIT]
    sent = stack.cli("send", *args, env=env)
    assert sent.returncode == 1
    one_line = rf"error: task 'sb-root' is \d+ bytes, over max_message_bytes={LIMIT}"
    assert re.fullmatch(one_line, sent.stderr.strip()), sent.stderr
    assert stack.query("SELECT task_id FROM kw_tasks") == []
    assert stack.job("sb") is None and stack.depth("in") == 0
