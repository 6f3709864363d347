"""Real Kombu and Celery producers feed a real worker on moto's SQS/S3 and PostgreSQL (issue 10 §3).

The producers are the installed ``kombu`` and ``celery`` packages with their defaults, run
as a Django or Celery app would run them: nothing here builds an envelope by hand. The
worker is ``python -m kombu_worker_sdk.runner`` in a subprocess.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.conftest import wait_for
from tests.integration.stack import Stack, new_stack

pytestmark = pytest.mark.integration

HOOKS = "tests.sample_hooks:StepHooks"


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """One input queue and its DLQ; this process's environment is the producer's AWS set-up."""
    built = new_stack(tmp_path, "in")
    built.s3.put_object(Bucket=built.bucket, Key="in.txt", Body=b"input")
    for key, value in {
        "AWS_ENDPOINT_URL": built.moto_url,
        "AWS_DEFAULT_REGION": servers.REGION,
        "AWS_ACCESS_KEY_ID": servers.DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": servers.DUMMY_KEY,
    }.items():
        monkeypatch.setenv(key, value)
    yield built
    built.kill_workers()


def task(stack: Stack, task_id: str) -> dict[str, Any]:
    job = f"{task_id}-job"
    return {
        "job_id": job,
        "task_id": task_id,
        "input_uri": f"s3://{stack.bucket}/in.txt",
        "output_prefix": f"s3://{stack.bucket}/jobs/{job}/leaf/",
        "params": {"step": "leaf"},
    }


def queue_name(stack: Stack, role: str = "in") -> str:
    return stack.queues[role].rsplit("/", 1)[-1]


def celery_app(**conf: Any) -> Any:
    """A Celery app as a Django project configures one: broker sqs://, every other default."""
    celery = servers.require_module("celery")
    app = celery.Celery("django_project", broker="sqs://", set_as_current=False)
    app.conf.update(conf)
    return app


def start(stack: Stack) -> None:
    stack.start_worker(HOOKS, env=stack.env("in", None))


