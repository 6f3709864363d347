"""``kombu-worker send``: build task messages from text or flags and send them."""

from __future__ import annotations

import json
from typing import Any

from kombu_worker_sdk.client import Client
from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import DecodeError, InvalidMessageError
from kombu_worker_sdk.message import TaskMessage, parse_task


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
    """Check, register PENDING, then publish: :meth:`Client.send`, for one command's life."""
    with Client(config) as client:
        return client.send(queue, msgs, register=register)


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
