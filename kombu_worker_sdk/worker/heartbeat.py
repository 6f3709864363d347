"""The visibility heartbeat: keep in-flight messages invisible and their leases alive.

ML steps run for minutes; SQS redelivers a message whose visibility timeout
lapses, and the copy would run twice. While a message is held, this thread
extends its visibility (ChangeMessageVisibility) well before it lapses, up to
SQS's 12-hour cap, and pushes the task's lease in the state store by the same
amount. The lease is one visibility timeout long (``config.claim_lease_seconds``), so it
lives and dies with the heartbeat: a live worker keeps its claim for as long as
the task runs, and a crashed worker's claim has expired by the time SQS shows
its message again. Embedded transports have no visibility to extend, but the
heartbeat keeps their leases the same way. It stops touching a message as
soon as the message is settled. Each tick also records the worker in the state
store's ``kw_workers`` table (best effort), which the dashboard lists.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Protocol

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import WorkerSDKError
from kombu_worker_sdk.state.base import WorkerBeat
from kombu_worker_sdk.transport.delivery import Delivery


class Beating(Protocol):
    """What the heartbeat reads of the consumer (``worker.consumer.Worker``)."""

    runtime: Any
    lock: threading.Lock
    inflight: set[Delivery]

    def on_visibility_extended(self) -> None: ...


SQS_MAX_HOLD_SECONDS = 43_200


class Heartbeat:
    """A daemon thread that extends every in-flight delivery every ``interval`` seconds."""

    def __init__(self, worker: Beating, config: WorkerConfig):
        self.worker = worker
        # The same length as a claim's lease: both are pushed together at every tick.
        self.visibility_timeout = config.claim_lease_seconds
        # Extend at a third of the timeout: two ticks can fail before a message lapses.
        self.interval = max(self.visibility_timeout / 3, 0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kombu-worker-heartbeat", daemon=True)
        self.extensions = 0
        self.started_at = time.time()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _loop(self) -> None:
        self.record_presence()
        while not self._stop.wait(self.interval):
            self.beat()
            self.record_presence()

    def record_presence(self) -> None:
        """One upsert into the worker registry; never fails the worker (an old schema, an outage)."""
        runtime = self.worker.runtime
        with self.worker.lock:
            inflight = len(self.worker.inflight)
        beat = WorkerBeat(
            runtime.worker_id,
            socket.gethostname(),
            runtime.config.queue,
            runtime.hooks_path,
            inflight,
            self.started_at,
        )
        try:
            runtime.state.record_worker(beat)
        except WorkerSDKError as exc:
            runtime.logger.debug("could not record the worker heartbeat: %s", exc)

    def beat(self) -> None:
        """Extend each unsettled delivery once; failures are logged, never raised."""
        with self.worker.lock:
            deliveries = list(self.worker.inflight)
        for delivery in deliveries:
            if not delivery.settled:
                self._extend(delivery)

    def _extend(self, delivery: Delivery) -> None:
        held = time.monotonic() - delivery.received_at
        seconds = int(min(self.visibility_timeout, SQS_MAX_HOLD_SECONDS - held))
        if seconds <= 0:
            return  # SQS will not hold a message past 12 hours; let it go
        log = self.worker.runtime.logger
        # The lease first: it then always ends before the message it belongs to reappears,
        # so the redelivered copy finds the claim expired rather than HELD. Each is tried
        # even when the other fails: two ticks may fail before either lapses.
        try:
            self._extend_lease(delivery, seconds)
        except WorkerSDKError as exc:
            log.warning("could not extend the task's lease: %s", exc)
        try:
            delivery.extend(seconds)
        except WorkerSDKError as exc:
            log.warning("could not extend visibility: %s", exc)
            return
        self.extensions += 1
        self.worker.on_visibility_extended()

    def _extend_lease(self, delivery: Delivery, seconds: int) -> None:
        run = delivery.run
        if run is not None and run.claim is not None and run.task_id:
            self.worker.runtime.state.extend_lease(run.task_id, worker_id=run.holder, lease_seconds=seconds)
