"""Carrying out a run's disposition: the one place a message is acked, released or held.

A mixin of :class:`~kombu_worker_sdk.worker.consumer.Worker`: it shares the worker's
lock and in-flight set, and hands a held message back to the worker's ``resubmit``.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from kombu_worker_sdk.errors import BackendUnavailableError, HoldMessage, RetryMessage
from kombu_worker_sdk.observability.metrics import METRICS
from kombu_worker_sdk.pipeline import Disposition, TaskRun, describe
from kombu_worker_sdk.transport.delivery import Delivery
from kombu_worker_sdk.worker.faults import fault_point

MAX_OUTAGE_BACKOFF = 30.0


class Settling:
    """Ack, retry, dead-letter, hold or release deliveries, and count what is in flight."""

    runtime: Any
    queue: Any
    lock: threading.Lock
    capacity: threading.Condition
    inflight: set[Delivery]
    lanes: dict[Delivery, str]
    settled: int
    max_messages: int | None
    should_stop: bool
    last_progress: float
    outage_since: float | None
    _held: dict[Delivery, threading.Timer]
    recycler: Any

    def resubmit(self, delivery: Delivery) -> None:
        raise NotImplementedError

    def settle(self, delivery: Delivery, run: TaskRun) -> None:
        """Carry out the run's disposition: the one place a message is acked."""
        outcome = run.outcome
        assert outcome is not None
        METRICS.observe_run(self.queue.name, run)
        try:
            if isinstance(outcome.error, BackendUnavailableError):
                self._note_outage(outcome.error)
                self._hold(delivery, self._hold_backoff(delivery))
                return
            self._note_recovery()
            if isinstance(outcome.error, HoldMessage):
                # Another worker holds the task: wait here, looking again with a growing backoff
                # (the holder may finish soon) but never after its lease ends. Through SQS
                # (ChangeMessageVisibility, redelivery) each look would raise
                # ApproximateReceiveCount, and the redrive policy would dead-letter a healthy task.
                self._hold(delivery, min(outcome.delay, self._hold_backoff(delivery)))
                return
            if isinstance(outcome.error, RetryMessage) and outcome.error.delay is not None:
                # A hook's RetryMessage(delay=...), e.g. a 429's Retry-After: wait in-process, the
                # heartbeat keeping message and claim; through SQS it would count a receive.
                self._hold(delivery, outcome.delay)
                return
            if outcome.disposition is Disposition.ACK:
                fault_point("after_publish")
                delivery.ack()
            elif outcome.disposition is Disposition.DEAD_LETTER:
                dlq = self.runtime.config.effective_dead_letter_queue
                delivery.dead_letter(
                    dlq, outcome.reason, run.task_id or getattr(outcome.error, "task_id", None)
                )
            elif not delivery.retry_in(outcome.delay):
                self._hold(delivery, outcome.delay, next_attempt=True)
                return
        except Exception as exc:
            run.log.error(
                "could not %s the message (%s); it will be redelivered",
                outcome.disposition.value,
                describe(exc),
            )
        self._finish(delivery)

    def _note_outage(self, error: BaseException) -> None:
        """Log one line per outage, not one per message."""
        with self.lock:
            first = self.outage_since is None
            if first:
                self.outage_since = time.monotonic()
        if first:
            self.runtime.logger.warning(
                "backend unavailable, holding messages and backing off: %s", describe(error)
            )

    def _note_recovery(self) -> None:
        with self.lock:
            since, self.outage_since = self.outage_since, None
        if since is not None:
            self.runtime.logger.warning("backends reachable again after %.1fs", time.monotonic() - since)

    @staticmethod
    def _hold_backoff(delivery: Delivery) -> float:
        """A growing, jittered delay for in-process holds (outages, held tasks)."""
        delivery.holds += 1
        return min(MAX_OUTAGE_BACKOFF, 0.25 * 2.0**delivery.holds) * random.uniform(0.75, 1.0)

    def _hold(self, delivery: Delivery, delay: float, *, next_attempt: bool = False) -> None:
        """Keep the message (the heartbeat keeps it invisible) and run it again after ``delay``.

        Only ``next_attempt`` raises the attempt number: outage and held waits are not attempts.
        """
        if next_attempt:
            delivery.attempt += 1

        def again() -> None:
            with self.lock:
                self._held.pop(delivery, None)
            self.resubmit(delivery)

        timer = threading.Timer(delay, again)
        timer.daemon = True
        with self.lock:
            self._held[delivery] = timer
            self.lanes[delivery] = "held"
        timer.start()

    def _release(self, delivery: Delivery) -> None:
        try:
            delivery.release()
        except Exception as exc:
            self.runtime.logger.warning(
                "could not release a message (%s); it reappears after its visibility timeout", describe(exc)
            )
        self._finish(delivery, counted=False)

    def _finish(self, delivery: Delivery, *, counted: bool = True) -> None:
        with self.lock:
            if delivery in self.inflight:
                METRICS.inflight(-1)
            self.inflight.discard(delivery)
            self.lanes.pop(delivery, None)
            self.capacity.notify_all()
            if counted:
                self.settled += 1
            self.last_progress = time.monotonic()
            if self.max_messages is not None and self.settled >= self.max_messages:
                self.should_stop = True

    def stopped(self) -> bool:
        return bool(self.should_stop)

    def admit(self, batch: list[Delivery]) -> bool:
        """Before a batch reaches the device: False once a recycling limit refuses it.

        When a limit is reached the worker stops receiving; the drain hands the rest back
        and the runner exits 0 (``worker.recycle``).
        """
        admitted = bool(self.recycler.admit(len(batch)))
        if self.recycler.reason is not None and not self.should_stop:
            self.runtime.logger.warning("recycling (%s): draining, then exiting", self.recycler.reason)
            self.should_stop = True
        return admitted

    def abandon(self, deliveries: list[Delivery], *, started: bool = True) -> None:
        """Release messages that will not finish here, handing their claimed tasks back.

        The next worker then claims at once instead of waiting out this one's lease. A task
        whose hooks never ``started`` gets its attempt back and no error.
        """
        state = self.runtime.state
        for delivery in deliveries:
            if delivery.settled:
                continue
            run = delivery.run
            if run is not None and run.claim is not None and run.task_id:
                try:
                    if started:
                        state.retry_later(
                            run.task_id, error="interrupted by worker shutdown", worker_id=run.holder
                        )
                    else:
                        state.unclaim(run.task_id, worker_id=run.holder)
                except Exception as exc:
                    self.runtime.logger.warning("could not hand back %s: %s", run.task_id, describe(exc))
            self._release(delivery)
