"""Storage backends, chosen by URL: ``file://ROOT``, ``memory://`` or ``s3://``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from kombu_worker_sdk.errors import ConfigError
from kombu_worker_sdk.storage.base import (
    ScopedStorage,
    Storage,
    content_type_for,
    guarded_uri,
    resolve_local_input,
)
from kombu_worker_sdk.storage.local import LocalStorage
from kombu_worker_sdk.storage.memory import MemoryStorage

__all__ = [
    "LocalStorage",
    "MemoryStorage",
    "ScopedStorage",
    "Storage",
    "content_type_for",
    "guarded_uri",
    "open_storage",
    "resolve_local_input",
]


def open_storage(
    url: str, *, allowed_buckets: Iterable[str] = (), local_input_root: str | Path | None = None
) -> Storage:
    """Build the backend named by ``url``; ConfigError for an unknown scheme.

    ``local_input_root`` is the only folder ``file://`` inputs are read from (None: none).
    """
    scheme = urlsplit(url).scheme
    if scheme == "file":
        path = unquote(urlsplit(url).path)
        return LocalStorage(path, allowed_buckets=allowed_buckets, local_input_root=local_input_root)
    if scheme == "memory":
        return MemoryStorage(allowed_buckets=allowed_buckets, local_input_root=local_input_root)
    if scheme == "s3":
        from kombu_worker_sdk.storage.s3 import S3Storage

        return S3Storage(allowed_buckets=allowed_buckets, local_input_root=local_input_root)
    raise ConfigError(f"storage_url {url!r}: scheme must be file://, memory:// or s3://")
