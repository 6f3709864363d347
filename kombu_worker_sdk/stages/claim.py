"""Stage 3: claim the task atomically, so two workers never both run it."""

from __future__ import annotations

import time

from kombu_worker_sdk.errors import HoldMessage, SkipMessage, TaskConflictError
from kombu_worker_sdk.pipeline import Stage, TaskRun
from kombu_worker_sdk.stages.fanout import publish_pending
from kombu_worker_sdk.state import Claim, ClaimOutcome
from kombu_worker_sdk.worker.faults import fault_point

#: Look again a moment after the holder's lease ends, not at the very instant.
HELD_RECHECK_MARGIN = 0.2


class ClaimStage(Stage):
    name = "claim"

    def process(self, run: TaskRun) -> None:
        runtime, msg = run.runtime, run.message
        assert msg is not None
        lease = runtime.config.claim_lease_seconds
        claim = runtime.state.claim(msg, worker_id=run.holder, lease_seconds=lease)
        if claim.outcome is ClaimOutcome.CONFLICT:
            raise TaskConflictError(f"task {msg.task_id!r} exists with different content")
        if claim.outcome is ClaimOutcome.DONE:
            run.published = publish_pending(run, runtime.state.pending_children(msg.task_id))
            raise SkipMessage("task already DONE")
        if claim.outcome is ClaimOutcome.CANCELLED:  # job.cancel(): ack, hooks never run
            raise SkipMessage("task CANCELLED: its job was cancelled")
        if claim.outcome is ClaimOutcome.HELD:
            raise HoldMessage("task is held by another worker", delay=held_delay(claim, lease))
        run.claim = claim
        fault_point("after_claim")


def held_delay(claim: Claim, lease: float) -> float:
    """Seconds until the holder's lease ends: a live holder will have pushed it by then.

    Bounded by one lease, for a row written by an older worker with a longer lease.
    """
    remaining = (claim.lease_until or time.time()) - time.time()
    return min(max(remaining, 0.0), lease) + HELD_RECHECK_MARGIN
