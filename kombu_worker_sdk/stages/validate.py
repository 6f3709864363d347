"""Stage 1: decode the body (JSON only) and validate it against the contract."""

from __future__ import annotations

import re
from typing import Any

from kombu_worker_sdk.errors import InvalidMessageError, MessageError
from kombu_worker_sdk.ids import random_hex
from kombu_worker_sdk.message import ID_PATTERN, decode_body, parse_task
from kombu_worker_sdk.pipeline import Stage, TaskRun

#: Bodies up to this size are still decoded to read their ids, so the task is FAILED with
#: the reason; a larger one is only dead-lettered (decoding it would cost the worker memory).
ID_SCAN_MAX_BYTES = 4 * 1_048_576


class ValidateStage(Stage):
    """Turns raw bytes into a TaskMessage, or ends the run with a MessageError."""

    name = "validate"

    def process(self, run: TaskRun) -> None:
        runtime = run.runtime
        size = len(run.body.encode("utf-8") if isinstance(run.body, str) else run.body)
        limit = runtime.config.max_message_bytes
        if size > limit:
            task_id, job_id = oversized_ids(run.body, size, run.content_type)
            raise InvalidMessageError(
                f"message of {size} bytes exceeds max_message_bytes={limit}", task_id=task_id, job_id=job_id
            )
        msg = parse_task(decode_body(run.body, run.content_type))
        if msg.trace_id is None:  # start a trace here; children inherit it (not part of the hash)
            msg = msg.model_copy(update={"trace_id": random_hex()})
        run.message = msg
        run.ctx = runtime.context.for_message(msg, run.attempt)
        run.log = run.ctx.logger  # one adapter: the pipeline's stage shows in the hooks' lines
        run.log.set_stage(self.name)
        runtime.storage.check_readable(msg.input_uri)
        runtime.storage.check_writable_prefix(msg.output_prefix)


def oversized_ids(body: bytes | str, size: int, content_type: str | None) -> tuple[str | None, str | None]:
    """The (task_id, job_id) of an oversized body when they can be read, else None for each."""
    if size > ID_SCAN_MAX_BYTES:
        return None, None
    try:
        data = decode_body(body, content_type)
    except (MessageError, ValueError):  # unreadable: dead-lettered, nothing recorded
        return None, None
    return _usable_id(data.get("task_id")), _usable_id(data.get("job_id"))


def _usable_id(value: Any) -> str | None:
    return value if isinstance(value, str) and re.fullmatch(ID_PATTERN, value) else None
