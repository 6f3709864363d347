"""Inputs read ahead of the hooks, held in memory until their message settles.

The input-prefetch stage (``stages.prefetch``) fills this cache on the I/O lane, so
``ctx.storage.read(msg["input_uri"])`` inside ``process`` returns at once. Only the
bytes live here: :class:`~kombu_worker_sdk.storage.base.ScopedStorage` runs its read
guard before it looks, so a cached input is never served where a read would be refused.
Entries are counted per message (two messages may share an input) and the whole cache
has a byte budget: past it, an input is simply not prefetched and the hook streams it.
"""

from __future__ import annotations

import threading


class InputCache:
    """URI → bytes, reference-counted, within ``budget_bytes``."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self.size = 0
        self.hits = 0
        self._entries: dict[str, tuple[bytes, int]] = {}
        self._lock = threading.Lock()

    def put(self, uri: str, data: bytes) -> bool:
        """Hold ``data`` for one more message; False (not held) when over the budget."""
        with self._lock:
            held = self._entries.get(uri)
            if held is not None:
                self._entries[uri] = (held[0], held[1] + 1)
                return True
            if self.size + len(data) > self.budget:
                return False
            self._entries[uri] = (data, 1)
            self.size += len(data)
            return True

    def get(self, uri: str) -> bytes | None:
        with self._lock:
            held = self._entries.get(uri)
            if held is not None:
                self.hits += 1
            return held[0] if held is not None else None

    def release(self, uri: str) -> None:
        """One message is done with ``uri``: drop the bytes when no other needs them."""
        with self._lock:
            held = self._entries.get(uri)
            if held is None:
                return
            if held[1] > 1:
                self._entries[uri] = (held[0], held[1] - 1)
                return
            del self._entries[uri]
            self.size -= len(held[0])

    def __len__(self) -> int:
        return len(self._entries)