def dead_letters(stack: Stack, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    wait_for(lambda: found.extend(stack.receive_all("dlq")) or len(found) >= count, timeout=60, interval=0.2)
    return found


def test_kombu_producer_with_default_transport_options_runs_to_done(stack: Stack) -> None:
    from kombu import Connection

    with Connection("sqs://") as conn:  # sqs_base64_encoding defaults to True
        conn.Producer(serializer="json").publish(task(stack, "kombu-1"), routing_key=queue_name(stack))
    start(stack)
    wait_for(lambda: stack.task_status("kombu-1") == "DONE", timeout=60, interval=0.2)
    assert stack.stop_workers() == [0]
    assert stack.job("kombu-1-job") == ("DONE", 1, 1, 0)
    assert set(stack.keys("jobs/kombu-1-job/")) == {
        "jobs/kombu-1-job/leaf/result.json",
        "jobs/kombu-1-job/leaf/metrics.json",
    }
    assert stack.depth("in") == 0 and stack.depth("dlq") == 0


def test_celery_send_task_with_kwargs_or_one_dict_argument_runs_to_done(stack: Stack) -> None:
    app = celery_app()
    try:
        by_kwargs = app.send_task("analysis", kwargs=task(stack, "celery-kw"), queue=queue_name(stack))
        by_arg = app.send_task("analysis", args=[task(stack, "celery-arg")], queue=queue_name(stack))
    finally:
        app.close()
    start(stack)
    wait_for(
        lambda: stack.task_status("celery-kw") == stack.task_status("celery-arg") == "DONE",
        timeout=60,
        interval=0.2,
    )
    assert stack.stop_workers() == [0]
    # The task ids are the body's own; Celery's ids (uuids in the headers) are not used.
    rows = stack.query("SELECT task_id, job_id, status FROM kw_tasks ORDER BY task_id")
    assert rows == [("celery-arg", "celery-arg-job", "DONE"), ("celery-kw", "celery-kw-job", "DONE")]
    assert {by_kwargs.id, by_arg.id}.isdisjoint({row[0] for row in rows})
    assert stack.depth("in") == 0 and stack.depth("dlq") == 0


def test_celery_protocol_1_and_pickle_are_refused_by_name_and_dead_lettered(stack: Stack) -> None:
    old = celery_app(task_protocol=1)
    pickled = celery_app(task_serializer="pickle")
    good = celery_app()
    try:
        old.send_task("analysis", kwargs=task(stack, "proto-1"), queue=queue_name(stack))
        pickled.send_task("analysis", kwargs=task(stack, "pickled"), queue=queue_name(stack))
        good.send_task("analysis", kwargs=task(stack, "after"), queue=queue_name(stack))
    finally:
        for app in (old, pickled, good):
            app.close()
    start(stack)
    letters = dead_letters(stack, 2)
    wait_for(lambda: stack.task_status("after") == "DONE", timeout=60, interval=0.2)  # still running
    assert stack.stop_workers() == [0]
    errors = sorted(m["MessageAttributes"]["error"]["StringValue"] for m in letters)
    assert len(errors) == 2
    assert errors[0].startswith("DecodeError: Celery protocol 1 message (task 'analysis') is not supported")
    assert "use protocol 2" in errors[0]
    assert errors[1].startswith("DecodeError: refused content type 'application/x-python-serialize' (pickle)")
    ids = {m["MessageAttributes"]["task_id"]["StringValue"] for m in letters}
    assert ids == {"proto-1", "-"}  # pickle is never opened, so its task cannot be named
    rows = stack.query("SELECT task_id, status, error FROM kw_tasks ORDER BY task_id")
    assert [(r[0], r[1]) for r in rows] == [("after", "DONE"), ("proto-1", "FAILED")]
    assert "Celery protocol 1" in rows[1][2]
    assert stack.depth("in") == 0


def redrive_to(stack: Stack, target: str) -> None:
    stack.set_redrive(5, target_url=target)


@pytest.mark.parametrize(
    ("case", "role"),
    [
        ("DLQ_URL names a missing queue", "dead-letter queue (DLQ_URL / dead_letter_queue)"),
        ("DLQ_URL missing although the input queue has a RedrivePolicy", "dead-letter queue (DLQ_URL"),
        ("no DLQ_URL and no <queue>-dlq", "dead-letter queue"),
        ("QUEUE_URL names a missing queue", "input queue (QUEUE_URL)"),
    ],
)
def test_a_missing_queue_refuses_start_up_in_one_line(stack: Stack, case: str, role: str) -> None:
    env = stack.env("in", None)
    missing = stack.queues["in"] + "-gone"
    if case.startswith("DLQ_URL"):
        env["DLQ_URL"] = missing
    if "RedrivePolicy" in case:
        redrive_to(stack, stack.queues["dlq"])  # SQS could move it, but the SDK's own send cannot
    if case.startswith("no DLQ_URL"):
        del env["DLQ_URL"]
        missing = stack.queues["in"] + "-dlq"  # the default name, which nobody created
    if case.startswith("QUEUE_URL"):
        env["QUEUE_URL"] = missing
    result = stack.cli("--hooks", HOOKS, env=env)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1, result.stderr
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {role}") and f"{missing} does not exist" in errors[0]
    assert "Traceback" not in result.stderr and "started" not in result.stderr


def test_without_dlq_url_dead_letters_go_to_the_redrive_target(stack: Stack) -> None:
    target = servers.fresh_queue(stack.sqs, "kw-redrive-target")
    redrive_to(stack, target)
    stack.queues["target"] = target
    app = celery_app(task_protocol=1)
    try:
        app.send_task("analysis", kwargs=task(stack, "redriven"), queue=queue_name(stack))
    finally:
        app.close()
    env = stack.env("in", None)
    del env["DLQ_URL"]
    checked = stack.cli("check", env=env)  # `kombu-worker check` names the same queue
    assert f"ok   dead-letter queue: {target} reachable" in checked.stdout, checked.stdout
    stack.start_worker(HOOKS, env=env)
    found: list[dict[str, Any]] = []
    wait_for(lambda: found.extend(stack.receive_all("target")) or found, timeout=60, interval=0.2)
    assert stack.stop_workers() == [0]
    assert [m["MessageAttributes"]["task_id"]["StringValue"] for m in found] == ["redriven"]
    assert m_attempts(found[0]) == "1"  # dead-lettered at once, not after maxReceiveCount receives
    assert stack.task_status("redriven") == "FAILED"
    assert f"dead letters go to the input queue's redrive target {target}" in stack.logs()


def m_attempts(message: dict[str, Any]) -> str:
    value: str = message["MessageAttributes"]["attempts"]["StringValue"]
    return value


def readme_example(name: str) -> str:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```python\n(.*?)```", readme, flags=re.S):
        if block.startswith(f"# readme-example: {name}\n"):
            return block
    raise AssertionError(f"README has no example {name!r}")


def test_the_readmes_producer_examples_run_to_done(stack: Stack) -> None:
    servers.require_module("celery")
    for key in ("uploads/abc123.jpg", "uploads/abc124.jpg"):
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=b"image")
    queue = repr(queue_name(stack))
    for name in ("celery-producer", "kombu-producer"):  # the README's text, on this test's names
        code = readme_example(name).replace("my-bucket", stack.bucket)
        code = code.replace('queue="detection"', f"queue={queue}").replace('key="detection"', f"key={queue}")
        exec(code, {})
    start(stack)
    wait_for(
        lambda: stack.job("abc123") == ("DONE", 1, 1, 0) and stack.job("abc124") == ("DONE", 1, 1, 0),
        timeout=60,
        interval=0.2,
    )
    assert stack.stop_workers() == [0]
    assert {"jobs/abc123/detection/result.json", "jobs/abc124/detection/result.json"} <= set(
        stack.keys("jobs/")
    )
