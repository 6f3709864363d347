"""The Kombu consumer: receive, run the pipeline, carry out the disposition.

:class:`Worker` is a ``kombu.mixins.ConsumerMixin``, so connection loss and
reconnection are Kombu's, not rebuilt here. Messages are handed to the
pipeline on a pool of ``concurrency`` threads; micro-batches are
gathered up to ``batch_size`` or ``batch_wait_ms``. Prefetch is bounded to what
the worker can start, so a pod never hides messages it cannot work on. The
disposition is carried out here and nowhere else.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from kombu import Connection, Consumer, Queue
from kombu.message import Message
from kombu.mixins import ConsumerMixin

from kombu_worker_sdk.errors import BackendUnavailableError, HoldMessage
from kombu_worker_sdk.observability.metrics import METRICS
from kombu_worker_sdk.pipeline import Disposition, Outcome, TaskRun, describe
from kombu_worker_sdk.signals import worker_ready, worker_shutdown
from kombu_worker_sdk.transport.delivery import Delivery
from kombu_worker_sdk.transport.embedded import EmbeddedDelivery
from kombu_worker_sdk.transport.names import queue_name
from kombu_worker_sdk.worker.faults import fault_point
from kombu_worker_sdk.worker.heartbeat import Heartbeat
from kombu_worker_sdk.worker.runtime import Runtime

DeliveryFactory = Callable[[Message], Delivery]
MAX_OUTAGE_BACKOFF = 30.0


class Worker(ConsumerMixin):  # type: ignore[misc]
    """Consumes one queue and runs each message through the runtime's pipeline."""

    def __init__(
        self,
        runtime: Runtime,
        connection: Connection,
        *,
        queue: Queue | None = None,
        delivery_factory: DeliveryFactory | None = None,
        max_messages: int | None = None,
    ):
        config = runtime.config
        self.runtime = runtime
        self.connection = connection
        name = queue_name(config.queue)
        self.queue = queue or Queue(name, routing_key=name)
        self.deliveries = delivery_factory or (lambda m: EmbeddedDelivery(m, runtime.publisher))
        self.max_messages = max_messages
        self.settled = 0
        self.ready = threading.Event()
        self.last_progress = time.monotonic()
        self.inflight: set[Delivery] = set()
        self.lock = threading.Lock()
        # Signalled whenever a delivery finishes: the consuming thread waits on it instead of
        # letting Kombu nap a polling interval while every prefetch slot is busy.
        self.capacity = threading.Condition(self.lock)
        self.outage_since: float | None = None
        self._futures: set[Future[None]] = set()
        self._batch: list[Delivery] = []
        self._batch_timer: threading.Timer | None = None
        self._held: dict[Delivery, threading.Timer] = {}
        self._started: set[Delivery] = set()  # handed to the pipeline: finish them, never release
        self._unfinished: list[Delivery] | None = None  # set once the stop has drained
        # Hooks never run on the consuming thread, even at concurrency 1: it must stay free
        # to notice a stop and enforce the shutdown grace while a long step runs.
        self._executor = ThreadPoolExecutor(config.concurrency, "kombu-worker")
        self.heartbeat = Heartbeat(self, config)

    # -- Kombu's side ---------------------------------------------------
    def get_consumers(self, consumer_cls: type[Consumer], channel: Any) -> list[Consumer]:
        consumer = consumer_cls(
            queues=[self.queue],
            on_message=self._on_message,
            accept=["application/json"],  # Kombu itself will decode nothing else
            prefetch_count=self.runtime.config.effective_prefetch,
        )
        return [consumer]

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, **kwargs: Any) -> None:
        # Kombu's virtual transports restore every unacked message when the channel closes,
        # which happens as soon as the consume loop ends, before in-flight tasks finish: a
        # task that then completes DONE would also be redelivered. This worker settles every
        # message it holds itself (ack, or release if unstarted), so Kombu must not.
        channel.do_restore = False
        channel.qos.restore_at_shutdown = False
        if not self.ready.is_set():
            self.ready.set()
            worker_ready.send(self.runtime.hooks, worker=self)
            self.runtime.logger.info("consuming from %s", self.queue.name)

    def on_iteration(self) -> None:
        """Before each poll: wait (briefly) until a prefetch slot is free."""
        self.last_progress = time.monotonic()
        config = self.runtime.config
        limit = config.effective_prefetch - config.receive_slots
        with self.capacity:
            self.capacity.wait_for(lambda: self.should_stop or len(self.inflight) <= limit, timeout=1.0)

    def on_consume_end(self, connection: Any, channel: Any) -> None:
        """On a stop, drain while the channel is still open.

        Embedded transports can only settle a message through the channel that received
        it, and Kombu closes it right after this call.
        """
        if self.should_stop:
            self._drain(self.runtime.config.shutdown_grace_seconds)

    def on_connection_error(self, exc: BaseException, interval: float) -> None:
        self.runtime.logger.warning("broker unreachable (%s); retrying in %.1fs", describe(exc), interval)

    def on_visibility_extended(self) -> None:
        """Called by the heartbeat after each extension."""
        METRICS.visibility_extended()

    def run(self, _tokens: int = 1, **kwargs: Any) -> None:
        """Consume until stopped, surviving errors Kombu does not count as connection errors."""
        self.heartbeat.start()
        failures = 0
        while not self.should_stop:
            try:
                super().run(_tokens, **kwargs)
                failures = 0
            except Exception as exc:  # e.g. a queue that vanished while the endpoint restarted
                failures += 1
                delay = min(MAX_OUTAGE_BACKOFF, 0.5 * 2**failures)
                self.runtime.logger.warning(
                    "consume loop failed (%s); retrying in %.1fs", describe(exc), delay
                )
                self._sleep_unless_stopped(delay)

    def _sleep_unless_stopped(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.should_stop and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))
            self.last_progress = time.monotonic()

    # -- receiving and dispatching ---------------------------------------
    def _on_message(self, message: Message) -> None:
        fault_point("after_receive")
        delivery = self.deliveries(message)
        if self.should_stop:  # received by a long poll that ended after the stop: hand it back
            self._release(delivery)
            return
        self.submit(delivery)

    def submit(self, delivery: Delivery) -> None:
        """Start a delivery now, on the pool, or in the next micro-batch."""
        with self.lock:
            self.inflight.add(delivery)
        METRICS.inflight(1)
        if self.runtime.config.batch_size > 1:
            self._add_to_batch(delivery)
        else:
            self._spawn([delivery])

    def _add_to_batch(self, delivery: Delivery) -> None:
        config = self.runtime.config
        with self.lock:
            self._batch.append(delivery)
            full = len(self._batch) >= config.batch_size
            if not full and self._batch_timer is None:
                self._batch_timer = threading.Timer(config.batch_wait_ms / 1000, self.flush_batch)
                self._batch_timer.daemon = True
                self._batch_timer.start()
        if full:
            self.flush_batch()

    def flush_batch(self) -> None:
        with self.lock:
            batch, self._batch = self._batch, []
            if self._batch_timer is not None:
                self._batch_timer.cancel()
                self._batch_timer = None
        if batch:
            self._spawn(batch)

    def _spawn(self, deliveries: list[Delivery]) -> None:
        try:
            future = self._executor.submit(self.process, deliveries)
        except RuntimeError:  # the pool is shutting down: these never started
            for delivery in deliveries:
                self._release(delivery)
            return
        with self.lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self.lock:
            self._futures.discard(future)
        if not future.cancelled() and future.exception() is not None:
            self.runtime.logger.error("worker thread crashed: %r", future.exception())

    # -- processing and settling -----------------------------------------
    def process(self, deliveries: list[Delivery]) -> None:
        """Run the pipeline over deliveries and settle each; never raises."""
        with self.lock:
            stopping = self.should_stop
            if not stopping:
                self._started.update(deliveries)
        if stopping:  # prefetched but not started before the stop: give them back
            for delivery in deliveries:
                self._release(delivery)
            return
        runs = [self._new_run(d) for d in deliveries]
        try:
            self.runtime.pipeline.run(runs)
        except Exception as exc:  # a bug in a stage must not kill the worker
            self.runtime.logger.exception("pipeline crashed")
            for run in runs:
                run.outcome = run.outcome or Outcome(Disposition.RETRY, 5.0, repr(exc), exc)
        for delivery, run in zip(deliveries, runs, strict=True):
            self.settle(delivery, run)

    def _new_run(self, delivery: Delivery) -> TaskRun:
        runtime = self.runtime
        log = runtime.logger.bind(attempt=delivery.attempt)
        run = TaskRun(delivery.body, delivery.content_type, delivery.attempt, runtime, log)
        run.claimant = f"{runtime.worker_id}/{delivery.token}"
        delivery.run = run
        return run

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
            self._spawn([delivery])

        timer = threading.Timer(delay, again)
        timer.daemon = True
        with self.lock:
            self._held[delivery] = timer
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
            self._started.discard(delivery)
            self.capacity.notify_all()
            if counted:
                self.settled += 1
            self.last_progress = time.monotonic()
            if self.max_messages is not None and self.settled >= self.max_messages:
                self.should_stop = True

    # -- stopping ---------------------------------------------------------
    def shutdown(self, grace_seconds: float) -> list[Delivery]:
        """Finish in-flight work within the grace period and give back the rest.

        Returns the deliveries still running when the grace period ran out.
        """
        self.should_stop = True
        unfinished = self._unfinished if self._unfinished is not None else self._drain(grace_seconds)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.heartbeat.stop()
        close = getattr(self.deliveries, "close", None)
        if close is not None:
            close()  # e.g. flush batched acks
        worker_shutdown.send(self.runtime.hooks, worker=self, unfinished=len(unfinished))
        return unfinished

    def _drain(self, grace_seconds: float) -> list[Delivery]:
        """Release what has not started, wait up to the grace for what has, hand back the rest."""
        self.should_stop = True
        with self.lock:
            futures = set(self._futures)
            held = dict(self._held)
            self._held.clear()
            unstarted = [d for d in self.inflight if d not in self._started and d not in held]
        for delivery, timer in held.items():
            timer.cancel()
            self._release(delivery)
        for delivery in unstarted:
            self._release(delivery)
        self.flush_batch()
        if futures:
            wait(futures, timeout=grace_seconds)
        with self.lock:
            unfinished = [d for d in self.inflight if not d.settled]
        self.abandon(unfinished)
        self._unfinished = unfinished
        return unfinished

    def abandon(self, deliveries: list[Delivery]) -> None:
        """After the grace period: release running messages and hand their tasks back."""
        for delivery in deliveries:
            if delivery.settled:
                continue
            run = delivery.run
            if run is not None and run.claim is not None and run.task_id:
                try:
                    self.runtime.state.retry_later(
                        run.task_id, error="interrupted by worker shutdown", worker_id=run.holder
                    )
                except Exception as exc:
                    self.runtime.logger.warning("could not hand back %s: %s", run.task_id, describe(exc))
            self._release(delivery)
