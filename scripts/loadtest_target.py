"""Where a load test runs: fresh queues, bucket and database on scripts/services.py's servers,
or existing ones on AWS; and the queue backlogs the run samples there."""

from __future__ import annotations

import argparse
import os
import re
import sys
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import boto3
import psycopg2
from botocore.config import Config
from psycopg2 import sql

STEPS = ("split", "part", "join")
BOTO = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3})


def log(msg: str) -> None:
    print(f"[loadtest] {msg}", file=sys.stderr, flush=True)


@dataclass
class Target:
    """Where the run happens: queue URLs by role, bucket, database, optional endpoint."""

    queues: dict[str, str]
    bucket: str
    dsn: str
    region: str
    endpoint: str | None = None
    dummy_creds: bool = False
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = boto3.client(
                service, region_name=self.region, endpoint_url=self.endpoint, config=BOTO
            )
        return self.clients[service]


def mask(text: str) -> str:
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", text)


# -- targets -----------------------------------------------------------------
def harness_target(run_id: str) -> Target:
    """Fresh queues, bucket and database on the servers of scripts/services.py."""
    endpoint, admin_dsn = os.environ.get("KWS_TEST_MOTO_URL"), os.environ.get("KWS_TEST_PG_DSN")
    if not endpoint or not admin_dsn:
        sys.exit("loadtest: run under scripts/services.py, or give --queue-prefix-url/--bucket/--db-dsn")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    target = Target({}, run_id, "", "us-east-1", endpoint, dummy_creds=True)
    sqs = target.client("sqs")
    for role in (*STEPS, "dlq"):
        target.queues[role] = sqs.create_queue(QueueName=f"{run_id}-{role}")["QueueUrl"]
    target.client("s3").create_bucket(Bucket=run_id)
    conn = psycopg2.connect(admin_dsn, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(run_id.replace("-", "_"))))
    finally:
        conn.close()
    parts = urllib.parse.urlsplit(admin_dsn)
    target.dsn = urllib.parse.urlunsplit(parts._replace(path="/" + run_id.replace("-", "_")))
    return target


def aws_target(args: argparse.Namespace) -> Target:
    """Existing queues ``<prefix>-<role>``, bucket and database; credentials from the AWS chain."""
    prefix = args.queue_prefix_url.rstrip("/")
    found = re.search(r"sqs[.-]([a-z0-9-]+)\.amazonaws\.com", prefix)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or (found and found[1])
    if not region:
        sys.exit("loadtest: set AWS_REGION (cannot read the region from --queue-prefix-url)")
    target = Target({r: f"{prefix}-{r}" for r in (*STEPS, "dlq")}, args.bucket, args.db_dsn, region)
    for role, url in target.queues.items():
        depth = backlog(target, url)
        if depth[0] or depth[1]:
            log(f"warning: {role} queue already holds {depth[0]} visible / {depth[1]} in-flight messages")
    return target


def backlog(target: Target, url: str) -> tuple[int, int]:
    attrs = target.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])
