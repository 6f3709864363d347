"""How a raw message body becomes a JSON object: the one decoding path for every producer.

Accepted, and nothing else (only JSON is ever parsed; pickle is never imported):

- a raw JSON task object (``aws sqs send-message``, boto3, any language);
- a Kombu envelope ``{"body", "content-type", "properties", ...}``, as JSON text or
  base64-encoded as a whole (Kombu's SQS transport does that by default,
  ``sqs_base64_encoding=True``: ``AsyncMessage.encode`` in ``kombu/transport/SQS``),
  whose body may itself be base64 (``properties.body_encoding``, the virtual
  channel's default: ``kombu/transport/virtual/base.py``, ``Channel.encode_body``);
- a Celery protocol-2 task in such an envelope (``headers.task`` and ``headers.id``,
  body ``[args, kwargs, embed]``: ``celery/app/amqp.py``, ``as_task_v2``). Its kwargs,
  or its single dict argument, are the task message. The message's ids come from that
  body only: Celery's ``headers.id`` and the other headers are never used for them.

Celery protocol 1, canvas callbacks, ETAs and non-JSON content types are refused with
a DecodeError that names what was received, and keeps the task's ids when they can be
read, so that the task can be marked FAILED.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from kombu_worker_sdk.errors import DecodeError

#: Content types that may carry a task. Everything else is refused (no pickle, ever).
JSON_CONTENT_TYPES = frozenset({"application/json", "text/json"})
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@=+\-]{0,255}$"
#: What well-known refused content types are, so the error says it in words.
KNOWN_CONTENT_TYPES = {
    "application/x-python-serialize": "pickle",
    "application/x-yaml": "YAML",
    "application/x-msgpack": "msgpack",
    "application/data": "raw bytes",
}
_ENVELOPE_KEYS = frozenset({"body", "content-type", "properties"})
_CELERY_V1_KEYS = frozenset({"task", "id", "args", "kwargs"})
_CELERY_CANVAS = ("callbacks", "errbacks", "chain", "chord")
# The form Kombu's SQS channel tests before it base64-decodes a body (Channel.B64_REGEX).
_BASE64_TEXT = re.compile(r"(?:[A-Za-z0-9+/]{4})+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def decode_body(raw: bytes | str, content_type: str | None = None) -> dict[str, Any]:
    """Decode a message body to the task's JSON object, whichever accepted producer sent it.

    Raises DecodeError for anything that is not a JSON object of an accepted type.
    """
    check_content_type(content_type)
    text = _text(raw)
    try:
        data = loads(text)
    except DecodeError as not_json:
        data = _base64_envelope(text, not_json)  # only text that is not JSON is tried as base64
    if isinstance(data, dict) and data.keys() >= _ENVELOPE_KEYS:
        data = unwrap_envelope(data)
    if not isinstance(data, dict):
        raise DecodeError(f"message body must be a JSON object, got {type(data).__name__}")
    _refuse_celery_v1(data)
    return data


def check_content_type(content_type: str | None) -> None:
    if content_type is None:
        return
    base = content_type.split(";", 1)[0].strip().lower()
    if base not in JSON_CONTENT_TYPES:
        known = KNOWN_CONTENT_TYPES.get(base)
        what = f"{content_type[:80]!r} ({known})" if known else repr(content_type[:80])
        raise DecodeError(f"refused content type {what}: only JSON is accepted")


def loads(raw: bytes | str) -> Any:
    """Strict JSON: UTF-8 text, no NaN or Infinity, bounded nesting."""
    try:
        return json.loads(_text(raw), parse_constant=_refuse_constant)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise DecodeError(f"message body is not valid JSON: {exc}") from None


def unwrap_envelope(envelope: dict[str, Any]) -> Any:
    """Open a Kombu envelope after checking its type, encoding and headers."""
    check_content_type(str(envelope.get("content-type") or "application/json"))
    encoding = envelope.get("content-encoding")
    if encoding is not None and str(encoding).lower().replace("-", "") != "utf8":
        raise DecodeError(f"refused content encoding {str(encoding)[:40]!r}: JSON text must be UTF-8")
    properties = envelope.get("properties")
    if not isinstance(properties, dict):
        raise DecodeError("Kombu envelope 'properties' is not an object")
    headers = envelope.get("headers") or {}
    if not isinstance(headers, dict):
        raise DecodeError("Kombu envelope 'headers' is not an object")
    if headers.get("compression"):
        raise DecodeError(f"refused compressed body ({str(headers['compression'])[:60]!r}): send plain JSON")
    body = _envelope_body(envelope.get("body"), properties.get("body_encoding"))
    data = body if isinstance(body, dict) else loads(body)
    if "task" in headers and "id" in headers:
        return _celery_v2_message(headers, data)
    return data


def readable_id(value: Any) -> str | None:
    """The id if it is usable as a key, else None (so a FAILED row can still be written)."""
    if isinstance(value, str) and re.fullmatch(ID_PATTERN, value):
        return value
    return None


def _text(raw: bytes | str) -> str:
    if not isinstance(raw, bytes | bytearray):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"message body is not valid JSON: {exc}") from None


def _base64_envelope(text: str, not_json: DecodeError) -> dict[str, Any]:
    """A whole envelope in base64, as Kombu's SQS transport sends by default; strictly that."""
    candidate = text.strip()
    if not _BASE64_TEXT.fullmatch(candidate):
        raise not_json
    try:
        data = loads(base64.b64decode(candidate, validate=True))
    except (binascii.Error, ValueError, DecodeError):
        raise DecodeError(f"{not_json} (nor base64 of a JSON Kombu envelope)") from None
    if not (isinstance(data, dict) and data.keys() >= _ENVELOPE_KEYS):
        raise DecodeError("message body is base64 text, but not of a Kombu envelope")
    return data


