"""The seed README's "Local Dev", exactly: a service folder with ``service/hooks.py`` and no
``config/``, only QUEUE_URL, NEXT_QUEUE_URL, BUCKET and DB_DSN (plus the AWS environment that
points boto3 and Kombu's SQS transport at moto), and ``python -m kombu_worker_sdk.runner``.

The worker must consume SQS, write to S3 and record state in PostgreSQL without being told the
backends, name them in its start-up line, and create nothing local.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import servers

pytestmark = pytest.mark.integration

RUNNER = [sys.executable, "-m", "kombu_worker_sdk.runner"]
HOOKS = "service.hooks.MyServiceHooks"
DB_PASSWORD = "seed-pw-" + uuid.uuid4().hex[:8]

# The seed README's MyServiceHooks, with a tiny model in place of transformers.
SERVICE_HOOKS = textwrap.dedent(
    '''
    from kombu_worker_sdk import hooks


    class Model:
        def predict(self, data, threshold=0.5):
            words = data.decode().split()
            return {"detections": [{"crop_uri": CROP_URI, "word": w} for w in words if len(w) > 3]}


    class MyServiceHooks(hooks.WorkerHooks):
        def load_pipeline(self, ctx):
            """Load model once per pod. Called at startup."""
            return Model()

        def process(self, ctx, msg):
            """Do the work. Called per message."""
            input_data = ctx.storage.read(msg["input_uri"])
            result = self.model.predict(input_data, **msg["params"])
            return {"result": result, "metrics": {"latency_ms": 123, "model": "v1"}}

        def publish_next(self, ctx, msg, outputs):
            """Fan-out to next queue. Return [] if final step."""
            if not outputs["result"]:
                return []
            next_msgs = []
            for i, detection in enumerate(outputs["result"]["detections"]):
                next_msgs.append({
                    "job_id": msg["job_id"],
                    "task_id": f"{msg['task_id']}-analysis-{i:03d}",
                    "input_uri": detection["crop_uri"],
                    "output_prefix": f"{msg['output_prefix'].rstrip('/')}/analysis/{i:03d}/",
                    "params": {"detection_id": i},
                })
            return next_msgs
    '''
)


@dataclass
class Seed:
    """A new user's service folder and the seed's environment, on fresh queues, bucket, database."""

    work: Path
    env: dict[str, str]
    bucket: str
    queue_url: str
    next_url: str
    dsn: str
    sqs: Any
    s3: Any

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*RUNNER, *args], cwd=self.work, env=env or self.env, capture_output=True, text=True, timeout=120
        )


def seed_env(**variables: str) -> dict[str, str]:
    """The seed's variables and the AWS environment, nothing of the SDK's own (no WORKER_CONFIG)."""
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "SYSTEMROOT"}}
    return keep | {
        "AWS_ACCESS_KEY_ID": servers.DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": servers.DUMMY_KEY,
        "AWS_DEFAULT_REGION": servers.REGION,
        **variables,
    }


def with_password(dsn: str) -> str:
    """Trust auth ignores the password, so it only shows whether logs mask it."""
    parts = urllib.parse.urlsplit(dsn)
    netloc = parts.netloc.replace("@", f":{DB_PASSWORD}@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
def seed(tmp_path: Path) -> Seed:
    moto = servers.require_moto()
    sqs, s3 = servers.boto_client("sqs"), servers.boto_client("s3")
    queue_url = servers.fresh_queue(sqs, "detection")
    sqs.create_queue(QueueName=queue_url.rsplit("/", 1)[-1] + "-dlq")  # the derived dead-letter queue
    next_url = servers.fresh_queue(sqs, "analysis")
    bucket = servers.fresh_bucket(s3, "seed")
    dsn = with_password(servers.fresh_database())
    work = tmp_path / "my-service"
    (work / "service").mkdir(parents=True)
    crop = f"s3://{bucket}/crops/0.txt"
    (work / "service" / "hooks.py").write_text(f"CROP_URI = {crop!r}\n{SERVICE_HOOKS}")
    env = seed_env(
        QUEUE_URL=queue_url, NEXT_QUEUE_URL=next_url, BUCKET=bucket, DB_DSN=dsn, AWS_ENDPOINT_URL=moto
    )
    return Seed(work, env, bucket, queue_url, next_url, dsn, sqs, s3)


@pytest.fixture
def worker(seed: Seed, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Start the seed's command in the service folder; yields a function reading its log."""
    log_path = tmp_path / "worker.log"  # outside the service folder, which must stay clean
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [*RUNNER, "--hooks", HOOKS], cwd=seed.work, env=seed.env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield lambda: log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def poll(predicate: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def task_status(dsn: str, task_id: str) -> str | None:
    try:
        conn = servers.connect(dsn)
    except Exception:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status FROM kw_tasks WHERE task_id = %s", (task_id,))
            row = cur.fetchone()
    except Exception:
        return None  # schema not created yet
    finally:
        conn.close()
    return str(row[0]) if row else None


def started_line(log: str) -> str:
    return next((line for line in log.splitlines() if " started: hooks=" in line), "")


def test_the_seed_environment_alone_runs_on_sqs_s3_and_postgresql(
    seed: Seed, worker: Callable[[], str]
) -> None:
    servers.require_postgres()
    seed.s3.put_object(Bucket=seed.bucket, Key="in/photo.txt", Body=b"the quick brown fox")
    prefix = "jobs/seed-1/detection/"
    msg = {
        "job_id": "seed-1",
        "task_id": "seed-1-detection-001",
        "input_uri": f"s3://{seed.bucket}/in/photo.txt",
        "output_prefix": f"s3://{seed.bucket}/{prefix}",
        "params": {"threshold": 0.5},
    }
    seed.sqs.send_message(QueueUrl=seed.queue_url, MessageBody=json.dumps(msg))

    poll(lambda: task_status(seed.dsn, "seed-1-detection-001") == "DONE", "the task DONE in PostgreSQL")
    body = seed.s3.get_object(Bucket=seed.bucket, Key=prefix + "result.json")["Body"].read()
    assert [d["word"] for d in json.loads(body)["detections"]] == ["quick", "brown"]
    children: list[dict[str, Any]] = []
    poll(lambda: len(receive(seed, children)) == 2, "both children on NEXT_QUEUE_URL")
    assert sorted(c["task_id"] for c in children) == [f"seed-1-detection-001-analysis-00{i}" for i in (0, 1)]
    assert {c["output_prefix"] for c in children} >= {f"s3://{seed.bucket}/{prefix}analysis/000/"}
    assert sorted(os.listdir(seed.work)) == ["service"], "nothing local may be created"
    assert not list(seed.work.rglob(".kombu-worker"))

    line = started_line(worker())
    assert "broker=sqs://" in line and "storage=s3://" in line, line
    assert "state=postgresql://postgres:***@" in line, line
    assert DB_PASSWORD not in worker()


def receive(seed: Seed, into: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Receive (and delete) what NEXT_QUEUE_URL holds, adding the bodies to ``into``."""
    got = seed.sqs.receive_message(QueueUrl=seed.next_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    for message in got.get("Messages", []):
        into.append(json.loads(message["Body"]))
        seed.sqs.delete_message(QueueUrl=seed.next_url, ReceiptHandle=message["ReceiptHandle"])
    return into


def test_config_show_names_where_each_value_came_from(seed: Seed) -> None:
    shown = seed.run("config", "show")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "broker_url: sqs://  # derived from $QUEUE_URL" in lines
    assert "storage_url: s3://  # derived from $BUCKET" in lines
    assert f"queue: {seed.queue_url}  # $QUEUE_URL" in lines
    assert any(
        line.startswith("db_dsn: postgresql://postgres:***@") and line.endswith("# $DB_DSN") for line in lines
    )
    assert "concurrency: 1  # built-in default" in lines
    assert DB_PASSWORD not in shown.stdout + shown.stderr
    assert sorted(os.listdir(seed.work)) == ["service"]


@pytest.mark.parametrize(
    ("files", "extra_env", "named"),
    [
        pytest.param(
            {"config/default.yaml": "broker_url: filesystem://\n"},
            {},
            ["$QUEUE_URL is an SQS queue URL (http", "config/default.yaml sets broker_url: filesystem://"],
            id="sqs-queue-url-with-filesystem-broker",
        ),
        pytest.param(
            {},
            {"STORAGE_URL": "file:///tmp/outputs"},
            ["$BUCKET is an S3 bucket (", "$STORAGE_URL sets storage_url: file:///tmp/outputs"],
            id="bucket-with-file-storage",
        ),
    ],
)
def test_a_contradiction_is_refused_in_one_line_naming_both_sources(
    seed: Seed, files: dict[str, str], extra_env: dict[str, str], named: list[str]
) -> None:
    for name, text in files.items():
        (seed.work / name).parent.mkdir(parents=True, exist_ok=True)
        (seed.work / name).write_text(text)
    ran = seed.run("--hooks", HOOKS, env={**seed.env, **extra_env})
    assert ran.returncode != 0
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in ran.stderr, ran.stderr
    assert lines[0].startswith("error: ") and all(part in lines[0] for part in named), lines[0]
    assert not (seed.work / ".kombu-worker").exists()
