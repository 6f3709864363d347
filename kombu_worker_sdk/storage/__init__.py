"""Storage backends, chosen by URL: ``file://ROOT``, ``memory://`` or ``s3://``."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError
from .base import ScopedStorage, Storage, content_type_for, guarded_uri
from .local import LocalStorage
from .memory import MemoryStorage

__all__ = [
    "LocalStorage",
    "MemoryStorage",
    "ScopedStorage",
    "Storage",
    "content_type_for",
    "guarded_uri",
    "open_storage",
]


def open_storage(
    url: str, *, allowed_buckets: Iterable[str] = (), allow_local_input: bool = False
) -> Storage:
    """Build the backend named by ``url``; ConfigError for an unknown scheme."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        path = unquote(urlsplit(url).path)
        return LocalStorage(path, allowed_buckets=allowed_buckets, allow_local_input=allow_local_input)
    if scheme == "memory":
        return MemoryStorage(allowed_buckets=allowed_buckets, allow_local_input=allow_local_input)
    if scheme == "s3":
        from .s3 import S3Storage

        return S3Storage(allowed_buckets=allowed_buckets, allow_local_input=allow_local_input)
    raise ConfigError(f"storage_url {url!r}: scheme must be file://, memory:// or s3://")
