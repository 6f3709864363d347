"""Queue names: the one piece of queue addressing every transport shares."""

from __future__ import annotations

from urllib.parse import urlsplit


def queue_name(url_or_name: str) -> str:
    """The queue name Kombu knows a queue by: the last path segment of its URL."""
    return urlsplit(url_or_name).path.rstrip("/").rsplit("/", 1)[-1] if "://" in url_or_name else url_or_name
