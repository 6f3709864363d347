"""The Storage interface and the guards every backend shares.

Backends implement a handful of primitives on resolved URIs. What hooks see is
:class:`ScopedStorage`, bound to one message's ``output_prefix``: it refuses any
write outside that prefix and any bucket outside the allowlist before a backend
is ever called.

Local files (``file://``) are read only under ``local_input_root``, through one
gate, :func:`resolve_local_input`: every backend's ``read`` and ``open`` and
the validate stage go through it, so a message cannot make the worker read
``/etc/passwd`` or a service-account token. Without a root nothing local is read.
"""

from __future__ import annotations

import mimetypes
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from kombu_worker_sdk.storage.prefetched import InputCache

from kombu_worker_sdk.errors import (
    LocalInputViolation,
    ObjectNotFoundError,
    OutputPrefixViolation,
    StorageError,
    UnsafeURIError,
)

RESULT_STEM = "result"
METRICS_FILE = "metrics.json"
_EXTRA_TYPES = {".json": "application/json", ".npy": "application/octet-stream"}
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


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

    def __init__(self, allowed_buckets: Iterable[str] = (), *, local_input_root: str | Path | None = None):
        """``local_input_root``: the one folder ``file://`` inputs may come from; None reads none."""
        self.allowed_buckets = frozenset(b for b in allowed_buckets if b)
        # realpath once: a symlinked root (macOS /tmp, a mounted volume) still contains its files
        self.local_input_root = None if local_input_root is None else Path(os.path.realpath(local_input_root))

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
        """Refuse a read from a bucket outside the allowlist, or a local path outside the root."""
        from kombu_worker_sdk.message import check_uri

        if is_local_uri(uri):
            self.local_input_path(uri)
            return
        try:  # the same rules as a message's URIs: no '..', no control characters
            check_uri(uri, field="uri")
        except ValueError as exc:
            raise UnsafeURIError(str(exc)) from None
        self.check_bucket(uri)

    def local_input_path(self, uri: str) -> Path:
        """The real file behind a ``file://`` URI, once proved to lie under ``local_input_root``.

        Backends open this path, not the URI's, so the file checked is the file read.
        """
        return resolve_local_input(uri, self.local_input_root)

    def check_bucket(self, uri: str) -> None:
        parts = urlsplit(uri)
        if parts.scheme == "s3" and self.allowed_buckets and parts.netloc not in self.allowed_buckets:
            raise UnsafeURIError(f"bucket {parts.netloc!r} is not in this worker's allowlist")

    def check_writable_prefix(self, output_prefix: str) -> None:
        """Refuse an output_prefix in a foreign bucket; backends add their own checks."""
        self.check_bucket(output_prefix)


class ScopedStorage:
    """``ctx.storage``: reads anywhere allowed, writes only under one ``output_prefix``."""

    def __init__(self, backend: Storage, output_prefix: str | None, cache: InputCache | None = None):
        self.backend = backend
        self.cache = cache  # inputs the prefetch stage read ahead (served after the guard)
        if output_prefix is not None and not output_prefix.endswith("/"):
            output_prefix += "/"
        self.output_prefix = output_prefix
        self.written: list[str] = []

    def read(self, uri: str) -> bytes:
        self.backend.check_readable(uri)
        cached = self.cache.get(uri) if self.cache is not None else None
        return cached if cached is not None else self.backend.read(uri)

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


def is_local_uri(uri: str) -> bool:
    """True for ``file:`` URIs in any letter case (urlsplit lower-cases the scheme)."""
    return urlsplit(uri).scheme == "file"


def resolve_local_input(uri: str, root: Path | None) -> Path:
    """The gate for every local read: the resolved path, or LocalInputViolation.

    Refused: any local read when ``root`` is None; a host (``file://host/...``, even
    ``localhost``: one spelling, no ambiguity); control characters, backslashes,
    ``.``/``..`` segments and double percent-encoding (``%252e``); and any path whose
    realpath (symlinks resolved) is not under ``root``.
    """
    shown = uri[:120]
    if root is None:
        raise LocalInputViolation(
            f"local input {shown!r} refused: this worker reads no local files"
            " (set local_input_root to a directory to allow reads under it)"
        )
    parts = urlsplit(uri)
    if parts.netloc:
        raise LocalInputViolation(f"local input {shown!r} names a host: only file:///path is read")
    if parts.query or parts.fragment:
        raise LocalInputViolation(f"local input {shown!r} carries a query or fragment")
    path = unquote(parts.path)
    if unquote(path) != path:
        raise LocalInputViolation(f"local input {shown!r} is percent-encoded twice")
    if _CONTROL_CHARS.search(path) or "\\" in path or not path.startswith("/"):
        raise LocalInputViolation(f"local input {shown!r} has control characters, a backslash or no path")
    if any(seg in {".", ".."} for seg in path.split("/")):
        raise LocalInputViolation(f"local input {shown!r} has a '.' or '..' segment")
    resolved = Path(os.path.realpath(path))
    if resolved != root and root not in resolved.parents:
        raise LocalInputViolation(f"local input {shown!r} resolves outside local_input_root {root}")
    return resolved


def open_local(path: Path, uri: str) -> BinaryIO:
    """Open a file that :func:`resolve_local_input` returned, with the SDK's errors."""
    try:
        return path.open("rb")  # the caller closes it
    except FileNotFoundError:
        raise ObjectNotFoundError(f"no object at {uri[:300]}") from None
    except OSError as exc:
        raise StorageError(f"cannot read {uri[:300]}: {exc.strerror or exc}") from exc


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
