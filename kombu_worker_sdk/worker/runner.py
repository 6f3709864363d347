"""One worker process: what `kombu-worker --hooks ...` and `python -m kombu_worker_sdk.runner` run.

:func:`serve` is what ``kombu-worker --hooks`` calls: it loads the model in the
worker_init signal, consumes until told to stop, and shuts down gracefully. The
first SIGTERM or SIGINT stops receiving and drains in-flight work within the
grace period; a second one hands in-flight tasks back (PENDING, messages visible
again, within ``HAND_BACK_SECONDS``) and exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.logs import configure_logging
from kombu_worker_sdk.masking import mask_url
from kombu_worker_sdk.observability import tracing_env
from kombu_worker_sdk.observability.health import HealthServer
from kombu_worker_sdk.observability.metrics import METRICS
from kombu_worker_sdk.signals import hooks_key, models
from kombu_worker_sdk.transport import broker_connection, delivery_factory
from kombu_worker_sdk.transport.delivery import Delivery
from kombu_worker_sdk.worker.consumer import Worker
from kombu_worker_sdk.worker.overrun import EXIT_TIME_LIMIT
from kombu_worker_sdk.worker.recycle import RECYCLE_METRICS
from kombu_worker_sdk.worker.runtime import build_runtime

EXIT_NOW = 130
#: OpenTelemetry's ``service.name`` unless OTEL_SERVICE_NAME says otherwise.
SERVICE_NAME = "kombu-worker"
#: On a second signal, the most time spent handing claims back before exiting.
HAND_BACK_SECONDS = 3.0


def serve(config: WorkerConfig, hooks: Any, *, max_messages: int | None = None) -> int:
    """Run a worker until stopped; returns the process exit status."""
    configure_logging(config.log_level)
    traces = tracing_env.install_from_env(SERVICE_NAME)  # a no-op unless OTEL_* variables are set
    runtime = build_runtime(config, hooks)
    runtime.state.upgrade()
    deliveries = delivery_factory(runtime)  # checks the queues before the model loads
    runtime.start()
    worker = Worker(
        runtime,
        broker_connection(config),
        delivery_factory=deliveries,
        max_messages=max_messages,
    )
    install_signal_handlers(worker)
    worker.exit_on_overrun = flush_and_exit  # a hard time limit ends the process (EXIT_TIME_LIMIT)
    RECYCLE_METRICS.recycler = worker.recycler
    METRICS.model_loaded(models.load_seconds(hooks_key(runtime.hooks)))
    health = HealthServer(worker, runtime, config.health_port) if config.health_port is not None else None
    if health is not None:
        health.start()
        runtime.logger.info("health and metrics on port %d", health.port)
    log_started(runtime)
    log_limits(worker)
    try:
        worker.run()
    finally:
        unfinished = worker.shutdown(config.shutdown_grace_seconds)
        if unfinished:
            runtime.logger.warning("grace period over: releasing %d running message(s)", len(unfinished))
            worker.abandon(unfinished)
        if health is not None:
            health.stop()
        runtime.close()
        traces.shutdown()  # export the last spans before the process ends
        runtime.logger.info("worker %s stopped after %d message(s)", runtime.worker_id, worker.settled)
    if worker.overrun:  # the watchdog is ending the process: the same status whichever thread wins
        flush_and_exit(EXIT_TIME_LIMIT)
    if unfinished:
        flush_and_exit(0)  # hook threads still running cannot be joined: leave without them
    return 0


def log_started(runtime: Any) -> None:
    """Name the backends actually in use (passwords masked), so a worker that fell back
    to a local folder says so in its first line; warn when a remote broker has local state."""
    config: WorkerConfig = runtime.config
    urls = {key: mask_url(url) for key, url in config.backend_urls.items()}
    runtime.logger.info(
        "worker %s started: hooks=%s queue=%s broker=%s storage=%s state=%s",
        runtime.worker_id,
        runtime.hooks_path,
        mask_url(config.queue),
        urls["broker_url"],
        urls["storage_url"],
        urls["db_dsn"],
    )
    local = [
        f"{what} {urls[key]}"
        for key, what in (("storage_url", "storage"), ("db_dsn", "state"))
        if urls[key].startswith(("file://", "memory://", "sqlite://"))
    ]
    if config.is_sqs_broker and local:
        runtime.logger.warning(
            "SQS broker with local %s: not shared with other workers; set BUCKET and DB_DSN",
            " and ".join(local),
        )


def log_limits(worker: Worker) -> None:
    """The limits on misbehaving hooks, and how close the worker is to its recycling ones."""
    limits, throttle = worker.watchdog.base, worker.throttle
    worker.runtime.logger.info(
        "limits: soft_time_limit=%s time_limit=%s rate_limit=%s; %s",
        f"{limits.soft:g}s" if limits.soft is not None else "none",
        f"{limits.hard:g}s" if limits.hard is not None else "none",
        f"{throttle.rate:g}/s" if throttle is not None else "none",
        worker.recycler.describe(),
    )


def flush_and_exit(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def install_signal_handlers(worker: Worker) -> None:
    """First SIGTERM/SIGINT: stop gracefully. Second: hand in-flight tasks back and exit at once.

    Without the hand-back the task would stay PROCESSING until its lease expired, and its
    message would stay invisible until its visibility timeout did.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    state = {"stopping": False}

    def handle(signum: int, frame: FrameType | None) -> None:
        if state["stopping"]:
            worker.should_stop = True
            count = hand_back_now(worker, HAND_BACK_SECONDS)
            worker.runtime.logger.warning("second signal: handed back %d task(s), exiting now", count)
            flush_and_exit(EXIT_NOW)
        state["stopping"] = True
        worker.runtime.logger.info("received %s: finishing in-flight work", signal.Signals(signum).name)
        worker.should_stop = True

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def hand_back_now(worker: Worker, timeout: float) -> int:
    """Before an immediate exit: hand back every unsettled claim and message, within ``timeout``.

    Best-effort and bounded: it runs on its own thread, because the interrupted main
    thread may hold ``worker.lock`` or a pooled connection. Batched acks are flushed too,
    so finished tasks are not redelivered. Returns how many deliveries it handed back.
    """
    deliveries = [d for d in _snapshot_inflight(worker) if not d.settled]

    def hand_back() -> None:
        worker.abandon(deliveries)
        close = getattr(worker.deliveries, "close", None)
        if close is not None:
            close()

    thread = threading.Thread(target=hand_back, name="kombu-worker-hand-back", daemon=True)
    thread.start()
    thread.join(timeout)
    return len(deliveries)


def _snapshot_inflight(worker: Worker) -> list[Delivery]:
    """A copy of ``inflight`` even if the interrupted thread holds the lock."""
    if worker.lock.acquire(timeout=0.5):
        try:
            return list(worker.inflight)
        finally:
            worker.lock.release()
    for _ in range(10):
        try:
            return list(worker.inflight)
        except RuntimeError:  # changed size during iteration: look again
            continue
    return []
