"""Stage 3: claim the task atomically, so two workers never both run it."""

from __future__ import annotations

import time

from ..errors import RetryMessage, SkipMessage, TaskConflictError
from ..faults import fault_point
from ..pipeline import Stage, TaskRun, backoff
from ..state import ClaimOutcome
from .fanout import publish_pending


class ClaimStage(Stage):
    name = "claim"

    def process(self, run: TaskRun) -> None:
        runtime, msg = run.runtime, run.message
        assert msg is not None
        claim = runtime.state.claim(msg, worker_id=run.holder, lease_seconds=runtime.config.lease_seconds)
        if claim.outcome is ClaimOutcome.CONFLICT:
            raise TaskConflictError(f"task {msg.task_id!r} exists with different content")
        if claim.outcome is ClaimOutcome.DONE:
            run.published = publish_pending(run, runtime.state.pending_children(msg.task_id))
            raise SkipMessage("task already DONE")
        if claim.outcome is ClaimOutcome.HELD:
            # Check back with backoff, never later than the holder's lease could expire.
            remaining = max(0.0, (claim.lease_until or time.time()) - time.time())
            raise RetryMessage(
                "task is held by another worker",
                delay=min(remaining, backoff(run.attempt, runtime.config)) or 0.5,
            )
        run.claim = claim
        fault_point("after_claim")
