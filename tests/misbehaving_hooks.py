"""Hooks that misbehave, for the time-limit, recycling and rate-limit tests.

Each run leaves a file ``<task_id>.<pid>.<ns>`` in ``params["runs_dir"]``, so a test
counts exactly how many times each task's hook started, and in which process.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from kombu_worker_sdk import RetryMessage, WorkerHooks

_LEAKED: list[bytes] = []


def note_run(msg: Any) -> None:
    folder = msg["params"].get("runs_dir")
    if folder:
        open(os.path.join(folder, f"{msg.task_id}.{os.getpid()}.{time.time_ns()}"), "w").close()


class Leaf(WorkerHooks):
    """A last step: nothing to publish next."""

    def load_pipeline(self, ctx: Any) -> None:
        return None

    def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
        return []


class HangingHooks(Leaf):
    """``params.hang``: block for ever in a C call (as a CUDA call that never returns would).

    ``params.spin``: loop in pure Python until interrupted (what the soft limit can stop).
    """

    def process(self, ctx: Any, msg: Any) -> Any:
        note_run(msg)
        if msg["params"].get("hang"):
            threading.Event().wait()  # never set: a lock acquire in C, uninterruptible
        return {"result": {"ok": True}}


class LeakingHooks(Leaf):
    """Keeps ``params.leak_mb`` MB alive per message, as a tokenizer cache that only grows."""

    def process(self, ctx: Any, msg: Any) -> Any:
        note_run(msg)
        _LEAKED.append(b"\x01" * (int(msg["params"]["leak_mb"]) * 1_048_576))  # touched: resident
        return {"result": {"held_mb": len(_LEAKED) * int(msg["params"]["leak_mb"])}}


class ApiHooks(Leaf):
    """Calls the model API at ``params.api``; a 429 becomes RetryMessage(delay=Retry-After)."""

    def process(self, ctx: Any, msg: Any) -> Any:
        note_run(msg)
        request = urllib.request.Request(f"{msg['params']['api']}/{msg.task_id}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return {"result": json.loads(response.read()), "metrics": {"attempt": ctx.attempt}}
        except urllib.error.HTTPError as exc:
            if exc.code == 429:
                raise RetryMessage(
                    "model API throttled (429)", delay=float(exc.headers["Retry-After"])
                ) from exc
            raise
