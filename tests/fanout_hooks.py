"""Hooks whose children are steered by params: how many, how big, and to which queue.

params: ``children`` (how many, default 2), ``child_pad`` (characters of padding in each
child's params, to make it oversized), ``child_queue`` (the child's own ``queue``).
A child (``leaf``) publishes nothing.
"""

from __future__ import annotations

from typing import Any

from kombu_worker_sdk import WorkerHooks


class ChildHooks(WorkerHooks):
    version = "test-children-1"

    def load_pipeline(self, ctx: Any) -> dict[str, Any]:
        return {}

    def process(self, ctx: Any, msg: Any) -> Any:
        return {"result": {"task": msg.task_id}, "metrics": {}}

    def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
        params = msg["params"]
        if params.get("leaf"):
            return []
        root = msg["output_prefix"].rstrip("/")
        children = []
        for i in range(int(params.get("children", 2))):
            child: dict[str, Any] = {
                "job_id": msg["job_id"],
                "task_id": f"{msg['job_id']}-child-{i}",
                "input_uri": msg["input_uri"],
                "output_prefix": f"{root}/child-{i}/",
                "params": {"leaf": True, "pad": "x" * int(params.get("child_pad", 0))},
            }
            if params.get("child_queue"):
                child["queue"] = params["child_queue"]
            children.append(child)
        return children


def root_message(job: str, bucket: str = "bucket", **params: Any) -> dict[str, Any]:
    return {
        "job_id": job,
        "task_id": f"{job}-root",
        "input_uri": f"s3://{bucket}/in.txt",
        "output_prefix": f"s3://{bucket}/jobs/{job}/root/",
        "params": params,
    }
