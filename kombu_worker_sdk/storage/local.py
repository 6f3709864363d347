"""Local-disk storage: the embedded default, no server and no account.

``s3://bucket/key`` maps to ``ROOT/bucket/key`` so the same messages run
locally and on S3; ``file:///abs/path`` reads a local file, only under
``local_input_root`` (see :func:`~.base.resolve_local_input`). Writes are atomic
(temp file + rename), so a half-written ``result.*`` never exists to fool the
idempotency check, and resolved paths must stay under the root, so a symlink
cannot carry a write outside it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from kombu_worker_sdk.errors import OutputPrefixViolation, UnsafeURIError
from kombu_worker_sdk.storage.base import RESULT_STEM, Storage, is_local_uri, open_local


class LocalStorage(Storage):
    """Objects as files under ``root``."""

    def __init__(
        self,
        root: str | Path,
        *,
        allowed_buckets: Iterable[str] = (),
        local_input_root: str | Path | None = None,
    ) -> None:
        super().__init__(allowed_buckets, local_input_root=local_input_root)
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, uri: str) -> Path:
        """The local path behind ``uri``."""
        parts = urlsplit(uri)
        if parts.scheme == "s3":
            bucket = (self.root / parts.netloc).resolve()
            path = (bucket / unquote(parts.path).lstrip("/")).resolve()
            if not parts.netloc or "/" in parts.netloc or (path != bucket and bucket not in path.parents):
                raise UnsafeURIError(f"{uri[:120]!r} resolves outside its bucket")
            return path
        if parts.scheme == "file":
            return Path(unquote(parts.path))
        raise UnsafeURIError(f"unsupported URI scheme in {uri[:120]!r}")

    def read(self, uri: str) -> bytes:
        with self.open(uri) as handle:
            return handle.read()

    def open(self, uri: str) -> BinaryIO:
        if is_local_uri(uri):  # a message's file:// input: only under local_input_root
            return open_local(self.local_input_path(uri), uri)
        self.check_readable(uri)  # defence in depth: ScopedStorage checks too
        return open_local(self.path_for(uri), uri)

    def put(self, uri: str, data: bytes, content_type: str) -> None:
        path = self._writable_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._check_inside_root(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def find_result(self, output_prefix: str) -> str | None:
        folder = self.path_for(output_prefix)
        try:
            names = sorted(n for n in os.listdir(folder) if n.startswith(RESULT_STEM + "."))
        except FileNotFoundError:
            return None
        return output_prefix.rstrip("/") + "/" + names[0] if names else None

    def check_writable_prefix(self, output_prefix: str) -> None:
        super().check_writable_prefix(output_prefix)
        self._writable_path(output_prefix)

    def _writable_path(self, uri: str) -> Path:
        try:
            path = self.path_for(uri)
        except UnsafeURIError as exc:
            raise OutputPrefixViolation(str(exc)) from None
        self._check_inside_root(path)
        return path

    def _check_inside_root(self, path: Path) -> None:
        """Resolve symlinks and refuse anything that lands outside the storage root."""
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise OutputPrefixViolation(f"{path} resolves outside the storage root {self.root}")
