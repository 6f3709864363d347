"""Structured JSON logging through python-json-logger.

Every line is one JSON object carrying ``job_id``, ``task_id``, ``stage`` and
``attempt`` (null outside a task), so one job can be followed across steps. With
OpenTelemetry on, ``trace_id`` and ``span_id`` are the task span's.
Hooks log through ``ctx.logger``, a :class:`TaskLogger` bound to the message.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from kombu_worker_sdk.masking import mask_url
from kombu_worker_sdk.observability import tracing

TASK_FIELDS = ("job_id", "task_id", "stage", "attempt", "trace_id", "span_id", "worker_id")
ROOT_LOGGER = "kombu_worker_sdk"


class TaskFieldsFilter(logging.Filter):
    """Give every record the task fields (None when unset) and mask URL passwords."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in TASK_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, None)
        if (
            getattr(record, "span_id", None) is None
        ):  # a line outside a run's logger: the current span, if any
            ids = tracing.active().log_ids()
            if ids is not None:
                record.trace_id, record.span_id = ids
        if isinstance(record.msg, str) and "://" in record.msg:
            record.msg = mask_url(record.msg)
        return True


class TaskLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger bound to one message's ids; ``bind`` returns a copy with more fields."""

    def __init__(self, logger: logging.Logger, fields: dict[str, Any] | None = None):
        super().__init__(logger, dict(fields or {}))

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**dict(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs

    @property
    def fields(self) -> dict[str, Any]:
        return dict(self.extra or {})

    def bind(self, **fields: Any) -> TaskLogger:
        return TaskLogger(self.logger, {**self.fields, **fields})

    def set_stage(self, stage: str | None) -> None:
        """Name the stage on every following line (the adapter belongs to one message)."""
        assert isinstance(self.extra, dict)
        self.extra["stage"] = stage


def get_logger(name: str = ROOT_LOGGER, **fields: Any) -> TaskLogger:
    return TaskLogger(logging.getLogger(name), fields)


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send the SDK's (and the hooks') logs to ``stream`` as JSON lines; idempotent."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_kombu_worker", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "asctime": "time"},
        )
    )
    handler.addFilter(TaskFieldsFilter())
    handler._kombu_worker = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "kombu"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # Kombu warns on every host-less URL (filesystem://, sqs:// with an env endpoint).
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)
