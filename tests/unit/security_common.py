"""Shared by the tests/unit/test_security_*.py modules (issue 4 §7): names, messages, helpers."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import RunningWorker, wait_for

REPO = Path(__file__).parents[2]
BUCKET = "bucket"
FOREIGN = "other-bucket"
PREFIX = f"s3://{BUCKET}/jobs/j1/step/"
SECRET_PW = "SECRETPW"
SECRET_KEY = "SECRETKEY"
DSN = f"postgresql://u:{SECRET_PW}@127.0.0.1:1/db"  # nothing listens on port 1

MakeWorker = Callable[..., RunningWorker]


def message(task_id: str = "t1", job_id: str = "j1", **changes: Any) -> dict[str, Any]:
    body = {
        "job_id": job_id,
        "task_id": task_id,
        "input_uri": f"s3://{BUCKET}/in.txt",
        "output_prefix": f"s3://{BUCKET}/jobs/{job_id}/{task_id}/",
        "params": {"step": "leaf"},
    }
    body.update(changes)
    return body


def drain_dead_letters(running: RunningWorker, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    """Wait for ``count`` dead letters; return their headers."""
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        found.extend(headers for _body, headers in running.dead_letters(timeout=0.05))
        return len(found) >= count

    wait_for(enough, timeout=timeout, interval=0.05)
    return found


FORBIDDEN_READS = [
    f"s3://{FOREIGN}/secret.txt",
    f"s3://{BUCKET}.evil/secret.txt",
    f"s3://{BUCKET}@{FOREIGN}/secret.txt",
    f"S3://{FOREIGN}/secret.txt",
    "file:///etc/passwd",
    "file://localhost/etc/passwd",
    "FILE:///etc/passwd",
]


@contextmanager
def refused_endpoint() -> Iterator[str]:
    """A bound socket that never listens: any request to it is refused at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
