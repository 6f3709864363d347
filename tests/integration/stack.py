"""A fresh SQS + S3 + PostgreSQL stack per test, and real ``kombu-worker`` subprocesses on it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import servers

REPO = Path(__file__).parents[2]
RUNNER = [sys.executable, "-m", "kombu_worker_sdk.runner"]


@dataclass
class Stack:
    """Queues (by role), a bucket and a database, all new; workers started on them."""

    moto_url: str
    dsn: str
    bucket: str
    queues: dict[str, str]
    tmp: Path
    sqs: Any = None
    s3: Any = None
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def env(self, queue: str = "in", next_queue: str | None = "next", **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "WORKER_CONFIG_DIR": str(REPO / "config"),
            "BROKER_URL": "sqs://",
            "STORAGE_URL": "s3://",
            "BUCKET": self.bucket,
            "DB_DSN": self.dsn,
            "QUEUE_URL": self.queues[queue],
            "DLQ_URL": self.queues["dlq"],
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_DEFAULT_REGION": servers.REGION,
            "AWS_ACCESS_KEY_ID": servers.DUMMY_KEY,
            "AWS_SECRET_ACCESS_KEY": servers.DUMMY_KEY,
            "KOMBU_WORKER_DATA_DIR": str(self.tmp / "data"),
            "KOMBU_WORKER_WAIT_TIME_SECONDS": "1",
            "KOMBU_WORKER_RETRY_BACKOFF_SECONDS": "0.2",
            "KOMBU_WORKER_RETRY_BACKOFF_MAX_SECONDS": "1",
            **extra,
        }
        if next_queue:
            env["NEXT_QUEUE_URL"] = self.queues[next_queue]
        return env

    def cli(
        self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*RUNNER, *args], env=env or self.env(), input=stdin, capture_output=True, text=True, timeout=120
        )

    def start_worker(
        self,
        hooks: str = "tests.sample_hooks:StepHooks",
        *args: str,
        env: dict[str, str] | None = None,
        log_name: str = "worker",
    ) -> subprocess.Popen[str]:
        log = (self.tmp / f"{log_name}-{len(self.procs)}.log").open("w")
        proc = subprocess.Popen(
            [*RUNNER, "--hooks", hooks, *args],
            env=env or self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def stop_workers(self, timeout: float = 30) -> list[int]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        return [proc.wait(timeout) for proc in self.procs]

    def kill_workers(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp.glob("*.log")))

    def send(self, queue: str, body: dict[str, Any] | str) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.sqs.send_message(QueueUrl=self.queues[queue], MessageBody=text)

    def receive_all(self, queue: str, *, wait: int = 1) -> list[dict[str, Any]]:
        """Drain a queue (deleting), returning the raw SQS messages."""
        found: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.queues[queue],
                MaxNumberOfMessages=10,
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                return found
            found.extend(got)
            self.sqs.delete_message_batch(
                QueueUrl=self.queues[queue],
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
            )

    def set_redrive(
        self, max_receives: int, queue: str = "in", target_url: str | None = None, **attributes: str
    ) -> None:
        """Give ``queue`` a redrive policy into ``target_url`` (default: the stack's dead-letter queue)."""
        target = target_url or self.queues["dlq"]
        arn = self.sqs.get_queue_attributes(QueueUrl=target, AttributeNames=["QueueArn"])
        policy = {"deadLetterTargetArn": arn["Attributes"]["QueueArn"], "maxReceiveCount": str(max_receives)}
        self.sqs.set_queue_attributes(
            QueueUrl=self.queues[queue], Attributes={"RedrivePolicy": json.dumps(policy), **attributes}
        )

    def depth(self, queue: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queues[queue],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def keys(self, prefix: str = "") -> dict[str, Any]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {o["Key"]: o for page in pages for o in page.get("Contents", [])}

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        conn = servers.connect(self.dsn)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def task_status(self, task_id: str) -> str | None:
        try:
            rows = self.query("SELECT status FROM kw_tasks WHERE task_id = %s", task_id)
        except Exception:
            return None  # schema not created yet
        return rows[0][0] if rows else None

    def job(self, job_id: str) -> tuple[str, int, int, int] | None:
        try:
            rows = self.query("SELECT status, total, done, failed FROM kw_jobs WHERE job_id = %s", job_id)
        except Exception:
            return None
        return rows[0] if rows else None


def new_stack(
    tmp: Path, *roles: str, fifo: bool = False, dlq_attributes: dict[str, str] | None = None
) -> Stack:
    moto = servers.require_moto()
    servers.require_postgres()
    sqs, s3 = servers.boto_client("sqs"), servers.boto_client("s3")
    queues = {role: servers.fresh_queue(sqs, f"kw-{role}", fifo=fifo) for role in (*roles, "dlq")}
    bucket = servers.fresh_bucket(s3, "kw")
    return Stack(moto, servers.fresh_database(), bucket, queues, tmp, sqs, s3)
