"""``kombu-worker send``: build task messages from text or flags and send them."""

from __future__ import annotations

import json
from typing import Any

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import DecodeError, InvalidMessageError, WorkerSDKError
from kombu_worker_sdk.message import TaskMessage, parse_task
from kombu_worker_sdk.state import TaskStatus, open_state
from kombu_worker_sdk.transport import default_publisher


def messages_from_text(text: str) -> list[TaskMessage]:
    """A JSON object, a JSON array of objects, or JSON lines."""
    stripped = text.strip()
    try:
        data = json.loads(stripped)
        items = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        try:
            items = [json.loads(line) for line in stripped.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise DecodeError(f"input is neither JSON nor JSON lines: {exc}") from None
    if not items:
        raise InvalidMessageError("no messages in the input")
    return [parse_task(item) if isinstance(item, dict) else _not_object(item) for item in items]


def messages_from_flags(
    job_id: str | None,
    task_id: str | None,
    input_uri: str | None,
    output_prefix: str | None,
    params: tuple[str, ...],
) -> list[TaskMessage]:
    missing = [
        name
        for name, value in (
            ("--job-id", job_id),
            ("--input-uri", input_uri),
            ("--output-prefix", output_prefix),
        )
        if not value
    ]
    if missing:
        raise InvalidMessageError(f"give a SOURCE file or the flags {', '.join(missing)}")
    body: dict[str, Any] = {
        "job_id": job_id,
        "task_id": task_id or f"{job_id}-root",
        "input_uri": input_uri,
        "output_prefix": output_prefix,
        "params": dict(_parse_param(p) for p in params),
    }
    return [parse_task(body)]


def send_messages(config: WorkerConfig, msgs: list[TaskMessage], queue: str, *, register: bool = True) -> int:
    """Check every message, register each root task as PENDING (so status shows it), then publish.

    Nothing is registered until the queue and the size of every message have been
    checked: a refused message must not leave a PENDING task (and a RUNNING job) behind.
    """
    publisher = default_publisher(config)
    try:
        publisher.check(queue, msgs)
        registered = _register(config, msgs, queue) if register else []
        try:
            return publisher.publish(queue, msgs)
        except WorkerSDKError as exc:
            _fail_unsent(config, registered, exc)
            raise
    finally:
        publisher.close()


def _register(config: WorkerConfig, msgs: list[TaskMessage], queue: str) -> list[TaskMessage]:
    """Register the root tasks; returns those that are new (a re-send keeps the old rows)."""
    state = open_state(config.effective_db_dsn)
    try:
        state.upgrade()
        return [msg for msg in msgs if state.register(msg, queue=queue)]
    finally:
        state.close()


def _fail_unsent(config: WorkerConfig, msgs: list[TaskMessage], error: WorkerSDKError) -> None:
    """The send failed after registering: mark the tasks no worker took FAILED, with the reason.

    A copy that did get through still runs: a worker's claim revives a FAILED task.
    """
    if not msgs:
        return
    state = open_state(config.effective_db_dsn)
    try:
        for msg in msgs:
            record = state.get_task(msg.task_id)
            if record is not None and record.status is TaskStatus.PENDING and record.attempts == 0:
                state.fail(msg.task_id, msg.job_id, error=f"send failed: {type(error).__name__}: {error}")
    finally:
        state.close()


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise InvalidMessageError(f"--param {text!r} must look like key=value")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def _not_object(item: Any) -> TaskMessage:
    raise InvalidMessageError(f"each message must be a JSON object, got {type(item).__name__}")
