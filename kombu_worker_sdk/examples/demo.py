"""``kombu-worker demo``: the face pipeline on the embedded defaults, in one process.

Three workers (Detection → Analysis → Completion), each consuming its own queue
on Kombu's filesystem transport, share file storage and SQLite state under one
data folder — the same code path as three pods on SQS, S3 and PostgreSQL.
"""

from __future__ import annotations

import shlex
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import click

from kombu_worker_sdk.cli.send import send_messages
from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import ConfigError
from kombu_worker_sdk.logs import configure_logging
from kombu_worker_sdk.message import TaskMessage
from kombu_worker_sdk.state import JobStatus, StateStore
from kombu_worker_sdk.storage import LocalStorage
from kombu_worker_sdk.transport import broker_connection
from kombu_worker_sdk.worker.consumer import Worker
from kombu_worker_sdk.worker.runtime import Runtime, build_runtime

BUCKET = "demo"
STEPS = (
    ("detection", "DetectionHooks", "analysis"),
    ("analysis", "AnalysisHooks", "completion"),
    ("completion", "CompletionHooks", None),
)
TIMEOUT_SECONDS = 120.0


@dataclass
class Step:
    runtime: Runtime
    worker: Worker
    thread: threading.Thread


def run_demo(data_dir: Path, *, image: Path | None = None, jobs: int = 1) -> int:
    """Run ``jobs`` jobs through the three steps; prints progress and where outputs are."""
    try:
        from kombu_worker_sdk.examples import faces
    except ImportError as exc:  # pragma: no cover - only without the demo extra
        raise ConfigError(f"the demo needs the 'demo' extra (pip install '.[demo]'): {exc}") from None
    configure_logging("WARNING")
    base = WorkerConfig(data_dir=data_dir, broker_url="filesystem://", allowed_buckets=[BUCKET])
    storage = LocalStorage(data_dir.resolve() / "storage", allowed_buckets=[BUCKET])
    input_uri = f"s3://{BUCKET}/inputs/{image.name if image else 'astronaut.png'}"
    storage.put(input_uri, image.read_bytes() if image else faces.sample_image(), "image/png")
    steps = [
        _start_step(base, storage, queue, f"{faces.__name__}.hooks:{cls}", nxt) for queue, cls, nxt in STEPS
    ]
    try:
        job_ids = _submit(base, input_uri, jobs)
        click.echo(f"submitted {jobs} job(s) to the 'detection' queue; data in {data_dir}")
        finished = _watch(steps[0].runtime.state, job_ids)
    finally:
        for step in steps:
            step.worker.should_stop = True
        for step in steps:
            step.thread.join(10)
            step.worker.shutdown(5)
            step.runtime.close()
    return _report(storage, steps[0].runtime.state, job_ids, finished)


def _start_step(base: WorkerConfig, storage: LocalStorage, queue: str, hooks: str, nxt: str | None) -> Step:
    config = base.model_copy(update={"queue": queue, "next_queue": nxt, "worker_id": f"demo-{queue}"})
    runtime = build_runtime(config, hooks, storage=storage)
    runtime.state.upgrade()
    runtime.start()
    worker = Worker(runtime, broker_connection(config))
    thread = threading.Thread(target=worker.run, name=f"demo-{queue}", daemon=True)
    thread.start()
    return Step(runtime, worker, thread)


def _submit(config: WorkerConfig, input_uri: str, jobs: int) -> list[str]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    job_ids = [f"demo-{stamp}-{uuid.uuid4().hex[:4]}-{i}" for i in range(jobs)]
    msgs = [
        TaskMessage(
            job_id=job,
            task_id=f"{job}-detection",
            input_uri=input_uri,
            output_prefix=f"s3://{BUCKET}/jobs/{job}/detection/",
        )
        for job in job_ids
    ]
    send_messages(config.model_copy(update={"queue": "detection"}), msgs, "detection")
    return job_ids


def _watch(state: StateStore, job_ids: list[str]) -> bool:
    """Print a line whenever the counts change; True once every job has finished."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    last = ""
    while time.monotonic() < deadline:
        jobs = [state.get_job(j) for j in job_ids]
        line = "  ".join(f"{j.job_id}: {j.status.value} {j.done}/{j.total} tasks" for j in jobs if j)
        if line != last:
            click.echo(line)
            last = line
        if all(j is not None and j.status is not JobStatus.RUNNING for j in jobs):
            return True
        time.sleep(0.1)
    click.echo(f"gave up waiting after {TIMEOUT_SECONDS:.0f}s", err=True)
    return False


def runnable_command(*args: str) -> str:
    """A ``kombu-worker`` command line that runs as printed, with or without .venv active.

    A bare ``kombu-worker`` is on PATH only inside an activated venv, so name the
    script next to the running interpreter, or the interpreter itself.
    """
    script = Path(sys.executable).parent / "kombu-worker"
    program = [str(script)] if script.is_file() else [sys.executable, "-m", "kombu_worker_sdk.runner"]
    return shlex.join([*program, *args])


def _report(storage: LocalStorage, state: StateStore, job_ids: list[str], finished: bool) -> int:
    ok = finished
    for job_id in job_ids:
        job = state.get_job(job_id)
        status = job.status.value if job else "UNKNOWN"
        ok = ok and status == JobStatus.DONE
        click.echo(f"job {job_id}: {status}")
        result = storage.path_for(f"s3://{BUCKET}/jobs/{job_id}/completion/result.png")
        if result.exists():
            click.echo(f"  result.png: {result}")
        click.echo(f"  outputs:    {result.parent.parent}")
        click.echo(
            f"  task tree:  {runnable_command('--data-dir', str(storage.root.parent), 'status', job_id)}"
        )
    click.echo("demo finished: every job DONE" if ok else "demo FAILED")
    return 0 if ok else 1
