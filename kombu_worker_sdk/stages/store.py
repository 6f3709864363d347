"""Stage 5: write ``metrics.json`` then ``result.<ext>`` under ``output_prefix``.

The result is written last because its existence is the idempotency marker:
a crash between the two writes re-runs the work instead of skipping it.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from kombu_worker_sdk.errors import PermanentError
from kombu_worker_sdk.pipeline import Stage, TaskRun
from kombu_worker_sdk.storage.base import METRICS_FILE, RESULT_STEM
from kombu_worker_sdk.version import __version__
from kombu_worker_sdk.worker.faults import fault_point

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"%PDF-", "pdf"),
    (b"\x93NUMPY", "npy"),
    (b"PK\x03\x04", "zip"),
)
_EXT = re.compile(r"^[a-z0-9]{1,8}$")


def sniff_extension(data: bytes) -> str:
    """A file extension for bytes, from their magic number; ``bin`` when unknown."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((ext for magic, ext in _MAGIC if data.startswith(magic)), "bin")


class StoreStage(Stage):
    name = "store"
    io_bound = True  # one storage request per message: a batch makes them at once

    def process(self, run: TaskRun) -> None:
        if run.resumed:
            return
        assert run.ctx is not None and run.outputs is not None
        storage = run.ctx.storage
        storage.write("", METRICS_FILE, json.dumps(sdk_metrics(run), default=str, separators=(",", ":")))
        filename, payload = result_file(run.outputs.get("result"), run.outputs.get("result_ext"))
        run.result_uri = storage.write("", filename, payload)
        fault_point("after_store")


def result_file(result: Any, ext: str | None) -> tuple[str, bytes]:
    if isinstance(result, bytes | bytearray | memoryview):
        data = bytes(result)
        ext = (ext or sniff_extension(data)).lower().lstrip(".")
        if not _EXT.match(ext):
            raise PermanentError(f"result_ext {ext!r} must be 1-8 lowercase letters or digits")
        return f"{RESULT_STEM}.{ext}", data
    try:
        return f"{RESULT_STEM}.json", json.dumps(result, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise PermanentError(f"result is neither bytes nor JSON-serialisable: {exc}") from None


def sdk_metrics(run: TaskRun) -> dict[str, Any]:
    """The hook's metrics plus the SDK's own figures."""
    assert run.outputs is not None and run.message is not None
    runtime = run.runtime
    return {
        **run.outputs.get("metrics", {}),
        "sdk": {
            "stage_seconds": dict(run.timings),
            "attempt": run.attempt,
            "worker_id": runtime.worker_id,
            "sdk_version": __version__,
            "hooks": runtime.hooks_path,
            "hooks_version": runtime.hooks_version,
            "job_id": run.message.job_id,
            "task_id": run.message.task_id,
            "written_at": time.time(),
        },
    }
