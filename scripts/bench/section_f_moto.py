"""Section f over moto's server: the real SQS and S3 clients, behind latency-adding proxies.

SQS requests go through a proxy adding 15 ms each, S3 requests through one adding 30 ms; the
state is the same SQLite with 2 ms per call. moto's server costs tens of milliseconds per
request by itself, on the same two cores, so the absolute rate here is capped by moto: the
run shows that the overlap holds on the real clients, not what AWS would reach.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from .backends import dummy_aws_credentials, moto_server
from .base import Result
from .common import task_body, tmpdir, unique
from .proxy import CountingProxy
from .settings import BUCKET, REGION, Settings, log
from .workers import kombu_worker

BATCH = 8
MOTO_NOTE = "moto's server costs tens of ms per request itself: it caps the absolute msg/s here"


def seed(sqs: Any, s3: Any, url: str, n: int) -> None:
    """The input object and ``n`` one-task jobs, straight to moto (not through the proxies)."""
    s3.create_bucket(Bucket=BUCKET)
    body = task_body("j", "t")
    s3.put_object(Bucket=BUCKET, Key=body["input_uri"].split("/", 3)[3], Body=b"\0" * 4096)
    bodies = [task_body(f"j{i}", f"j{i}-t") for i in range(n)]
    for start in range(0, n, 10):
        entries = [
            {"Id": str(k), "MessageBody": json.dumps(b)} for k, b in enumerate(bodies[start : start + 10])
        ]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def s3_operations(counts: Counter[str]) -> dict[str, int]:
    """The proxy's S3 counts ("PUT /bench/jobs/…") by method and target: a bucket (a listing,
    find_result) or an object (a read or a write)."""
    ops: Counter[str] = Counter()
    for key, count in counts.items():
        method, _, path = key.partition(" ")
        ops[f"{method} {'bucket' if path.strip('/').count('/') == 0 else 'object'}"] += count
    return dict(sorted(ops.items()))


def run_over_moto(s: Settings, device_hooks: Callable[[Any], Any], world_cls: Callable[[Any], Any]) -> Result:
    """kombu-worker at batch 8 over moto: duty, msg/s and the requests each proxy saw."""
    import boto3

    from .section_f import BATCH_WAIT_MS, SQS_S, STORAGE_S

    dummy_aws_credentials()
    n = s.device_backlog
    with moto_server() as moto_url, tmpdir("bench-f-moto-") as tmp:
        sqs_proxy, s3_proxy = CountingProxy(moto_url, delay=SQS_S), CountingProxy(moto_url, delay=STORAGE_S)
        saved = {
            k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        }
        os.environ.update({"AWS_ENDPOINT_URL_SQS": sqs_proxy.url, "AWS_ENDPOINT_URL_S3": s3_proxy.url})
        os.environ.pop("AWS_ENDPOINT_URL", None)
        try:
            sqs = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)
            s3 = boto3.client("s3", endpoint_url=moto_url, region_name=REGION)
            name = unique("bench-f-moto")
            sqs.create_queue(QueueName=f"{name}-dlq")  # the worker refuses to start without one
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            seed(sqs, s3, url, n)
            world = world_cls(tmp)
            log.info("f: over moto, batch %d, %d messages", BATCH, n)
            kw = kombu_worker(
                device_hooks(world.device),
                queue=url,
                tmp=tmp,
                storage=None,  # S3Storage on the bucket, through the S3 proxy
                state=world.state,
                broker_url="sqs://",
                publisher="default",
                region=REGION,
                concurrency=1,
                batch_size=BATCH,
                batch_wait_ms=BATCH_WAIT_MS,
                wait_time_seconds=1,
            )
            deadline = time.monotonic() + s.device_seconds
            while kw.worker.settled < n and time.monotonic() < deadline:
                time.sleep(0.05)
            settled = kw.worker.settled
            kw.stop(join=12)
        finally:
            sqs_proxy.close()
            s3_proxy.close()
            for key, value in saved.items():
                os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    result: Result = world.figures(BATCH, settled)
    result.update(
        {
            "batch_size": BATCH,
            "sqs_requests": dict(sqs_proxy.snapshot()),
            "s3_requests": s3_operations(s3_proxy.snapshot()),
            "note": MOTO_NOTE,
        }
    )
    log.info("f: over moto: duty %.1f%%, %.1f msg/s (%s)", 100 * result["duty"], result["rate"], MOTO_NOTE)
    return result