def _envelope_body(body: Any, encoding: Any) -> Any:
    if isinstance(encoding, str) and encoding.lower() in {"utf-8", "utf8"}:
        encoding = None  # Kombu's encode_body leaves such bodies as they are
    if encoding not in (None, "base64"):
        raise DecodeError(f"Kombu envelope has an unknown body_encoding {str(encoding)[:40]!r}")
    if encoding == "base64" and isinstance(body, str):
        try:
            body = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise DecodeError("Kombu envelope body is not valid base64") from None
    if not isinstance(body, dict | str | bytes):
        raise DecodeError("Kombu envelope has no body")
    return body


def _celery_v2_message(headers: dict[str, Any], data: Any) -> dict[str, Any]:
    """The task message inside a Celery protocol-2 body ``[args, kwargs, embed]``."""
    name = str(headers.get("task"))[:80]
    if not (
        isinstance(data, list)
        and len(data) == 3
        and isinstance(data[0], list)
        and isinstance(data[1], dict)
        and isinstance(data[2], dict | None)
    ):
        raise DecodeError(f"Celery task {name!r}: body is not protocol 2's [args, kwargs, embed]")
    args, kwargs, embed = data
    single = args[0] if len(args) == 1 and isinstance(args[0], dict) else None
    message = kwargs if kwargs and not args else single if single is not None and not kwargs else None
    ids = _ids(message or kwargs or single)
    if message is None:
        raise DecodeError(
            f"Celery task {name!r}: send the task message as kwargs or as one dict argument, "
            f"got {len(args)} positional and {len(kwargs)} keyword argument(s)",
            **ids,
        )
    canvas = [key for key in _CELERY_CANVAS if (embed or {}).get(key)]
    if canvas:
        raise DecodeError(
            f"Celery task {name!r} carries {', '.join(canvas)}, which this worker does not run: "
            "chain steps with publish_next instead",
            **ids,
        )
    if headers.get("eta"):
        raise DecodeError(
            f"Celery task {name!r} has an eta/countdown, which this worker does not honour: "
            "delay it with SQS DelaySeconds instead",
            **ids,
        )
    return message


def _refuse_celery_v1(data: dict[str, Any]) -> None:
    if not data.keys() >= _CELERY_V1_KEYS:
        return
    args, kwargs = data.get("args"), data.get("kwargs")
    single = args[0] if isinstance(args, list) and len(args) == 1 else None
    candidate = kwargs if isinstance(kwargs, dict) and kwargs else single
    raise DecodeError(
        f"Celery protocol 1 message (task {str(data.get('task'))[:80]!r}) is not supported: "
        "use protocol 2 (the default since Celery 4)",
        **_ids(candidate),
    )


def _ids(candidate: Any) -> dict[str, str | None]:
    if not isinstance(candidate, dict):
        return {"task_id": None, "job_id": None}
    return {"task_id": readable_id(candidate.get("task_id")), "job_id": readable_id(candidate.get("job_id"))}


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON; other languages' parsers reject them."""
    raise ValueError(f"{name} is not valid JSON")
