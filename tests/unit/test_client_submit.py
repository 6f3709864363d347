"""Client.submit's ids and checks, and what a client reports with no worker running.

The embedded filesystem broker and SQLite in a fresh folder; nothing consumes the queue.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from kombu_worker_sdk import (
    Client,
    JobNotFoundError,
    JobStatus,
    JobTimeoutError,
    TaskMessage,
    TaskStatus,
    WorkerConfig,
    load_config,
)
from kombu_worker_sdk.errors import InvalidMessageError, MessageTooLargeError, StateError

BODY = {"input_uri": "s3://b/in.png", "output_prefix": "s3://b/out/"}


@pytest.fixture
def config(tmp_path: Path) -> WorkerConfig:
    return load_config(config_dir=tmp_path / "config", env={}, overrides={"data_dir": tmp_path / "data"})


@pytest.fixture
def client(config: WorkerConfig) -> Iterator[Client]:
    with Client(config) as built:
        yield built


def test_ids_are_generated_when_absent(client: Client) -> None:
    job = client.submit(None, dict(BODY))
    assert re.fullmatch(r"[0-9a-f]{32}", job.job_id)
    assert [(t.task_id, t.status, t.queue) for t in job.tasks()] == [
        (f"{job.job_id}-root", TaskStatus.PENDING, "tasks")
    ]
    assert job.status() is JobStatus.RUNNING
    several = client.submit("other", [dict(BODY), dict(BODY)])
    assert [t.task_id for t in several.tasks()] == [f"{several.job_id}-0", f"{several.job_id}-1"]
    assert several.job_id != job.job_id


def test_given_ids_are_kept_and_a_resubmit_adds_nothing(client: Client) -> None:
    msgs = [{**BODY, "job_id": "order-7", "task_id": f"order-7-{n}"} for n in ("a", "b")]
    job = client.submit(None, msgs)
    again = client.submit(None, [TaskMessage.model_validate(m) for m in msgs])
    assert job.job_id == again.job_id == "order-7"
    record = job.record()
    assert (record.total, [t.task_id for t in job.tasks()]) == (2, ["order-7-a", "order-7-b"])


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([{**BODY, "job_id": "a"}, {**BODY, "job_id": "b"}], "one submit is one job"),
        ([{**BODY, "job_id": "d", "task_id": "t"}] * 2, "appears twice"),
        ([], "at least one message"),
        ({**BODY, "job_id": "x", "input_uri": "http://evil/"}, "invalid task message"),
        ('{"job_id": "x"}', "not text"),
        ([dict(BODY), 42], "got int"),
    ],
)
def test_bad_submits_are_refused_before_anything_is_registered(
    client: Client, config: WorkerConfig, messages: object, error: str
) -> None:
    with pytest.raises(InvalidMessageError, match=error):
        client.submit(None, messages)  # type: ignore[arg-type]
    assert not (config.data_dir / "state.db").exists()


def test_a_message_over_the_size_limit_registers_nothing(tmp_path: Path) -> None:
    config = load_config(
        config_dir=tmp_path / "config", env={}, overrides={"data_dir": tmp_path, "max_message_bytes": 1024}
    )
    with Client(config) as client:
        client.submit(None, {**BODY, "job_id": "small"})
        with pytest.raises(MessageTooLargeError, match="over max_message_bytes=1024"):
            client.submit(None, {**BODY, "job_id": "big", "params": {"blob": "x" * 2000}})
        with pytest.raises(JobNotFoundError, match="no job 'big'"):
            client.job("big").status()


def test_wait_times_out_while_no_worker_runs(client: Client) -> None:
    job = client.submit(None, {**BODY, "job_id": "slow"})
    with pytest.raises(JobTimeoutError, match="still RUNNING") as raised:
        job.wait(timeout=0.2)
    assert isinstance(raised.value, TimeoutError) and raised.value.job_id == "slow"
    assert job.status() is JobStatus.RUNNING  # the job itself runs on


def test_reading_from_an_empty_folder_creates_nothing(config: WorkerConfig) -> None:
    with Client(config) as client:
        for call in (client.job("any").status, client.job("any").cancel, client.job("any").results):
            with pytest.raises(StateError, match="no SQLite state database"):
                call()
    assert not config.data_dir.exists()


def test_an_unknown_job_is_a_named_error(client: Client) -> None:
    client.submit(None, {**BODY, "job_id": "known"})
    nope = client.job("nope")
    for call in (nope.status, nope.tasks, nope.results, nope.cancel, nope.wait):
        with pytest.raises(JobNotFoundError, match="no job 'nope'"):
            call()


def test_cancel_through_the_client_then_a_second_client_sees_it(client: Client, config: WorkerConfig) -> None:
    job = client.submit(None, [dict(BODY), dict(BODY)])
    assert job.cancel() == 2
    with Client(config) as other:
        seen = other.job(job.job_id)
        assert seen.status() is JobStatus.CANCELLED
        assert {t.status for t in seen.tasks()} == {TaskStatus.CANCELLED}
        assert seen.results() == {}
