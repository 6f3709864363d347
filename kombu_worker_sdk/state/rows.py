"""Row helpers shared by the SQL stores: error text that any database accepts, records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kombu_worker_sdk.state.base import TaskRecord, TaskStatus

MAX_ERROR_CHARS = 4000


def clean_text(text: str) -> str:
    """Error text safe for any database: no NUL, no lone surrogates, bounded length."""
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:MAX_ERROR_CHARS]


def task_record(row: Sequence[Any]) -> TaskRecord:
    return TaskRecord(
        task_id=row[0],
        job_id=row[1],
        parent_task_id=row[2],
        status=TaskStatus(row[3]),
        attempts=row[4],
        error=row[5],
        content_hash=row[6],
        queue=row[7],
        worker_id=row[8],
        updated_at=row[9],
    )
