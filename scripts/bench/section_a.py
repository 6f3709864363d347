"""a  Overhead on one Kombu transport (``memory://``, one process, one consumer after another).

A bare Kombu ``ConsumerMixin`` that only acks (the floor); kombu-worker (no-op hooks,
MemoryPublisher, SQLite state in a tmpfs file) with MemoryStorage and again with local files
(LocalStorage); Celery 5 (solo pool, worker in a thread) with a no-op task, and, doing the
work kombu-worker does, with a task writing two small files and its result in a ``file://``
result backend or in SQLite through SQLAlchemy (``section_a_celery``). N messages are queued
first; the rate is (N-1) over the time from the first message's handler to the last one's,
so start-up is left out for all of them.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .base import Result, Row, Section, fmt, verdict
from .common import Clock, seed_memory, tmpdir, unique
from .hooks import clocked
from .profiling import py_spy
from .section_a_celery import run_celery
from .settings import BUCKET, Settings, log
from .workers import kombu_worker

TARGETS = {"a_vs_bare": 0.5, "a_vs_celery": 1.2, "a_vs_celery_same_work": 2.0}
CONSUMERS = (
    "bare_kombu",
    "kombu_worker",
    "kombu_worker_files",
    "celery",
    "celery_file_backend",
    "celery_sqlite_backend",
)
LABELS = {
    "bare_kombu": "bare Kombu",
    "kombu_worker": "kombu-worker\n(memory)",
    "kombu_worker_files": "kombu-worker\n(files+SQLite)",
    "celery": "Celery\nno-op",
    "celery_file_backend": "Celery 2 files\n+file:// results",
    "celery_sqlite_backend": "Celery 2 files\n+SQLite results",
}


def run_bare_kombu(n: int) -> Result:
    from kombu import Connection, Queue
    from kombu.mixins import ConsumerMixin

    queue = unique("bench-bare")
    seed_memory(queue, n)
    clock = Clock(n)

    class Bare(ConsumerMixin):  # type: ignore[misc]
        def __init__(self, connection: Any):
            self.connection = connection

        def get_consumers(self, consumer_cls: Any, channel: Any) -> list[Any]:
            return [
                consumer_cls(
                    queues=[Queue(queue, routing_key=queue)],
                    on_message=self.on_message,
                    accept=["application/json"],
                    prefetch_count=1,
                )
            ]

        def on_message(self, message: Any) -> None:
            message.ack()
            clock.tick()
            if clock.done.is_set():
                self.should_stop = True

    started = time.perf_counter()
    Bare(Connection("memory://", transport_options={"polling_interval": 0.01})).run()
    wall = time.perf_counter() - started
    return {"rate": clock.rate(), "wall_s": wall, "processed": clock.count}


def run_kombu_worker(n: int, storage: str, cap: float, profile_to: Path | None = None) -> Result:
    hooks, clock = clocked("noop", n)
    queue = unique("bench-kw")
    seed_memory(queue, n)
    with tmpdir("bench-a-") as tmp, py_spy(profile_to):
        if storage == "files":  # LocalStorage, as the embedded default writes
            from kombu_worker_sdk.storage import LocalStorage

            backend: Any = LocalStorage(tmp / "files", allowed_buckets=[BUCKET])
        else:
            backend = storage
        started = time.perf_counter()
        kw = kombu_worker(hooks, queue=queue, tmp=tmp, storage=backend)
        clock.done.wait(cap)  # a slow build is measured on what it got through in ``cap`` seconds
        wall = time.perf_counter() - started
        kw.stop()
    return {
        "rate": clock.rate(),
        "wall_s": wall,
        "processed": clock.count,
        "capped": clock.count < n,
        "stage_us": stage_means(kw.runtime.storage) if storage != "files" else {},
    }


def stage_means(storage: Any) -> dict[str, float]:
    """Mean seconds per stage (as µs) from the metrics.json files the store stage wrote."""
    totals: Counter[str] = Counter()
    count = 0
    for uri, data in list(getattr(storage, "objects", {}).items()):
        if uri.endswith("/metrics.json"):
            for stage, seconds in json.loads(data).get("sdk", {}).get("stage_seconds", {}).items():
                totals[stage] += seconds
            count += 1
    return {stage: round(1e6 * total / count, 1) for stage, total in totals.items()} if count else {}


def summarise(samples: list[Result]) -> Result:
    """The median of the repeats, and every repeat beside it."""
    rates = [r["rate"] for r in samples]
    figures = {
        "rate": statistics.median(rates),
        "rates": rates,
        "us_per_message": 1e6 / statistics.median(rates),
        "wall_s": statistics.median(r["wall_s"] for r in samples),
        "processed": [r["processed"] for r in samples],
        "capped": any(r.get("capped") for r in samples),
    }
    if samples[0].get("results_stored") is not None:
        figures["results_stored"] = [r["results_stored"] for r in samples]
    if samples[0].get("stage_us"):
        figures["stage_us_first_repeat"] = samples[0]["stage_us"]
    return figures


def run(s: Settings, out_dir: Path) -> Result:
    n = s.overhead_messages
    runs: dict[str, list[Result]] = {name: [] for name in CONSUMERS}
    for rep in range(s.repeats):
        log.info("a: repeat %d/%d, %d messages each", rep + 1, s.repeats, n)
        runs["bare_kombu"].append(run_bare_kombu(n))
        runs["kombu_worker"].append(run_kombu_worker(n, "memory", s.time_cap))
        runs["kombu_worker_files"].append(run_kombu_worker(n, "files", s.time_cap))
        runs["celery"].append(run_celery(n))
        runs["celery_file_backend"].append(run_celery(n, "file", s.time_cap))
        runs["celery_sqlite_backend"].append(run_celery(n, "sqlite", s.time_cap))
        gc.collect()
    if s.profile:  # an extra run, not measured: sampling slows the process down
        log.info("a: profiling kombu-worker with py-spy")
        run_kombu_worker(n, "memory", s.time_cap, out_dir / "profile-a-kombu-worker.txt")
    consumers = {name: summarise(samples) for name, samples in runs.items()}
    kw, bare, cel = (consumers[k]["rate"] for k in ("kombu_worker", "bare_kombu", "celery"))
    kw_files, cel_files = consumers["kombu_worker_files"]["rate"], consumers["celery_file_backend"]["rate"]
    return {
        "transport": "memory://",
        "messages": n,
        "repeats": s.repeats,
        "consumers": consumers,
        "kombu_worker_vs_bare": kw / bare,
        "kombu_worker_vs_celery": kw / cel,
        "kombu_worker_vs_celery_file_backend": kw / cel_files,
        "files_vs_celery_file_backend": kw_files / cel_files,
        "files_vs_celery_sqlite_backend": kw_files / consumers["celery_sqlite_backend"]["rate"],
        "setup": {
            "bare_kombu": "ConsumerMixin, prefetch_count=1, on_message acks only",
            "kombu_worker": "Worker, concurrency 1, no-op hooks, MemoryStorage, MemoryPublisher, "
            "SqliteStateStore on a tmpfs file, WARNING logging",
            "kombu_worker_files": "the same with LocalStorage (atomic file writes) in the same tmpfs folder",
            "celery": "Celery 5 solo pool in a thread (start_worker), no-op task, acks_late, "
            "results ignored, default prefetch multiplier (4)",
            "celery_file_backend": "the same pool, a task writing metrics.json and result.json "
            "(tmpfs), its result kept by the file:// result backend (tmpfs)",
            "celery_sqlite_backend": "the same task, its result kept by the db+sqlite:// "
            "(SQLAlchemy) result backend in a tmpfs file",
        },
        "targets": {
            "vs_bare": TARGETS["a_vs_bare"],
            "vs_celery": TARGETS["a_vs_celery"],
            "vs_celery_file_backend": TARGETS["a_vs_celery_same_work"],
        },
    }


def rows(a: Result) -> list[Row]:
    c = a["consumers"]
    out: list[Row] = []
    for name in CONSUMERS:
        label = name.replace("_", " ")
        out.append(
            (f"{label} msg/s", f"{c[name]['rate']:,.0f}", f"{c[name]['us_per_message']:.0f} us/msg", "")
        )
    for label, key, target in (
        ("kombu-worker / bare kombu", "kombu_worker_vs_bare", "a_vs_bare"),
        ("kombu-worker / celery", "kombu_worker_vs_celery", "a_vs_celery"),
        # issue 11's ">= 2x Celery with a file result backend", read both ways: the SDK on
        # memory:// (its own cost) and the SDK writing files too (the same work)
        (
            "kombu-worker (memory) / celery file backend",
            "kombu_worker_vs_celery_file_backend",
            "a_vs_celery_same_work",
        ),
        ("kombu-worker files / celery file backend", "files_vs_celery_file_backend", "a_vs_celery_same_work"),
    ):
        out.append((label, fmt(a[key], ".3f"), f">= {TARGETS[target]}", verdict(a[key] >= TARGETS[target])))
    for label, key in (("kombu-worker files / celery sqlite backend", "files_vs_celery_sqlite_backend"),):
        out.append((label, fmt(a[key], ".3f"), "", ""))
    return out


def draw(ax: Any, a: Result | None) -> None:
    if a is not None:
        labels = [LABELS[n] for n in CONSUMERS]
        values = [a["consumers"][n]["rate"] for n in CONSUMERS]
        bars = ax.bar(labels, values, color=["#888", "#1f77b4", "#aec7e8", "#2ca02c", "#98df8a", "#98df8a"])
        ax.set_yscale("log")
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
        ax.set_ylabel("messages/s (log)")
        bare, cel = a["consumers"]["bare_kombu"]["rate"], a["consumers"]["celery"]["rate"]
        ax.axhline(0.5 * bare, ls="--", c="#888", lw=1, label="target 0.5x bare")
        ax.axhline(1.2 * cel, ls="--", c="#2ca02c", lw=1, label="target 1.2x Celery")
        ax.legend(fontsize=8)
        ax.tick_params(axis="x", labelsize=6)
    ax.set_title("(a) overhead on memory://: no-op hooks, and the same work")


SECTION = Section("a", "overhead on memory://", run, rows, draw, TARGETS)
