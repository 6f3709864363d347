"""What the worker does when a hook overruns its hard time limit.

A Python thread cannot be killed, and a CUDA context stuck in a call must die with
its process, so the process ends (as Celery's hard limit kills its pool child):

1. each overrun message is settled at once, so the heartbeat stops extending it, and
   records the attempt with :class:`~kombu_worker_sdk.errors.TimeLimitExceeded`:
   ``state.retry_later`` and a retry after the usual backoff, or, once the task has
   used ``max_attempts`` (:func:`attempts_used`: the SQS receive count, or on the embedded
   queues the state store's claim count),
   FAILED and dead-lettered, like any other failure: a poison input that hangs the
   model cannot take the fleet down for ever;
2. the other prefetched messages are handed back (the drain, with a short grace for
   those finishing);
3. the process exits with :data:`EXIT_TIME_LIMIT` after flushing acks and logs.

Until it has exited, ``worker.overrun`` says why and ``/healthz`` fails, so the kubelet
restarts a process that could not end itself (or one that runs without an exit).
"""

from __future__ import annotations

import threading
from typing import Any

from kombu_worker_sdk.errors import TimeLimitExceeded
from kombu_worker_sdk.observability.metrics import METRICS
from kombu_worker_sdk.pipeline import Disposition, Outcome, TaskRun, backoff, describe, record_failure
from kombu_worker_sdk.transport.delivery import Delivery
from kombu_worker_sdk.worker.watchdog import Watch

#: The process exit status after a hard time limit: GNU ``timeout``'s, for a command cut off.
EXIT_TIME_LIMIT = 124
#: The most time the overrun gives finishing batches before handing them back too.
OVERRUN_GRACE_SECONDS = 10.0
#: The most time the whole hand-back may take before the process exits regardless.
OVERRUN_EXIT_SECONDS = 30.0


def cut_off(worker: Any, watch: Watch) -> None:
    """The watchdog's ``on_hard``: record, hand back, exit (bounded; see the module doc)."""
    limit = watch.limits.hard
    reason = f"hook ran past its hard time limit of {limit:g}s"
    worker.overrun = reason
    worker.runtime.logger.error("%s: ending the process (%d message(s))", reason, len(watch.deliveries))
    done = threading.Event()

    def hand_back() -> None:
        try:
            for delivery in watch.deliveries:
                _record(worker, delivery, reason)
            worker.should_stop = True
            worker._drain(min(worker.runtime.config.shutdown_grace_seconds, OVERRUN_GRACE_SECONDS))
            close = getattr(worker.deliveries, "close", None)
            if close is not None:
                close()  # flush batched acks, so finished tasks are not redelivered
        except Exception as exc:  # exit anyway: the kubelet's restart is the recovery
            worker.runtime.logger.error("hand-back after the time limit failed: %s", describe(exc))
        finally:
            done.set()

    threading.Thread(target=hand_back, name="kombu-worker-overrun", daemon=True).start()
    done.wait(OVERRUN_EXIT_SECONDS)
    exit_now = getattr(worker, "exit_on_overrun", None)
    if exit_now is not None:
        exit_now(EXIT_TIME_LIMIT)


def _record(worker: Any, delivery: Delivery, reason: str) -> None:
    """One overrun message: its attempt recorded, its message retried later or dead-lettered."""
    run = delivery.run
    if delivery.settled or not isinstance(run, TaskRun):
        return
    config = worker.runtime.config
    error = TimeLimitExceeded(reason)
    if attempts_used(run, config) >= config.max_attempts:
        run.outcome = Outcome(Disposition.DEAD_LETTER, reason=describe(error), error=error)
    else:
        run.outcome = Outcome(Disposition.RETRY, backoff(run.attempt, config), describe(error), error)
    record_failure(run, error)
    METRICS.observe_run(worker.queue.name, run)
    try:
        if run.outcome.disposition is Disposition.DEAD_LETTER:
            delivery.dead_letter(config.effective_dead_letter_queue, run.outcome.reason, run.task_id)
        elif not delivery.retry_in(run.outcome.delay):
            delivery.release()  # an embedded queue: back at once; the claim was handed back above
    except Exception as exc:
        run.log.error("could not settle the overrun message (%s); it will be redelivered", describe(exc))
    worker._finish(delivery)  # settled: the heartbeat no longer extends it


def attempts_used(run: TaskRun, config: Any) -> int:
    """Attempts this task has used, counting this one.

    On SQS the receive count, which survives the process and counts neither held copies
    nor throttled waits. The embedded queues restart it at 1 when a message comes back
    after a crash, so there the state store's claim count is taken when it is higher.
    """
    if config.is_sqs_broker or run.claim is None:
        return run.attempt
    return max(run.attempt, run.claim.attempts)
