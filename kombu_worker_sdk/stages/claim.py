"""Stage 3: claim the task atomically, so two workers never both run it."""

from __future__ import annotations

import time

from kombu_worker_sdk.errors import BackendUnavailableError, HoldMessage, SkipMessage, TaskConflictError
from kombu_worker_sdk.pipeline import Stage, TaskRun
from kombu_worker_sdk.stages.fanout import message_of, publish_pending
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
        self.apply(run, runtime.state.claim(msg, worker_id=run.holder, lease_seconds=lease))

    def process_batch(self, runs: list[TaskRun]) -> dict[int, BaseException]:
        """One state transaction claims the micro-batch; each message keeps its own outcome.

        An outage fails them all (the consumer holds them); any other error claims one by
        one, so one bad row costs only its own message.
        """
        runtime = runs[0].runtime
        requests = [(message_of(run), run.holder) for run in runs]
        try:
            claims = runtime.state.claim_many(requests, lease_seconds=runtime.config.claim_lease_seconds)
        except BackendUnavailableError as exc:
            return dict.fromkeys(range(len(runs)), exc)
        except Exception:
            return super().process_batch(runs)
        errors: dict[int, BaseException] = {}
        for i, (run, claim) in enumerate(zip(runs, claims, strict=True)):
            try:
                self.apply(run, claim)
            except Exception as exc:
                errors[i] = exc
        return errors

    @staticmethod
    def apply(run: TaskRun, claim: Claim) -> None:
        """Act on one message's claim: run it, skip it, wait for its holder, or refuse it."""
        runtime, msg = run.runtime, run.message
        assert msg is not None
        lease = runtime.config.claim_lease_seconds
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
