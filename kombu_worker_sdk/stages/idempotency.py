"""Stage 2: skip work whose ``result.*`` already exists, without losing the fan-out.

One storage request decides it. If the task is DONE, its still-PENDING children
are republished and the message acked. If the result exists but the task is
not DONE (a crash after the write), the stored outputs are loaded and the run
resumes at fan-out, so ``process`` never runs twice for one result.
"""

from __future__ import annotations

import json

from kombu_worker_sdk.errors import SkipMessage, TaskConflictError
from kombu_worker_sdk.hooks import Outputs
from kombu_worker_sdk.pipeline import Stage, TaskRun
from kombu_worker_sdk.stages.fanout import publish_pending
from kombu_worker_sdk.state import TaskStatus
from kombu_worker_sdk.storage import Storage
from kombu_worker_sdk.storage.base import METRICS_FILE, join_uri


class IdempotencyStage(Stage):
    name = "idempotency"
    io_bound = True  # one storage request per message: a batch makes them at once

    def process(self, run: TaskRun) -> None:
        runtime, msg = run.runtime, run.message
        assert msg is not None
        result_uri = runtime.storage.find_result(msg.output_prefix)
        if result_uri is None:
            return
        record = runtime.state.get_task(msg.task_id)
        if record and record.content_hash and record.content_hash != msg.content_hash():
            raise TaskConflictError(f"task {msg.task_id!r} exists with different content")
        if record and record.status is TaskStatus.DONE:
            run.published = publish_pending(run, runtime.state.pending_children(msg.task_id))
            raise SkipMessage(f"result exists at {result_uri}; task already DONE")
        run.log.info("result exists at %s; resuming at fan-out", result_uri)
        run.outputs = load_outputs(runtime.storage, result_uri, msg.output_prefix)
        run.result_uri = result_uri
        run.resumed = True


def load_outputs(storage: Storage, result_uri: str, output_prefix: str) -> Outputs:
    """Rebuild ``process``'s outputs from what the store stage wrote."""
    data = storage.read(result_uri)
    outputs: Outputs = {}
    if result_uri.endswith(".json"):
        outputs["result"] = json.loads(data)
    else:
        outputs["result"] = data
        outputs["result_ext"] = result_uri.rsplit(".", 1)[-1]
    try:
        metrics = json.loads(storage.read(join_uri(output_prefix, METRICS_FILE)))
        outputs["metrics"] = {k: v for k, v in metrics.items() if k != "sdk"}
    except Exception:
        outputs["metrics"] = {}
    return outputs
