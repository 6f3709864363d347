"""Hooks for the AWS stack tests: read the input from S3, write a result, publish one child.

``params.always_fail`` fails every attempt transiently; ``params.crash_dir`` SIGKILLs the
worker (as an OOM would) after dropping a marker there, so only SQS's redrive policy can
move the message.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from kombu_worker_sdk import WorkerHooks


class StackHooks(WorkerHooks):
    def load_pipeline(self, ctx: Any) -> dict[str, Any]:
        return {}

    def process(self, ctx: Any, msg: Any) -> Any:
        params = msg["params"]
        if params.get("crash_dir"):
            open(os.path.join(params["crash_dir"], f"{os.getpid()}.{time.time_ns()}"), "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        if params.get("always_fail"):
            raise RuntimeError(f"transient failure on attempt {ctx.attempt}")
        data = ctx.storage.read(msg["input_uri"])
        return {"result": {"input_bytes": len(data)}, "metrics": {"attempt": ctx.attempt}}

    def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
        root = msg["output_prefix"].rstrip("/").rsplit("/", 1)[0]
        return [
            {
                "job_id": msg["job_id"],
                "task_id": f"{msg.task_id}-next",
                "input_uri": msg["input_uri"],
                "output_prefix": f"{root}/next/",
            }
        ]
