"""The Storage interface and the guards every backend shares.

Backends implement a handful of primitives on resolved URIs. What hooks see is
:class:`ScopedStorage`, bound to one message's ``output_prefix``: it refuses any
write outside that prefix and any bucket outside the allowlist before a backend
is ever called.
"""

from __future__ import annotations

import mimetypes
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from ..errors import OutputPrefixViolation, UnsafeURIError

RESULT_STEM = "result"
METRICS_FILE = "metrics.json"
_EXTRA_TYPES = {".json": "application/json", ".npy": "application/octet-stream"}


def content_type_for(name: str) -> str:
    """The Content-Type to store with an object, from its file name."""
    for ext, ctype in _EXTRA_TYPES.items():
        if name.endswith(ext):
            return ctype
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def join_uri(prefix: str, name: str) -> str:
    return prefix.rstrip("/") + "/" + name.lstrip("/")


class Storage(ABC):
    """A backend that reads and writes objects by URI (``s3://`` or ``file://``)."""

    def __init__(self, allowed_buckets: Iterable[str] = (), *, allow_local_input: bool = False):
        self.allowed_buckets = frozenset(b for b in allowed_buckets if b)
        self.allow_local_input = allow_local_input

    @abstractmethod
    def read(self, uri: str) -> bytes:
        """Return the object's bytes; ObjectNotFoundError if it does not exist."""

    @abstractmethod
    def open(self, uri: str) -> BinaryIO:
        """Open the object for streaming reads, for inputs too large to hold twice."""

    @abstractmethod
    def put(self, uri: str, data: bytes, content_type: str) -> None:
        """Store ``data`` at ``uri`` (already checked by the guards)."""

    @abstractmethod
    def find_result(self, output_prefix: str) -> str | None:
        """The URI of ``result.*`` under ``output_prefix``, in one request; None if absent."""

    def check_readable(self, uri: str) -> None:
        """Refuse a read from a bucket outside the allowlist, or a local path when barred."""
        from ..message import check_uri

        try:  # the same rules as a message's URIs: no '..', no control characters
            check_uri(uri, field="uri")
        except ValueError as exc:
            raise UnsafeURIError(str(exc)) from None
        parts = urlsplit(uri)
        if parts.scheme == "file":
            if not self.allow_local_input:
                raise UnsafeURIError(f"local input {uri[:120]!r} is not allowed on this worker")
            return
        self.check_bucket(uri)

    def check_bucket(self, uri: str) -> None:
        parts = urlsplit(uri)
        if parts.scheme == "s3" and self.allowed_buckets and parts.netloc not in self.allowed_buckets:
            raise UnsafeURIError(f"bucket {parts.netloc!r} is not in this worker's allowlist")

    def check_writable_prefix(self, output_prefix: str) -> None:
        """Refuse an output_prefix in a foreign bucket; backends add their own checks."""
        self.check_bucket(output_prefix)


class ScopedStorage:
    """``ctx.storage``: reads anywhere allowed, writes only under one ``output_prefix``."""

    def __init__(self, backend: Storage, output_prefix: str | None):
        self.backend = backend
        if output_prefix is not None and not output_prefix.endswith("/"):
            output_prefix += "/"
        self.output_prefix = output_prefix
        self.written: list[str] = []

    def read(self, uri: str) -> bytes:
        self.backend.check_readable(uri)
        return self.backend.read(uri)

    def open(self, uri: str) -> BinaryIO:
        self.backend.check_readable(uri)
        return self.backend.open(uri)

    def write(self, prefix: str, filename: str, data: bytes | str) -> str:
        """Write ``data`` to ``prefix/filename`` and return its URI; only under output_prefix."""
        if self.output_prefix is None:
            raise OutputPrefixViolation("no output_prefix: writes happen only while handling a message")
        uri = guarded_uri(self.output_prefix, prefix, filename)
        self.backend.check_writable_prefix(self.output_prefix)
        payload = data.encode("utf-8") if isinstance(data, str) else data
        self.backend.put(uri, payload, content_type_for(filename))
        self.written.append(uri)
        return uri


def guarded_uri(output_prefix: str, prefix: str, filename: str) -> str:
    """Join ``prefix`` and ``filename``, refusing anything that escapes ``output_prefix``.

    Both sides are percent-decoded (twice, to catch ``%252e``) before checking,
    so ``..``, absolute names, backslashes and NUL bytes are all refused.
    """
    prefix = prefix or output_prefix
    if not prefix.endswith("/"):
        prefix += "/"
    if not prefix.startswith(output_prefix):
        raise OutputPrefixViolation(f"write prefix {prefix!r} is outside {output_prefix!r}")
    relative = prefix[len(output_prefix) :] + filename
    _check_relative(relative)
    return output_prefix + relative


def _check_relative(relative: str) -> None:
    decoded = unquote(unquote(relative))
    if not relative or relative.endswith("/"):
        raise OutputPrefixViolation(f"file name {relative!r} is empty or a folder")
    if "\x00" in decoded or "\\" in decoded:
        raise OutputPrefixViolation(f"file name {relative!r} contains NUL or a backslash")
    if decoded.startswith("/") or "://" in decoded:
        raise OutputPrefixViolation(f"file name {relative!r} is absolute")
    if any(seg in {"", ".", ".."} for seg in decoded.split("/")):
        raise OutputPrefixViolation(f"file name {relative!r} has an empty, '.' or '..' segment")
