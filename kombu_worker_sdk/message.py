"""The message contract: what a task message is, and how a decoded body is checked.

Bodies arrive as raw JSON (``aws sqs send-message``, any non-Python producer), as
Kombu envelopes, or as Celery protocol-2 tasks; :mod:`kombu_worker_sdk.decoding`
turns each into a JSON object (JSON only: pickle and every other content type are
refused with :class:`~kombu_worker_sdk.errors.DecodeError`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kombu_worker_sdk.decoding import ID_PATTERN, JSON_CONTENT_TYPES, decode_body, readable_id
from kombu_worker_sdk.errors import InvalidMessageError, UnsafeURIError

__all__ = [
    "ID_PATTERN",
    "JSON_CONTENT_TYPES",
    "FanIn",
    "NextMessage",
    "TaskMessage",
    "decode_body",
    "parse_next",
    "parse_task",
]
URI_SCHEMES = frozenset({"s3", "file"})
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@functools.lru_cache(maxsize=256)
def check_uri(uri: str, *, field: str) -> str:
    """Refuse URIs with a foreign scheme, control characters or ``..`` segments.

    A pure function of its arguments, asked several times per message (the model, the
    storage guard before each read): passing results are remembered, refusals are not.
    The checks of one message come close together, so a few hundred entries serve them.
    """
    if _CONTROL_CHARS.search(uri):
        raise ValueError(f"{field} contains control characters")
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field} is not valid Unicode text") from None
    parts = urlsplit(uri)
    if parts.scheme not in URI_SCHEMES:
        raise ValueError(f"{field} must be an s3:// or file:// URI, got {uri[:80]!r}")
    if parts.scheme == "s3" and not parts.netloc:
        raise ValueError(f"{field} has no bucket: {uri[:80]!r}")
    decoded = unquote(unquote(parts.path))
    # file:// paths are judged by the storage guard (realpath under local_input_root), which
    # refuses '..' too, so every local path is refused with one error: LocalInputViolation.
    dots = parts.scheme != "file" and any(seg in {"..", "."} for seg in decoded.replace("\\", "/").split("/"))
    if dots:
        raise ValueError(f"{field} contains a '.' or '..' segment: {uri[:80]!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{field} must not carry a query or fragment")
    return uri


class TaskMessage(BaseModel):
    """One unit of work, exactly the seed README's input schema plus an optional trace id.

    Hooks receive it as ``msg``; ``msg["job_id"]`` and ``msg.job_id`` both work.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    job_id: str = Field(pattern=ID_PATTERN)
    task_id: str = Field(pattern=ID_PATTERN)
    input_uri: str = Field(max_length=2048)
    output_prefix: str = Field(max_length=1024)
    params: dict[str, Any] = Field(default_factory=dict)
    trace_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9\-]{1,64}$")

    @field_validator("input_uri")
    @classmethod
    def _check_input(cls, value: str) -> str:
        return check_uri(value, field="input_uri")

    @field_validator("output_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        check_uri(value, field="output_prefix")
        return value if value.endswith("/") else value + "/"

    @field_validator("params")
    @classmethod
    def _check_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:  # what cannot be re-encoded cannot be hashed, stored or published
            json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            raise ValueError(f"params are not encodable JSON text: {type(exc).__name__}") from None
        return value

    def __getitem__(self, key: str) -> Any:
        """Let hooks written against the seed README index the message like a dict."""
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style ``get``, for hooks that treat ``msg`` as a mapping."""
        return getattr(self, key, default) if key in type(self).model_fields else default

    def to_body(self) -> dict[str, Any]:
        """The plain JSON body sent on the wire (unset optional fields left out)."""
        return self.model_dump(exclude_none=True)

    def content_hash(self) -> str:
        """A digest of the contract fields, to catch a task_id reused for other work.

        Computed once per message (claim, completion and failure all ask): the model is
        frozen, and ``trace_id``, the one field ``model_copy`` changes, is not hashed.
        """
        return self._digest

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; the remembered content hash goes unless only ``trace_id`` changed."""
        copy = super().model_copy(update=update, deep=deep)
        if update and set(update) - {"trace_id"}:
            copy.__dict__.pop("_digest", None)
        return copy

    @functools.cached_property
    def _digest(self) -> str:
        # A cached_property, not a private attribute: pydantic's == ignores it.
        core = self.model_dump(include={"job_id", "task_id", "input_uri", "output_prefix", "params"})
        canonical = json.dumps(core, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


class FanIn(BaseModel):
    """Makes a next message wait for a group of siblings (a barrier).

    Every sibling returns the same child with the same ``group``. The SDK counts
    finished siblings atomically in the state store and publishes the child once,
    when the ``size``-th sibling is DONE. Groups are scoped to the job.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str = Field(pattern=ID_PATTERN)
    size: int = Field(ge=1, le=100_000)


class NextMessage(TaskMessage):
    """A message returned by ``publish_next``: a task message plus routing directives.

    ``fan_in`` and ``queue`` steer the SDK and are stripped before sending.
    """

    fan_in: FanIn | None = None
    queue: str | None = Field(default=None, max_length=1024)

    def task(self) -> TaskMessage:
        """The task message that goes on the wire, without the SDK's directives."""
        return TaskMessage.model_validate(self.model_dump(exclude={"fan_in", "queue"}))


def parse_task(data: dict[str, Any]) -> TaskMessage:
    """Validate a decoded body against the contract; InvalidMessageError names each field."""
    try:
        return TaskMessage.model_validate(data)
    except ValidationError as exc:
        raise InvalidMessageError(
            f"invalid task message: {_summarise(exc)}",
            task_id=readable_id(data.get("task_id")),
            job_id=readable_id(data.get("job_id")),
        ) from None


def parse_next(data: dict[str, Any], *, parent: TaskMessage) -> NextMessage:
    """Validate one message returned by ``publish_next``; children stay in the parent's job."""
    body = {"trace_id": parent.trace_id, **data} if parent.trace_id else data
    try:
        child = NextMessage.model_validate(body)
    except ValidationError as exc:
        raise InvalidMessageError(f"publish_next returned an invalid message: {_summarise(exc)}") from None
    if child.job_id != parent.job_id:
        raise UnsafeURIError(
            f"child {child.task_id!r} names job {child.job_id!r}, not its parent's {parent.job_id!r}"
        )
    return child


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        # ascii(): a hostile key name must not carry NUL or control bytes into logs and the DB
        where = ".".join(ascii(p)[1:-1] if isinstance(p, str) else str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
