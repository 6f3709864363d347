"""The Client scenarios, run against real worker subprocesses on each backend.

tests/unit/test_client.py runs them on the embedded defaults (filesystem broker, SQLite,
local files); tests/integration/test_client_sqs.py on SQS (moto) + PostgreSQL + S3.
``start_worker`` starts one ``python -m kombu_worker_sdk.runner`` on the client's queue,
with ``tests.sample_hooks:StepHooks`` (split -> parts -> join).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kombu_worker_sdk import Client, JobCancelledError, JobFailedError, JobStatus, TaskStatus
from tests.conftest import wait_for

StartWorker = Callable[[], object]
WAIT = 120  # a deadline for the job, not a measurement


def split(prefix: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A two-part split task without ids: the client generates them."""
    return {
        "input_uri": f"{prefix}in.txt",
        "output_prefix": f"{prefix}jobs/split/",
        "params": {"step": "split", "parts": 2, **(extra or {})},
    }


def skipped_as_cancelled(logs: str) -> set[str]:
    """Task ids the workers acked as CANCELLED, from their JSON log lines."""
    found = set()
    for line in logs.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "task CANCELLED" in str(record.get("message")):
            found.add(str(record.get("task_id")))
    return found


def submit_wait_results(client: Client, start_worker: StartWorker, prefix: str) -> None:
    start_worker()
    job = client.submit(None, split(prefix))
    record = job.wait(timeout=WAIT)
    assert (record.status, record.total, record.done, record.failed) == (JobStatus.DONE, 4, 4, 0)
    ids = [f"{job.job_id}-root", f"{job.job_id}-part-000", f"{job.job_id}-part-001", f"{job.job_id}-join"]
    assert sorted(t.task_id for t in job.tasks()) == sorted(ids)
    results = job.results()
    assert sorted(results) == sorted(ids)
    assert [results[i]["step"] for i in ids] == ["split", "part", "part", "join"]
    blob = client.submit(
        None, {"input_uri": f"{prefix}in.txt", "output_prefix": f"{prefix}blob/", "params": {"blob": True}}
    )
    blob.wait(timeout=WAIT)
    (uri,) = blob.results().values()
    assert uri == f"{prefix}blob/result.png"  # a binary result comes back as its URI
    assert client.storage().read(uri).startswith(b"\x89PNG")


def a_failing_task_raises_with_its_error(client: Client, start_worker: StartWorker, prefix: str) -> None:
    start_worker()
    job = client.submit(
        None,
        {
            "job_id": "bad-1",
            "input_uri": f"{prefix}in",
            "output_prefix": f"{prefix}bad/",
            "params": {"permanent": True},
        },
    )
    with pytest.raises(JobFailedError) as raised:
        job.wait(timeout=WAIT)
    assert raised.value.job_id == "bad-1" and raised.value.task_id == "bad-1-root"
    assert raised.value.error is not None and "this input can never work" in raised.value.error
    assert job.status() is JobStatus.FAILED


def cancel_queued_then_start_a_worker(
    client: Client, start_worker: StartWorker, prefix: str, markers: Path, logs: Callable[[], str]
) -> None:
    """Cancel before any worker runs: the queued copies are acked, their hooks never called."""
    markers.mkdir()
    msgs = [
        {**split(prefix, {"marker_dir": str(markers)}), "job_id": "cx", "output_prefix": f"{prefix}cx/{i}/"}
        for i in range(2)
    ]
    job = client.submit(None, msgs)
    assert job.cancel() == 2
    assert job.status() is JobStatus.CANCELLED
    assert {t.task_id: t.status for t in job.tasks()} == {
        "cx-0": TaskStatus.CANCELLED,
        "cx-1": TaskStatus.CANCELLED,
    }
    start_worker()
    wait_for(lambda: skipped_as_cancelled(logs()) >= {"cx-0", "cx-1"}, timeout=WAIT, interval=0.1)
    assert list(markers.iterdir()) == []  # process() never ran for either
    assert job.status() is JobStatus.CANCELLED
    with pytest.raises(JobCancelledError):
        job.wait(timeout=WAIT)


def cancel_while_running_skips_later_children(
    client: Client, start_worker: StartWorker, prefix: str, folder: Path, logs: Callable[[], str]
) -> None:
    """The running task finishes; the children it registers after the cancel never run."""
    started, markers, gate = folder / "started", folder / "markers", folder / "gate"
    started.mkdir()
    markers.mkdir()
    params = {"started_dir": str(started), "marker_dir": str(markers), "gate": str(gate)}
    job = client.submit(None, {**split(prefix, params), "job_id": "cr"})
    start_worker()
    wait_for(lambda: list(started.iterdir()), timeout=WAIT, interval=0.05)
    assert job.cancel() == 0  # the one task is running, none is PENDING
    gate.touch()
    kids = {"cr-part-000", "cr-part-001"}
    wait_for(lambda: skipped_as_cancelled(logs()) >= kids, timeout=WAIT, interval=0.1)
    statuses = {t.task_id: t.status for t in job.tasks()}
    assert statuses == {"cr-root": TaskStatus.DONE, **dict.fromkeys(kids, TaskStatus.CANCELLED)}
    assert [p.name.split(".")[0] for p in markers.iterdir()] == ["cr-root"]  # only the root ran
    assert job.status() is JobStatus.CANCELLED
