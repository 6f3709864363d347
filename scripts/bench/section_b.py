"""b  SQS requests per processed message on moto's server.

75 roots that fan out 1:3 (300 processed), for kombu-worker and for Celery doing the same
work. Requests are counted on the wire by a small HTTP proxy in front of moto, so botocore
calls and Kombu's pycurl long polls (which Celery's event loop uses) are all seen. Needs
``KWS_TEST_MOTO_URL``, else moto's server is started here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .backends import dummy_aws_credentials, moto_server
from .base import Result, Row, Section, fmt, verdict
from .common import Clock, task_body, tmpdir, unique, wait_settled
from .hooks import clocked
from .proxy import CountingProxy, per_message
from .settings import REGION, Settings, log
from .workers import celery_app, celery_worker, kombu_worker

TARGETS = {"b_requests_per_message": 0.3}


def run_kombu_worker(
    s: Settings, sqs: Any, proxy: CountingProxy, concurrency: int, receive_batch_size: int | None = None
) -> Result:
    name = unique(f"bench-kw-c{concurrency}")
    sqs.create_queue(QueueName=f"{name}-dlq")  # the worker checks its dead-letter queue at start
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    roots = [task_body(f"job{i}", f"job{i}-root", "root") for i in range(s.sqs_roots)]
    for start in range(0, len(roots), 10):
        entries = [
            {"Id": str(k), "MessageBody": json.dumps(b)} for k, b in enumerate(roots[start : start + 10])
        ]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    expected = s.sqs_roots * (1 + s.sqs_fanout)
    hooks, clock = clocked("fanout", expected, fanout=s.sqs_fanout)
    before = proxy.snapshot()
    started = time.perf_counter()
    with tmpdir("bench-b-") as tmp:
        kw = kombu_worker(
            hooks,
            queue=url,
            next_queue=url,
            tmp=tmp,
            storage="indexed",
            broker_url="sqs://",
            publisher="default",
            region=REGION,
            concurrency=concurrency,
            wait_time_seconds=s.sqs_wait_seconds,
            receive_batch_size=receive_batch_size,
        )
        ready = proxy.snapshot()
        wait_settled(kw.worker, expected, poll=0.02, timeout=600)
        busy = time.perf_counter() - started
        kw.stop(join=s.sqs_wait_seconds + 10)
    after = proxy.snapshot()
    result = per_message(after - before, kw.worker.settled)
    result.update(
        {
            "consumer": "kombu-worker",
            "concurrency": concurrency,
            "prefetch": kw.runtime.config.effective_prefetch,
            "startup_requests": dict(ready - before),
            "wall_s": busy,
            "rate": clock.rate(),
        }
    )
    return result


def run_celery(s: Settings, sqs: Any, proxy: CountingProxy) -> Result:
    name = unique("bench-celery")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    app = celery_app(
        "sqs://",
        name,
        worker_enable_remote_control=False,
        broker_transport_options={
            "predefined_queues": {name: {"url": url}},
            "region": REGION,
            "is_secure": False,
            "wait_time_seconds": s.sqs_wait_seconds,
            "visibility_timeout": 60,
            "polling_interval": 0,
        },
    )
    expected = s.sqs_roots * (1 + s.sqs_fanout)
    clock = Clock(expected)
    fanout = s.sqs_fanout

    @app.task(name="bench.leaf")
    def leaf(i: int, k: int) -> None:
        clock.tick()

    @app.task(name="bench.root")
    def root(i: int) -> None:
        for k in range(fanout):
            leaf.delay(i, k)
        clock.tick()

    for i in range(s.sqs_roots):
        root.delay(i)
    before = proxy.snapshot()
    started = time.perf_counter()
    with celery_worker(app, shutdown_timeout=30):
        clock.done.wait(600)
        busy = time.perf_counter() - started
        time.sleep(0.5)  # acks_late: the last ack follows the task's return
    after = proxy.snapshot()
    result = per_message(after - before, clock.count)
    result.update(
        {"consumer": "celery", "concurrency": 1, "prefetch": 4, "wall_s": busy, "rate": clock.rate()}
    )
    return result


def sqs_floors(roots: int, fanout: int) -> dict[str, float]:
    """Fewest requests per message: full receives and deletes of 10, and sends per parent or
    packed 10 to a call across parents (start-up calls left out)."""
    processed = roots * (1 + fanout)
    full = -(-processed // 10)
    return {
        "full_batches_sends_per_parent": (2 * full + roots) / processed,
        "full_batches_sends_packed": (2 * full + -(-roots * fanout // 10)) / processed,
    }


def run(s: Settings, out_dir: Path) -> Result:
    import boto3

    dummy_aws_credentials()
    with moto_server() as moto_url:
        proxy = CountingProxy(moto_url)
        # Every SQS client made from here on (boto3, Kombu's sync and pycurl clients) goes
        # through the counting proxy; the bench's own client below talks to moto directly.
        os.environ["AWS_ENDPOINT_URL_SQS"] = proxy.url
        os.environ.pop("AWS_ENDPOINT_URL", None)
        sqs = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)
        consumers: dict[str, Any] = {}
        try:
            for concurrency in s.sqs_concurrency:
                log.info(
                    "b: kombu-worker, concurrency %d, %d roots x 1:%d", concurrency, s.sqs_roots, s.sqs_fanout
                )
                consumers[f"kombu_worker_c{concurrency}"] = run_kombu_worker(s, sqs, proxy, concurrency)
                # The short-step profile: receive (and so prefetch) up to 10 at a time.
                consumers[f"kombu_worker_c{concurrency}_rb10"] = run_kombu_worker(
                    s, sqs, proxy, concurrency, 10
                )
            log.info("b: celery, %d roots x 1:%d", s.sqs_roots, s.sqs_fanout)
            consumers["celery"] = run_celery(s, sqs, proxy)
        finally:
            proxy.close()
    return {
        "roots": s.sqs_roots,
        "fanout": s.sqs_fanout,
        "expected_processed": s.sqs_roots * (1 + s.sqs_fanout),
        "wait_time_seconds": s.sqs_wait_seconds,
        "counted": "every HTTP request to moto from worker start to worker stop (seeding excluded), "
        "by a counting proxy, so Kombu's pycurl long polls are included",
        "consumers": consumers,
        "floors": sqs_floors(s.sqs_roots, s.sqs_fanout),
        "target_per_message": TARGETS["b_requests_per_message"],
    }


def rows(b: Result) -> list[Row]:
    target = TARGETS["b_requests_per_message"]
    celery = b["consumers"].get("celery", {}).get("per_message")
    out: list[Row] = []
    for name, r in b["consumers"].items():
        ops = ", ".join(f"{k} {v}" for k, v in r["requests"].items())
        ok = r["per_message"] <= target and (celery is None or name == "celery" or r["per_message"] < celery)
        out.append(
            (
                f"{name} requests/msg ({r['processed']} msgs)",
                fmt(r["per_message"], ".3f"),
                f"<= {target}" if name != "celery" else "reference",
                verdict(ok) if name != "celery" else "",
            )
        )
        out.append(("  by operation", ops, "", ""))
    for name, value in b.get("floors", {}).items():
        out.append((f"  floor: {name.replace('_', ' ')}", fmt(value, ".3f"), "", ""))
    return out


def draw(ax: Any, b: Result | None) -> None:
    if b is not None:
        consumers = list(b["consumers"])
        ops = sorted({op for r in b["consumers"].values() for op in r["requests"]})
        bottom = [0.0] * len(consumers)
        for op in ops:
            vals = [b["consumers"][c]["per_message_by_operation"].get(op, 0.0) for c in consumers]
            short = [c.replace("kombu_worker_", "kw ").replace("_rb10", "\n+rb10") for c in consumers]
            ax.bar(short, vals, bottom=bottom, label=op)
            bottom = [x + y for x, y in zip(bottom, vals, strict=True)]
        ax.axhline(TARGETS["b_requests_per_message"], ls="--", c="r", lw=1, label="target 0.3")
        ax.set_ylabel("SQS requests per processed message")
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", labelsize=8)
    ax.set_title("(b) SQS requests/message, fan-out 1:3 (moto)")


SECTION = Section("b", "SQS requests per message (moto)", run, rows, draw, TARGETS)
