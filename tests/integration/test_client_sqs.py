"""The Client API on SQS (the moto server) + PostgreSQL + S3, with real worker subprocesses.

The same scenarios as tests/unit/test_client.py (tests/client_cases.py). The client is
configured the way a producer's process is: load_config() over the workers' variables.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kombu_worker_sdk import Client, load_config
from tests import client_cases
from tests.conftest import wait_for
from tests.integration.stack import REPO, Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def client(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    env = stack.env("in", next_queue="in")  # one worker runs every step: children come back to "in"
    for key in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, env[key])  # boto3 reads these, in the producer as in the worker
    built = Client(load_config(config_dir=REPO / "config", env=env))
    assert built.config.is_sqs_broker and built.config.effective_db_dsn == stack.dsn
    yield built
    built.close()


def start(stack: Stack) -> client_cases.StartWorker:
    return lambda: stack.start_worker(env=stack.env("in", next_queue="in"))


def prefix(stack: Stack) -> str:
    return f"s3://{stack.bucket}/"


def test_submit_then_wait_then_results(stack: Stack, client: Client) -> None:
    client_cases.submit_wait_results(client, start(stack), prefix(stack))
    assert {"jobs/join/result.json", "blob/result.png"} <= set(stack.keys())  # read back from S3


def test_a_failing_task_makes_wait_raise_with_its_error(stack: Stack, client: Client) -> None:
    client_cases.a_failing_task_raises_with_its_error(client, start(stack), prefix(stack))
    assert stack.job("bad-1") == ("FAILED", 1, 0, 1)


def test_cancel_queued_tasks_then_a_worker_skips_them(stack: Stack, client: Client, tmp_path: Path) -> None:
    client_cases.cancel_queued_then_start_a_worker(
        client, start(stack), prefix(stack), tmp_path / "markers", stack.logs
    )
    assert stack.job("cx") == ("CANCELLED", 2, 0, 0)
    wait_for(lambda: stack.depth("in") == 0, timeout=60, interval=0.2)  # both copies were deleted


def test_cancel_while_running_skips_the_children_registered_later(
    stack: Stack, client: Client, tmp_path: Path
) -> None:
    client_cases.cancel_while_running_skips_later_children(
        client, start(stack), prefix(stack), tmp_path, stack.logs
    )
