"""State stores, chosen by URL: ``sqlite:///path`` or ``postgresql://…``."""

from __future__ import annotations

from urllib.parse import urlsplit

from kombu_worker_sdk.errors import ConfigError
from kombu_worker_sdk.masking import mask_url
from kombu_worker_sdk.state.base import (
    Claim,
    ClaimOutcome,
    JobRecord,
    JobStatus,
    OpenTask,
    PendingChild,
    StateStore,
    TaskRecord,
    TaskStatus,
)
from kombu_worker_sdk.state.sqlite import SqliteStateStore

__all__ = [
    "Claim",
    "ClaimOutcome",
    "JobRecord",
    "JobStatus",
    "OpenTask",
    "PendingChild",
    "SqliteStateStore",
    "StateStore",
    "TaskRecord",
    "TaskStatus",
    "open_state",
]


def open_state(dsn: str, *, read_only: bool = False) -> StateStore:
    """Build the store named by ``dsn``; ConfigError (password masked) for a bad one.

    ``read_only`` is for commands that only look (``status``): an SQLite file that
    does not exist is a StateError naming the path, never a new empty database.
    """
    scheme = urlsplit(dsn).scheme
    if scheme == "sqlite":
        # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute.db
        path = dsn[len("sqlite:///") :] if dsn.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError("db_dsn needs a path: sqlite:///relative.db or sqlite:////abs.db")
        return SqliteStateStore(path, read_only=read_only)
    if scheme in {"postgresql", "postgres"}:
        from kombu_worker_sdk.state.postgres import PostgresStateStore

        return PostgresStateStore(dsn)
    raise ConfigError(f"db_dsn {mask_url(dsn)!r}: scheme must be sqlite:// or postgresql://")
