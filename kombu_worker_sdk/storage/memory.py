"""In-memory storage, for unit tests and benchmarks: no disk, no network."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from kombu_worker_sdk.errors import ObjectNotFoundError
from kombu_worker_sdk.storage.base import RESULT_STEM, Storage


class MemoryStorage(Storage):
    """Objects in a dict keyed by URI; ``puts`` records every write, to count them."""

    def __init__(
        self, *, allowed_buckets: Iterable[str] = (), local_input_root: str | Path | None = None
    ) -> None:
        super().__init__(allowed_buckets, local_input_root=local_input_root)
        self.objects: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}
        self.puts: list[str] = []
        self._results: dict[str, str] = {}  # output_prefix → result URI: one lookup, like S3's one request
        self._lock = threading.Lock()

    def read(self, uri: str) -> bytes:
        """Held to the same guard as the disk and S3 backends, so unit tests see real refusals."""
        self.check_readable(uri)
        try:
            return self.objects[uri]
        except KeyError:
            raise ObjectNotFoundError(f"no object at {uri}") from None

    def open(self, uri: str) -> BinaryIO:
        return io.BytesIO(self.read(uri))

    def put(self, uri: str, data: bytes, content_type: str) -> None:
        with self._lock:
            self.objects[uri] = data
            self.content_types[uri] = content_type
            self.puts.append(uri)
            prefix, _, name = uri.rpartition("/")
            if name.startswith(RESULT_STEM + "."):
                self._results[prefix] = min(self._results.get(prefix, uri), uri)

    def find_result(self, output_prefix: str) -> str | None:
        with self._lock:
            return self._results.get(output_prefix.rstrip("/"))
