"""The Kombu consumer: receive, move each message through the lanes, settle it.

:class:`Worker` is a ``kombu.mixins.ConsumerMixin``, so connection loss and
reconnection are Kombu's, not rebuilt here. A received message goes through three
phases on two lanes (README "Feeding a GPU"):

* prepare, on the I/O lane: every stage before ``hooks`` (validate, idempotency,
  claim, input prefetch), for whatever has arrived, up to ``batch_size`` at once;
* the device lane (``concurrency`` threads): the ``hooks`` stage, on micro-batches
  taken from the runs that are ready (``worker.lanes``);
* finish, back on the I/O lane: the stages after ``hooks`` (store, fan-out), then
  the disposition, carried out by ``worker.settling`` and nowhere else.

While batch N runs on the device, N+1 is prepared and N-1 finished. The consumer
holds as many messages invisible as keeps the device fed (``worker.prefetch``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from kombu import Connection, Consumer, Queue
from kombu.message import Message
from kombu.mixins import ConsumerMixin

from kombu_worker_sdk.observability.metrics import METRICS
from kombu_worker_sdk.pipeline import Disposition, Outcome, Stage, TaskRun, describe
from kombu_worker_sdk.signals import worker_ready, worker_shutdown
from kombu_worker_sdk.transport.delivery import Delivery
from kombu_worker_sdk.transport.embedded import EmbeddedDelivery
from kombu_worker_sdk.transport.names import queue_name
from kombu_worker_sdk.worker.faults import fault_point
from kombu_worker_sdk.worker.heartbeat import Heartbeat
from kombu_worker_sdk.worker.lanes import CpuMeter, DeviceLane, PhaseLane, ReadyQueue
from kombu_worker_sdk.worker.overrun import cut_off
from kombu_worker_sdk.worker.prefetch import PrefetchGovernor
from kombu_worker_sdk.worker.ratelimit import worker_bucket
from kombu_worker_sdk.worker.recycle import Recycler
from kombu_worker_sdk.worker.runtime import Runtime
from kombu_worker_sdk.worker.settling import MAX_OUTAGE_BACKOFF, Settling
from kombu_worker_sdk.worker.watchdog import Watchdog

DeliveryFactory = Any  # Callable[[Message], Delivery]
#: Smallest group a phase lane takes at once (at batch_size 1 too: one claim for many).
MIN_GROUP = 8
#: Where each held message is, for the metrics and the tests (see ``lane_counts``).
LANES = ("arrived", "preparing", "ready", "device", "finishing", "held")

__all__ = ["LANES", "MAX_OUTAGE_BACKOFF", "Worker"]


class Worker(Settling, ConsumerMixin):  # type: ignore[misc]
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
        self.lanes: dict[Delivery, str] = {}
        self.lock = threading.Lock()
        # Signalled whenever a delivery finishes: the consuming thread waits on it instead of
        # letting Kombu nap a polling interval while every prefetch slot is busy.
        self.capacity = threading.Condition(self.lock)
        self.outage_since: float | None = None
        self._held: dict[Delivery, threading.Timer] = {}
        self._unfinished: list[Delivery] | None = None  # set once the stop has drained
        self._consumers: list[Consumer] = []
        self._qos = 0
        self.prepare_stages, self.device_stages, self.finish_stages = runtime.pipeline.phases()
        self.governor = PrefetchGovernor(config)
        # Hooks never run on the consuming thread, even at concurrency 1: it must stay free
        # to notice a stop and enforce the shutdown grace while a long step runs.
        threads, group = config.effective_io_concurrency, max(config.batch_size, MIN_GROUP)
        cpu = CpuMeter()
        self.preparing = PhaseLane("prepare", threads, group, self.prepare_group, cpu)
        self.finishing = PhaseLane("finish", threads, group, self.finish_batch, cpu)
        self.ready_runs = ReadyQueue(config.batch_size, config.batch_wait_ms / 1000)
        self.device = DeviceLane(config.concurrency, self.ready_runs, self.run_on_device)
        runtime.hook_runner = self.device  # publish_next too runs on the device lane
        self.heartbeat = Heartbeat(self, config)
        # Hooks that misbehave (README "Operating hooks that misbehave"): time limits, rate, recycling.
        self.watchdog = Watchdog(runtime, on_hard=lambda watch: cut_off(self, watch))
        self.throttle, self.recycler = worker_bucket(config, runtime.hooks), Recycler(config)
        self.overrun: str | None = None  # why the process is ending after a hard time limit
        self.exit_on_overrun: Any = None  # Callable[[int], None]: the runner's os._exit
        METRICS.watch_lanes(self.lane_counts, self.governor)

    # -- Kombu's side ---------------------------------------------------
    def get_consumers(self, consumer_cls: type[Consumer], channel: Any) -> list[Consumer]:
        self._qos = self.governor.limit()
        consumer = consumer_cls(
            queues=[self.queue],
            on_message=self._on_message,
            accept=["application/json"],  # Kombu itself will decode nothing else
            prefetch_count=self._qos,
        )
        self._consumers = [consumer]
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
        """Before each poll: follow the prefetch limit, and wait (briefly) for a free slot."""
        self.last_progress = time.monotonic()
        limit = self.governor.limit()
        if limit != self._qos:
            self._qos = limit
            for consumer in self._consumers:  # Kombu's QoS bounds what each receive brings
                consumer.qos(prefetch_count=limit)
        free_after = limit - self.runtime.config.receive_slots
        with self.capacity:
            self.capacity.wait_for(lambda: self.should_stop or len(self.inflight) <= free_after, timeout=1.0)

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
        self.device.start()
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

    # -- the lanes --------------------------------------------------------
    def _on_message(self, message: Message) -> None:
        fault_point("after_receive")
        delivery = self.deliveries(message)
        if self.should_stop:  # received by a long poll that ended after the stop: hand it back
            self._release(delivery)
            return
        self.submit(delivery)

    def submit(self, delivery: Delivery) -> None:
        """Hold a new delivery and queue it for preparation on the I/O lane."""
        with self.lock:
            self.inflight.add(delivery)
        METRICS.inflight(1)
        self.resubmit(delivery)

    def resubmit(self, delivery: Delivery) -> None:
        """Queue a held delivery (new, or back from a hold) for preparation."""
        self._mark([delivery], "arrived")
        if not self.preparing.push([delivery]):  # the stop came first: it never started
            self._release(delivery)

    def prepare_group(self, group: list[Delivery]) -> None:
        """Prepare what arrived together, as one group; never raises."""
        self._mark(group, "preparing")
        if self.should_stop:  # prefetched but not started before the stop: give them back
            for delivery in group:
                self._release(delivery)
            return
        runs = [self._new_run(d) for d in group]
        survivors = self._advance("prepare", self.prepare_stages, runs)
        ended = {id(run) for run in runs} - {id(run) for run in survivors}
        self._conclude([d for d in group if id(d.run) in ended])
        ready = [d for d in group if id(d.run) not in ended]
        self._mark(ready, "ready")
        if ready and not self.ready_runs.put(ready):
            self.abandon(ready, started=False)  # the stop came while they were prepared

    def run_on_device(self, batch: list[Delivery]) -> None:
        """A device thread's turn: the hooks over one micro-batch, then its finish is queued."""
        throttle = self.throttle
        if (
            self.stopped()
            or not self.admit(batch)
            or (throttle and not throttle.acquire(len(batch), self.stopped))
        ):
            self.abandon(batch, started=False)  # the stop came while these waited ready
            return
        self._mark(batch, "device")
        runs = [run_of(d) for d in batch]
        with self.watchdog.watch(batch, runs) as watch:
            self._advance("device", self.device_stages, runs)
        if watch.fired.is_set():  # cut off at the hard time limit: settled by worker.overrun
            return
        self._mark(batch, "finishing")
        if not self.finishing.push(batch):  # shut down after the grace: finish here, keep the results
            self.finish_batch(batch)

    def finish_batch(self, batch: list[Delivery]) -> None:
        """Store, fan out and settle device batches that finished together; never raises."""
        self._advance("finish", self.finish_stages, [run_of(d) for d in batch])
        self._conclude(batch)

    def _advance(self, phase: str, stages: Sequence[Stage], runs: list[TaskRun]) -> list[TaskRun]:
        """Run one phase; a bug in a stage retries the runs instead of killing the worker."""
        started = time.perf_counter()
        survivors: list[TaskRun] = []
        try:
            survivors = self.runtime.pipeline.advance(stages, runs)
        except Exception as exc:
            self.runtime.logger.exception("pipeline crashed")
            for run in runs:
                run.outcome = run.outcome or Outcome(Disposition.RETRY, 5.0, repr(exc), exc)
        if runs:
            self.governor.observe(phase, time.perf_counter() - started)
        return survivors

    def _conclude(self, deliveries: list[Delivery]) -> None:
        """After-hooks, then settle each delivery."""
        runs = [run_of(d) for d in deliveries]
        try:
            self.runtime.pipeline.conclude(runs)
        except Exception:  # after-hooks log their own errors; this is a bug in the SDK
            self.runtime.logger.exception("after-hooks crashed")
        for delivery, run in zip(deliveries, runs, strict=True):
            run.outcome = run.outcome or Outcome(Disposition.RETRY, 5.0, "not concluded")
            self.settle(delivery, run)

    def _new_run(self, delivery: Delivery) -> TaskRun:
        runtime = self.runtime
        log = runtime.logger.bind(attempt=delivery.attempt)
        run = TaskRun(delivery.body, delivery.content_type, delivery.attempt, runtime, log)
        run.claimant = f"{runtime.worker_id}/{delivery.token}"
        delivery.run = run
        return run

    def _mark(self, deliveries: list[Delivery], lane: str) -> None:
        with self.lock:
            for delivery in deliveries:
                if delivery in self.inflight:
                    self.lanes[delivery] = lane

    def lane_counts(self) -> dict[str, int]:
        """How many held messages are in each lane (``LANES``)."""
        with self.lock:
            counts = Counter(self.lanes.values())
        return {lane: counts.get(lane, 0) for lane in LANES}

    # -- stopping ---------------------------------------------------------
    def shutdown(self, grace_seconds: float) -> list[Delivery]:
        """Finish in-flight work within the grace period and give back the rest.

        Returns the deliveries still running when the grace period ran out.
        """
        self.should_stop = True
        unfinished = self._unfinished if self._unfinished is not None else self._drain(grace_seconds)
        self.preparing.close()
        self.finishing.close()
        self.ready_runs.stop()
        self.heartbeat.stop()
        close = getattr(self.deliveries, "close", None)
        if close is not None:
            close()  # e.g. flush batched acks
        worker_shutdown.send(self.runtime.hooks, worker=self, unfinished=len(unfinished))
        return unfinished

    def _drain(self, grace_seconds: float) -> list[Delivery]:
        """Release what has not reached the device, wait up to the grace for what has.

        Held and not-yet-prepared messages are released; prepared ones (claimed, not
        started) are released with their claims handed back. Those on the device or
        finishing get the grace; what is still running after it is abandoned.
        """
        self.should_stop = True
        deadline = time.monotonic() + grace_seconds
        with self.lock:
            held = dict(self._held)
            self._held.clear()
        for delivery, timer in held.items():
            timer.cancel()
            self._release(delivery)
        for delivery in self.preparing.close():
            self._release(delivery)
        self.abandon(self.ready_runs.close(), started=False)
        with self.capacity:
            self.capacity.wait_for(lambda: not self.inflight, timeout=max(deadline - time.monotonic(), 0))
            unfinished = [d for d in self.inflight if not d.settled]
        self.abandon(unfinished)
        self._unfinished = unfinished
        return unfinished


def run_of(delivery: Delivery) -> TaskRun:
    """The pipeline run the consumer attached to a delivery (``Delivery.run`` is typed loosely)."""
    run = delivery.run
    assert isinstance(run, TaskRun)
    return run
