"""The configuration model: every key, its default and bounds, and how backends are chosen.

Loading (files, environment, flags) lives in :mod:`kombu_worker_sdk.config.loading`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kombu_worker_sdk.errors import ConfigError
from kombu_worker_sdk.masking import mask_secrets, mask_url

BUILT_IN = "built-in default"
QUEUE_KEYS = ("queue", "next_queue", "dead_letter_queue")


def is_sqs_queue_url(value: Any) -> bool:
    """SQS names queues by URL (``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME``, or http:// locally)."""
    return isinstance(value, str) and value.startswith(("https://", "http://"))


@dataclass(frozen=True)
class BackendRule:
    """A backend key that, when unset, follows the form of other settings."""

    key: str  # the backend key: broker_url or storage_url
    implied: str  # the URL those settings imply
    by: tuple[str, ...]  # the keys whose value implies it, first match wins
    form: str  # how to name such a value in an error
    matches: Callable[[Any], bool]


BACKEND_RULES = (
    BackendRule("broker_url", "sqs://", QUEUE_KEYS, "an SQS queue URL", is_sqs_queue_url),
    BackendRule("storage_url", "s3://", ("bucket",), "an S3 bucket", bool),
)


class StageSpec(BaseModel):
    """A custom stage named in YAML: ``{class: pkg.mod:Stage, before: hooks}``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    class_path: str = Field(alias="class")
    before: str | None = None
    after: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class WorkerConfig(BaseModel):
    """The one validated configuration of a worker; ``ctx.config`` is this object."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Where messages come from and go to.
    broker_url: str | None = Field(default=None, repr=False)  # None: follows the queue's form
    queue: str = "tasks"
    next_queue: str | None = None
    dead_letter_queue: str | None = None
    # Embedded defaults live under one folder; unused by sqs:// + s3:// + postgresql://.
    data_dir: Path = Path(".kombu-worker")
    storage_url: str | None = None
    bucket: str | None = None
    allowed_buckets: list[str] = Field(default_factory=list)
    # file:// inputs are read only under this folder; unset: data_dir in embedded mode, else none.
    local_input_root: Path | None = None
    db_dsn: str | None = Field(default=None, repr=False)  # secrets stay out of repr()
    # How the worker runs.
    concurrency: int = Field(default=1, ge=1, le=256)
    prefetch: int | None = Field(default=None, ge=1, le=1000)
    batch_size: int = Field(default=1, ge=1, le=1024)
    batch_wait_ms: int = Field(default=0, ge=0, le=60_000)
    # The lanes (README "Feeding a GPU"): I/O-lane threads, and how far prefetch may grow.
    io_concurrency: int | None = Field(default=None, ge=1, le=512)
    prefetch_max: int | None = Field(default=None, ge=1, le=1000)
    # Read each input_uri before the hooks, up to this many bytes (larger ones stream).
    prefetch_input: bool = True
    prefetch_input_max_bytes: int = Field(default=16 * 1_048_576, ge=0, le=1_073_741_824)
    max_attempts: int = Field(default=3, ge=1, le=100)
    retry_backoff_seconds: float = Field(default=1.0, ge=0)
    retry_backoff_max_seconds: float = Field(default=300.0, ge=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    max_message_bytes: int = Field(default=262_144, ge=1024, le=1_048_576)
    # SQS specifics.
    region: str | None = None
    wait_time_seconds: int = Field(default=20, ge=0, le=20)
    receive_batch_size: int | None = Field(default=None, ge=1, le=10)
    visibility_timeout: int = Field(default=60, ge=0, le=43_200)
    fifo_group_by: Literal["job_id", "task_id"] = "job_id"
    # Hooks that misbehave (README "Operating hooks that misbehave"): Celery's
    # task_soft_time_limit / task_time_limit, worker_max_tasks_per_child,
    # worker_max_memory_per_child and rate_limit. Unset: no limit.
    soft_time_limit_seconds: float | None = Field(default=None, gt=0)
    time_limit_seconds: float | None = Field(default=None, gt=0)
    max_tasks_per_worker: int | None = Field(default=None, ge=1)
    max_memory_mb: int | None = Field(default=None, ge=1)
    rate_limit: str | None = None  # "10/s", "600/m", "3600/h"
    # Operations.
    stages: list[StageSpec] = Field(default_factory=list)
    log_level: str = "INFO"
    health_port: int | None = Field(default=None, ge=0, le=65535)
    worker_id: str | None = None

    # Where each value came from; load_config fills it, users cannot set it.
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("local_input_root")
    @classmethod
    def _check_local_input_root(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @model_validator(mode="after")
    def _check_dirs(self) -> WorkerConfig:
        if self.retry_backoff_max_seconds < self.retry_backoff_seconds:
            raise ValueError("retry_backoff_max_seconds must be >= retry_backoff_seconds")
        return self

    @field_validator("rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str | None) -> str | None:
        from kombu_worker_sdk.limits import parse_rate

        if value is not None:
            parse_rate(value)  # ConfigError names the accepted forms
        return value

    @model_validator(mode="after")
    def _check_time_limits(self) -> WorkerConfig:
        soft, hard = self.soft_time_limit_seconds, self.time_limit_seconds
        if soft is not None and hard is not None and soft >= hard:
            raise ValueError("soft_time_limit_seconds must be below time_limit_seconds")
        return self

    @model_validator(mode="after")
    def _check_backends(self, info: ValidationInfo) -> WorkerConfig:
        """Refuse a backend set against the form of another setting (raised as is, one line)."""
        if info.context and "sources" in info.context:
            self._sources = dict(info.context["sources"])
        for rule in BACKEND_RULES:
            explicit, by = getattr(self, rule.key), self._implied_by(rule)
            if explicit and by and _scheme(explicit) != _scheme(rule.implied):
                raise ConfigError(
                    f"{self._says(by, rule.form)} but {self._says(rule.key)}: unset {rule.key} "
                    f"(it follows {by}) or set it to {rule.implied}"
                )
        return self

    def _implied_by(self, rule: BackendRule) -> str | None:
        return next((key for key in rule.by if rule.matches(getattr(self, key))), None)

    def _says(self, key: str, form: str | None = None) -> str:
        """``$QUEUE_URL is an SQS queue URL (https://…)`` / ``config/x.yaml sets broker_url: …``."""
        value, source = mask_url(str(getattr(self, key))), self._sources.get(key)
        if form is None:
            return f"{source} sets {key}: {value}" if source else f"{key} is {value}"
        if source and source.startswith("$"):
            return f"{source} is {form} ({value})"
        return f"{source} sets {key} to {form} ({value})" if source else f"{key} is {form} ({value})"

    def _backend(self, rule: BackendRule) -> tuple[str | None, str | None]:
        """(url, key that chose it): the key itself when set, the implying key, or (None, None)."""
        explicit, by = getattr(self, rule.key), self._implied_by(rule)
        if explicit:
            return explicit, rule.key
        return (rule.implied, by) if by else (None, None)

    @property
    def effective_broker_url(self) -> str:
        """``broker_url``, else ``sqs://`` for an SQS queue URL, else the embedded transport."""
        return self._backend(BACKEND_RULES[0])[0] or "filesystem://"

    @property
    def effective_storage_url(self) -> str:
        """``storage_url``, else ``s3://`` when BUCKET is set, else files under data_dir."""
        return self._backend(BACKEND_RULES[1])[0] or f"file://{(self.data_dir / 'storage').resolve()}"

    @property
    def effective_local_input_root(self) -> Path | None:
        """Where ``file://`` inputs may be read: the configured root, else data_dir in embedded mode.

        A worker on SQS or with S3 storage reads no local file unless a root is named:
        a message must not reach ``/etc/passwd`` or a service-account token.
        """
        if self.local_input_root is not None:
            return self.local_input_root
        embedded = self.is_embedded_broker and self.effective_storage_url.startswith("file://")
        return self.data_dir if embedded else None

    @property
    def effective_db_dsn(self) -> str:
        return self.db_dsn or f"sqlite:///{(self.data_dir / 'state.db').resolve()}"

    @property
    def effective_dead_letter_queue(self) -> str:
        if self.dead_letter_queue:
            return self.dead_letter_queue
        base, fifo = (self.queue[:-5], ".fifo") if self.queue.endswith(".fifo") else (self.queue, "")
        return f"{base}-dlq{fifo}"

    @property
    def claim_lease_seconds(self) -> int:
        """How long a claim lasts without a heartbeat: one visibility timeout (at least 1 s).

        The heartbeat pushes it with the visibility, so a crashed worker's claim has
        expired by the time SQS shows its message to another worker.
        """
        return max(self.visibility_timeout, 1)

    @property
    def device_slots(self) -> int:
        """Messages the device lane can run at once: one micro-batch per device thread."""
        return self.concurrency * self.batch_size

    @property
    def effective_prefetch(self) -> int:
        """The starting prefetch: a batch per device thread running and one being prepared.

        ``receive_batch_size`` (opt-in, for short steps) adds a local buffer of that
        many, so every ReceiveMessage can bring a full batch while the pool stays busy.
        With ``prefetch`` unset, the worker grows it towards :attr:`effective_prefetch_max`
        as far as keeping the device fed needs (``worker.prefetch.PrefetchGovernor``).
        """
        return self.prefetch or 2 * self.device_slots + (self.receive_batch_size or 0)

    @property
    def effective_prefetch_max(self) -> int:
        """The most messages held invisible: ``prefetch`` when set (then fixed), else
        ``prefetch_max``, else enough for a batch preparing, ready, running and finishing
        twice over per device thread."""
        if self.prefetch:
            return self.prefetch
        return max(self.prefetch_max or max(16, 8 * self.device_slots), self.effective_prefetch)

    @property
    def effective_io_concurrency(self) -> int:
        """Most threads in each half of the I/O lane (prepare, finish); each runs one group at
        a time, and a lane grows to this only while it waits on I/O (``worker.lanes``)."""
        return self.io_concurrency or max(8, 4 * self.concurrency)

    @property
    def batch_io_threads(self) -> int:
        """Threads for the concurrent storage requests of every group in the I/O lane.

        Both halves of the lane map their groups' requests onto this one pool; at the
        device's pace that is a few batches' worth of requests at once. S3's connection
        pool holds as many (``storage.s3``), so no request waits for a connection.
        """
        return min(64, max(16, 8 * self.batch_size))

    @property
    def receive_slots(self) -> int:
        """Free slots the consumer waits for before it polls again."""
        return min(self.receive_batch_size or 1, self.effective_prefetch)

    @property
    def is_embedded_broker(self) -> bool:
        return _scheme(self.effective_broker_url) in {"filesystem", "memory"}

    @property
    def is_sqs_broker(self) -> bool:
        return _scheme(self.effective_broker_url) == "sqs"

    @property
    def backend_urls(self) -> dict[str, str]:
        """The broker, storage and state URLs actually in use (unmasked)."""
        return {
            "broker_url": self.effective_broker_url,
            "storage_url": self.effective_storage_url,
            "db_dsn": self.effective_db_dsn,
        }

    @property
    def sources(self) -> dict[str, str]:
        """Where each value came from: a file, ``$VAR``, ``command line``, the built-in
        default, or ``derived from $QUEUE_URL`` for a backend that follows another key."""
        found = {
            key: self._sources.get(key) or ("set in code" if key in self.model_fields_set else BUILT_IN)
            for key in type(self).model_fields
        }
        for rule in BACKEND_RULES:
            _url, by = self._backend(rule)
            if by and by != rule.key:
                source = found[by]
                found[rule.key] = f"derived from {source if source.startswith('$') else f'{by} ({source})'}"
        return found

    def masked(self) -> dict[str, Any]:
        """The config as plain data with every password and secret masked."""
        masked: dict[str, Any] = mask_secrets(self.model_dump(mode="json", by_alias=True))
        return masked

    def show(self) -> str:
        """YAML of the values in use (backends resolved), secrets masked, each line
        commented with where the value came from: what ``kombu-worker config show`` prints."""
        values = mask_secrets({**self.model_dump(mode="json", by_alias=True), **self.backend_urls})
        sources = self.sources
        lines = []
        for key in sorted(values):
            first, *rest = yaml.safe_dump({key: values[key]}, sort_keys=False, width=1_000_000).splitlines()
            lines.extend([f"{first}  # {sources.get(key, BUILT_IN)}", *rest])
        return "\n".join(lines) + "\n"


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()
