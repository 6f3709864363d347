"""Hooks used by the tests: a three-step pipeline with fan-out and fan-in.

split  → N ``part`` tasks (fan-out) → one ``join`` task when all parts are DONE (fan-in).
Behaviour is steered by ``params`` so one class serves many tests.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from kombu_worker_sdk import PermanentError, WorkerHooks

LOADS: list[int] = []
_lock = threading.Lock()


class StepHooks(WorkerHooks):
    """params: step (split|part|join), parts, fail_times, permanent, sleep, gate, blob.

    ``gate`` is a file path: ``process`` blocks until the test creates it (a step that
    runs until released, so a test can kill its worker mid-task).
    """

    version = "test-1"

    def load_pipeline(self, ctx: Any) -> dict[str, Any]:
        with _lock:
            LOADS.append(os.getpid())
        return {"loaded_at": time.time(), "pid": os.getpid()}

    def process(self, ctx: Any, msg: Any) -> Any:
        params = msg["params"]
        if params.get("started_dir"):
            open(
                os.path.join(params["started_dir"], f"{msg.task_id}.{os.getpid()}.{time.time_ns()}"), "w"
            ).close()
        if params.get("gate"):
            wait_for_file(params["gate"])
        if params.get("sleep"):
            time.sleep(float(params["sleep"]))
        if params.get("permanent"):
            raise PermanentError("this input can never work")
        if params.get("fail_times", 0) >= ctx.attempt:
            raise RuntimeError(f"transient failure on attempt {ctx.attempt}")
        if params.get("marker_dir"):
            marker = os.path.join(params["marker_dir"], f"{msg.task_id}.{os.getpid()}.{time.time_ns()}")
            open(marker, "w").close()
        ctx.logger.info("processing %s", msg.task_id)
        if params.get("blob"):
            return {"result": b"\x89PNG\r\n\x1a\n" + b"0" * 16, "metrics": {"kind": "png"}}
        return {
            "result": {
                "step": params.get("step"),
                "model_pid": self.model["pid"],
                "model_id": id(self.model),
            },
            "metrics": {"latency_ms": 1},
        }

    def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
        params = msg["params"]
        step = params.get("step")
        root = msg["output_prefix"].rstrip("/").rsplit("/", 1)[0]
        if step == "split":
            parts = int(params.get("parts", 3))
            return [
                {
                    "job_id": msg["job_id"],
                    "task_id": f"{msg['job_id']}-part-{i:03d}",
                    "input_uri": msg["input_uri"],
                    "output_prefix": f"{root}/part/{i:03d}/",
                    "params": {**params, "step": "part", "parts": parts, "index": i},
                }
                for i in range(parts)
            ]
        if step == "part":
            return [
                {
                    "job_id": msg["job_id"],
                    "task_id": f"{msg['job_id']}-join",
                    "input_uri": msg["input_uri"],
                    "output_prefix": f"{root.rsplit('/', 1)[0]}/join/",
                    "params": {"step": "join", **{k: v for k, v in params.items() if k == "marker_dir"}},
                    "fan_in": {"group": f"{msg['job_id']}-parts", "size": params["parts"]},
                }
            ]
        return []


def wait_for_file(path: str, timeout: float = 300.0) -> None:
    """Poll (not sleep as synchronisation): the test releases the step by creating ``path``."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


class MissingPublishNext:
    def load_pipeline(self, ctx: Any) -> None:
        return None

    def process(self, ctx: Any, msg: Any) -> Any:
        return {"result": None}


def split_message(job: str = "job1", parts: int = 3, **params: Any) -> dict[str, Any]:
    return {
        "job_id": job,
        "task_id": f"{job}-split",
        "input_uri": "s3://bucket/in.txt",
        "output_prefix": f"s3://bucket/jobs/{job}/split/",
        "params": {"step": "split", "parts": parts, **params},
    }
