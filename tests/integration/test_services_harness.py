"""Proves that scripts/services.py gives the tests real moto and PostgreSQL servers.

Run with: ``python scripts/services.py -- python -m pytest tests/integration -q``.
Skipped without the harness's environment variables, failed instead when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from tests.servers import (
    MOTO_PIDFILE_ENV,
    boto_client,
    connect,
    fresh_bucket,
    fresh_database,
    fresh_queue,
    moto_answers,
    postgres_running,
    require_moto,
    require_postgres,
    restart_moto,
    start_postgres,
    stop_postgres,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def moto() -> str:
    return require_moto()


@pytest.fixture
def postgres() -> Iterator[str]:
    require_postgres()
    yield fresh_database()
    start_postgres()  # leave the cluster running even if a test stopped it and failed


def test_sqs_send_and_receive(moto: str) -> None:
    sqs = boto_client("sqs")
    url = fresh_queue(sqs, "harness")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"hello": "world"}))
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1)
    messages = got.get("Messages", [])
    assert len(messages) == 1
    assert json.loads(messages[0]["Body"]) == {"hello": "world"}
    sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])


def test_sqs_fifo_queue(moto: str) -> None:
    sqs = boto_client("sqs")
    url = fresh_queue(sqs, "harness", fifo=True, attributes={"ContentBasedDeduplication": "true"})
    assert url.endswith(".fifo")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true"


def test_s3_put_and_get(moto: str) -> None:
    s3 = boto_client("s3")
    bucket = fresh_bucket(s3, "Harness_Bucket")
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"payload")
    assert s3.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"payload"


def test_postgres_answers_on_fresh_database(postgres: str) -> None:
    assert postgres != require_postgres()
    conn = connect(postgres)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version(), current_database()")
            version, database = cur.fetchone()
    finally:
        conn.close()
    assert version.startswith("PostgreSQL")
    assert postgres.endswith("/" + database)


@pytest.mark.slow
def test_postgres_stop_and_start(postgres: str) -> None:
    stop_postgres()
    assert not postgres_running()
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(postgres, connect_timeout=2).close()
    start_postgres()
    assert postgres_running()
    conn = connect(postgres)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()


@pytest.mark.slow
def test_restart_moto_loses_state_and_answers(moto: str) -> None:
    sqs = boto_client("sqs")
    url = fresh_queue(sqs, "before-restart")
    name = url.rsplit("/", 1)[1]
    old_pid = json.loads(Path(os.environ[MOTO_PIDFILE_ENV]).read_text())["pid"]

    began = time.monotonic()
    assert restart_moto(down_seconds=0.5) == moto
    assert time.monotonic() - began >= 0.5
    assert moto_answers()
    new_pid = json.loads(Path(os.environ[MOTO_PIDFILE_ENV]).read_text())["pid"]
    assert new_pid != old_pid

    sqs = boto_client("sqs")
    assert name not in [u.rsplit("/", 1)[1] for u in sqs.list_queues().get("QueueUrls", [])]
    # The same name can be created again on the new, empty server.
    assert sqs.create_queue(QueueName=name)["QueueUrl"].endswith("/" + name)
