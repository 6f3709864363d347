"""Stage 1: decode the body (JSON only) and validate it against the contract."""

from __future__ import annotations

import uuid

from ..errors import InvalidMessageError
from ..message import decode_body, parse_task
from ..pipeline import Stage, TaskRun


class ValidateStage(Stage):
    """Turns raw bytes into a TaskMessage, or ends the run with a MessageError."""

    name = "validate"

    def process(self, run: TaskRun) -> None:
        runtime = run.runtime
        size = len(run.body.encode("utf-8") if isinstance(run.body, str) else run.body)
        if size > runtime.config.max_message_bytes:
            raise InvalidMessageError(f"message of {size} bytes exceeds max_message_bytes")
        msg = parse_task(decode_body(run.body, run.content_type))
        if msg.trace_id is None:  # start a trace here; children inherit it (not part of the hash)
            msg = msg.model_copy(update={"trace_id": uuid.uuid4().hex})
        run.message = msg
        run.ctx = runtime.context.for_message(msg, run.attempt)
        run.log = run.ctx.logger  # one adapter: the pipeline's stage shows in the hooks' lines
        run.log.set_stage(self.name)
        runtime.storage.check_readable(msg.input_uri)
        runtime.storage.check_writable_prefix(msg.output_prefix)
