"""The backends a worker under test talks to: storages, and moto's server for section b."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .settings import BUCKET, REGION, log


def make_storage(kind: str) -> Any:
    """``memory``: MemoryStorage as shipped; ``indexed``: the same with an O(1) find_result
    (a diagnostic); ``null``: keeps nothing (for the memory section)."""
    from kombu_worker_sdk.storage import MemoryStorage

    class IndexedMemoryStorage(MemoryStorage):
        def find_result(self, output_prefix: str) -> str | None:
            uri = output_prefix.rstrip("/") + "/result.json"
            return uri if uri in self.objects else None

    class NullStorage(MemoryStorage):
        def put(self, uri: str, data: bytes, content_type: str) -> None:
            pass

        def find_result(self, output_prefix: str) -> str | None:
            return None

    classes = {"memory": MemoryStorage, "indexed": IndexedMemoryStorage, "null": NullStorage}
    return classes[kind](allowed_buckets=[BUCKET])


def dummy_aws_credentials() -> None:
    """boto3 and Kombu's SQS transport refuse to sign without keys; moto accepts any."""
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", REGION),
    ):
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """``KWS_TEST_MOTO_URL`` when the harness runs, else a moto server started (and stopped)
    here with scripts/services.py's own process control."""
    url = os.environ.get("KWS_TEST_MOTO_URL")
    if url:
        yield url
        return
    from services_moto import Moto  # scripts/, beside bench.py: on sys.path when it runs

    root = Path(tempfile.mkdtemp(prefix="bench-moto-"))
    moto = Moto(root)
    try:
        moto.start()
        log.info("b: started moto's server on %s (pid %d)", moto.url, moto.proc.pid if moto.proc else -1)
        yield moto.url
    finally:
        moto.stop()
        shutil.rmtree(root, ignore_errors=True)
