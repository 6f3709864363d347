"""The Kombu consumer: receive, run the pipeline, carry out the disposition.

:class:`Worker` is a ``kombu.mixins.ConsumerMixin``, so connection loss and
reconnection are Kombu's, not rebuilt here. Messages are handed to the
pipeline inline (concurrency 1) or on a thread pool; micro-batches are
gathered up to ``batch_size`` or ``batch_wait_ms``. Prefetch is bounded to what
the worker can start, so a pod never hides messages it cannot work on. The
disposition is carried out here and nowhere else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from kombu import Connection, Consumer, Queue
from kombu.message import Message
from kombu.mixins import ConsumerMixin

from .delivery import Delivery, EmbeddedDelivery
from .pipeline import Disposition, Outcome, TaskRun
from .runtime import Runtime
from .signals import worker_ready, worker_shutdown
from .sqs import queue_name

DeliveryFactory = Callable[[Message], Delivery]


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
        self.runtime = runtime
        self.connection = connection
        name = queue_name(runtime.config.queue)
        self.queue = queue or Queue(name, routing_key=name)
        self.deliveries = delivery_factory or (lambda m: EmbeddedDelivery(m, runtime.publisher))
        self.max_messages = max_messages
        self.settled = 0
        self.ready = threading.Event()
        self.last_progress = time.monotonic()
        self.inflight: set[Delivery] = set()
        self._futures: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._batch: list[Delivery] = []
        self._batch_timer: threading.Timer | None = None
        self._held: dict[Delivery, threading.Timer] = {}
        config = runtime.config
        pooled = config.concurrency > 1 or config.batch_size > 1
        self._executor = (
            ThreadPoolExecutor(config.concurrency, thread_name_prefix="kombu-worker") if pooled else None
        )

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
        prepare = getattr(self.deliveries, "prepare_channel", None)
        if prepare is not None:
            prepare(channel)
        self.ready.set()
        worker_ready.send(self.runtime.hooks, worker=self)
        self.runtime.logger.info("consuming from %s", self.queue.name)

    def on_iteration(self) -> None:
        self.last_progress = time.monotonic()

    def on_connection_error(self, exc: BaseException, interval: float) -> None:
        self.runtime.logger.warning("broker unreachable (%s); retrying in %.1fs", exc, interval)

    # -- receiving and dispatching ---------------------------------------
    def _on_message(self, message: Message) -> None:
        delivery = self.deliveries(message)
        if self.should_stop:  # received by a long poll that ended after the stop: hand it back
            delivery.release()
            return
        self.submit(delivery)

    def submit(self, delivery: Delivery) -> None:
        """Start a delivery now, on the pool, or in the next micro-batch."""
        config = self.runtime.config
        with self._lock:
            self.inflight.add(delivery)
        if config.batch_size > 1:
            self._add_to_batch(delivery)
        elif self._executor is not None:
            self._spawn([delivery])
        else:
            self.process([delivery])

    def _add_to_batch(self, delivery: Delivery) -> None:
        config = self.runtime.config
        with self._lock:
            self._batch.append(delivery)
            full = len(self._batch) >= config.batch_size
            if not full and self._batch_timer is None:
                self._batch_timer = threading.Timer(config.batch_wait_ms / 1000, self.flush_batch)
                self._batch_timer.daemon = True
                self._batch_timer.start()
        if full:
            self.flush_batch()

    def flush_batch(self) -> None:
        with self._lock:
            batch, self._batch = self._batch, []
            if self._batch_timer is not None:
                self._batch_timer.cancel()
                self._batch_timer = None
        if batch:
            self._spawn(batch)

    def _spawn(self, deliveries: list[Delivery]) -> None:
        assert self._executor is not None
        future = self._executor.submit(self.process, deliveries)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)
        if future.exception() is not None:
            self.runtime.logger.error("worker thread crashed: %r", future.exception())

    # -- processing and settling -----------------------------------------
    def process(self, deliveries: list[Delivery]) -> None:
        """Run the pipeline over deliveries and settle each; never raises."""
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
        return TaskRun(delivery.body, delivery.content_type, delivery.attempt, runtime, log)

    def settle(self, delivery: Delivery, run: TaskRun) -> None:
        """Carry out the run's disposition: the one place a message is acked."""
        outcome = run.outcome
        assert outcome is not None
        try:
            if outcome.disposition is Disposition.ACK:
                delivery.ack()
            elif outcome.disposition is Disposition.DEAD_LETTER:
                dlq = self.runtime.config.effective_dead_letter_queue
                delivery.dead_letter(dlq, outcome.reason, run.task_id)
            elif not delivery.retry_in(outcome.delay):
                self._hold(delivery, outcome.delay)
                return
        except Exception:
            run.log.exception("could not %s the message; it will be redelivered", outcome.disposition)
        self._finish(delivery)

    def _hold(self, delivery: Delivery, delay: float) -> None:
        """Keep an embedded message unacked and run it again once its delay passes."""

        def again() -> None:
            with self._lock:
                self._held.pop(delivery, None)
            if self.should_stop:
                delivery.release()
                self._finish(delivery)
            elif self._executor is not None:
                self._spawn([delivery])
            else:
                self.process([delivery])

        timer = threading.Timer(delay, again)
        timer.daemon = True
        with self._lock:
            self._held[delivery] = timer
        timer.start()

    def _finish(self, delivery: Delivery) -> None:
        with self._lock:
            self.inflight.discard(delivery)
            self.settled += 1
            self.last_progress = time.monotonic()
            if self.max_messages is not None and self.settled >= self.max_messages:
                self.should_stop = True

    # -- stopping ---------------------------------------------------------
    def shutdown(self, grace_seconds: float) -> None:
        """Finish in-flight work within the grace period and give back the rest."""
        self.should_stop = True
        self.flush_batch()
        with self._lock:
            futures = set(self._futures)
            held = dict(self._held)
            self._held.clear()
        if futures:
            wait(futures, timeout=grace_seconds)
        for delivery, timer in held.items():
            timer.cancel()
            delivery.release()
            self._finish(delivery)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        worker_shutdown.send(self.runtime.hooks, worker=self)
