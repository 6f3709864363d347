"""Helpers for the PostgresStateStore tests: messages, threads released together, raw SQL.

Run with: ``python scripts/services.py -- python -m pytest tests/integration/postgres_state``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kombu_worker_sdk.message import NextMessage, TaskMessage
from tests.servers import connect


def task(task_id: str, job_id: str = "job-1", **params: Any) -> TaskMessage:
    return TaskMessage(
        job_id=job_id,
        task_id=task_id,
        input_uri=f"s3://in/{task_id}.png",
        output_prefix=f"s3://out/{job_id}/{task_id}/",
        params=params,
    )


def child(task_id: str, job_id: str = "job-1", **extra: Any) -> NextMessage:
    return NextMessage(
        job_id=job_id,
        task_id=task_id,
        input_uri=f"s3://in/{task_id}.png",
        output_prefix=f"s3://out/{job_id}/{task_id}/",
        **extra,
    )


def run_together(n: int, fn: Callable[[int], Any], timeout: float = 60) -> list[Any]:
    """Run ``fn(i)`` in ``n`` threads released at the same moment; re-raise any error."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "threads did not finish"
    if errors:
        raise errors[0]
    return results


def query(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()
