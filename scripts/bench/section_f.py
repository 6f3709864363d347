"""f  Device duty cycle: does the model run back to back while I/O waits on the network?

One simulated device (a lock held 20 ms + 2 ms per item) behind backends that cost what the
real ones do: 30 ms per storage request (S3 in-region), 2 ms per state call (PostgreSQL
in-VPC), 15 ms per receive (SQS; up to 10 messages a call). The hook's ``process_batch``
reads each message's ``input_uri`` through ``ctx.storage``. A backlog of 400 messages is
queued first; each run lasts until it is drained or ``device_seconds`` pass.

Duty is the device's busy time over the wall time from its first call's start to its last
call's end; msg/s is set against the device's own limit at that batch size, B/(a + b·B).
kombu-worker runs at batch 1, 8 and 32 (``batch_wait_ms`` 50, ``concurrency`` 1); Celery
runs the same device, latencies and per-message calls (idempotency check, claim, input
read, two writes, completion) in its solo pool and its threads pool (Celery has no
micro-batching, so it calls the device one item at a time). Then kombu-worker runs once more
over moto's server behind proxies adding the same latencies (``section_f_moto``).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from .base import Result, Row, Section, percent, verdict
from .common import Clock, seed_memory, task_body, tmpdir, unique
from .latency import Device, OpCounter, latency_state, latency_storage, latency_transport
from .settings import Settings, log
from .workers import celery_app, celery_worker, kombu_worker

DEVICE_A, DEVICE_B = 0.020, 0.002
STORAGE_S, STATE_S, SQS_S = 0.030, 0.002, 0.015
BATCH_WAIT_MS = 50
CELERY_THREADS = 8
INPUT = task_body("j", "t")["input_uri"]
TARGETS = {"f_duty_at_8": 0.9, "f_duty_at_1": 0.9}


def device_hooks(device: Device) -> Any:
    """Hooks that read every input through ``ctx.storage`` and then run the device once."""
    from kombu_worker_sdk import WorkerHooks

    class DeviceHooks(WorkerHooks):
        version = "bench"

        def load_pipeline(self, ctx: Any) -> None:
            return None

        def process(self, ctx: Any, msg: Any) -> Any:
            return self.process_batch(ctx, [msg])[0]

        def process_batch(self, ctx: Any, msgs: list[Any]) -> list[Any]:
            for msg in msgs:
                ctx.storage.read(msg["input_uri"])
            device.run(len(msgs))
            return [{"result": {"n": len(msgs)}} for _ in msgs]

        def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
            return []

    return DeviceHooks()


class World:
    """One run's backends, device and request counters."""

    def __init__(self, tmp: Path):
        self.counts = {"storage": OpCounter(), "state": OpCounter(), "sqs": OpCounter()}
        self.device = Device(DEVICE_A, DEVICE_B)
        self.storage = latency_storage(STORAGE_S, self.counts["storage"])
        from kombu_worker_sdk.storage import MemoryStorage

        MemoryStorage.put(self.storage, INPUT, b"\0" * 4096, "application/octet-stream")  # not charged
        self.state = latency_state(tmp / "state.db", STATE_S, self.counts["state"])
        self.state.upgrade()
        self.transport = latency_transport(SQS_S, self.counts["sqs"])

    def figures(self, batch: int, processed: int) -> Result:
        out = self.device.figures(batch)
        out["processed"] = processed
        for name, counter in self.counts.items():
            ops = counter.snapshot()
            out[f"{name}_requests"] = ops
            out[f"{name}_per_message"] = sum(ops.values()) / processed if processed else float("nan")
        storage = self.counts["storage"]
        out["storage_peak_inflight"] = storage.peak
        window = out["window_s"]
        requests = sum(storage.snapshot().values())
        out["storage_mean_inflight"] = requests * STORAGE_S / window if window > 0 else float("nan")
        return out


def wait_for(done: Any, deadline: float, watch: Any = None) -> None:
    """Poll ``done()`` until it holds or the deadline passes (a capped run reports what it got),
    calling ``watch()`` at each poll."""
    while not done() and time.monotonic() < deadline:
        if watch is not None:
            watch()
        time.sleep(0.02)


class HeldWatch:
    """Messages the worker held and its prefetch limit, sampled while it runs (diagnostics:
    a device waiting while the limit sits low says prefetch is what starves it)."""

    def __init__(self, worker: Any):
        self.worker = worker
        self.samples: list[tuple[int, int]] = []
        self.by_lane: Counter[str] = Counter()

    def __call__(self) -> None:
        counts = getattr(self.worker, "lane_counts", None)
        governor = getattr(self.worker, "governor", None)
        if counts is not None and governor is not None:
            lanes = counts()
            self.by_lane.update(lanes)
            self.samples.append((sum(lanes.values()), governor.limit()))

    def figures(self) -> Result:
        if not self.samples:
            return {}
        held = [h for h, _ in self.samples]
        return {
            "held_mean": sum(held) / len(held),
            "held_peak": max(held),
            "prefetch_limit_peak": max(limit for _, limit in self.samples),
            "held_mean_by_lane": {k: round(v / len(self.samples), 1) for k, v in self.by_lane.items()},
        }


def run_kombu_worker(s: Settings, batch: int) -> Result:
    from kombu import Connection

    n = s.device_backlog
    queue = unique(f"bench-f{batch}")
    with tmpdir("bench-f-") as tmp:
        world = World(tmp)
        seed_memory(queue, n)
        conn = Connection(
            "memory://", transport=world.transport, transport_options={"polling_interval": 0.01}
        )
        kw = kombu_worker(
            device_hooks(world.device),
            queue=queue,
            tmp=tmp,
            storage=world.storage,
            state=world.state,
            connection=conn,
            concurrency=1,
            batch_size=batch,
            batch_wait_ms=BATCH_WAIT_MS,
        )
        watch = HeldWatch(kw.worker)
        wait_for(lambda: kw.worker.settled >= n, time.monotonic() + s.device_seconds, watch)
        settled = kw.worker.settled
        kw.stop()
    result = world.figures(batch, settled)
    result.update(watch.figures())
    result.update({"consumer": "kombu-worker", "batch_size": batch, "backlog": n})
    log.info(
        "f: kombu-worker batch %d: duty %.1f%%, %.1f msg/s (device limit %.1f), %d settled; "
        "storage requests in flight: peak %d, mean %.1f; held: mean %.1f, peak %s (limit peak %s), "
        "mean by lane %s",
        batch,
        100 * result["duty"],
        result["rate"],
        result["device_limit"],
        settled,
        result["storage_peak_inflight"],
        result["storage_mean_inflight"],
        result.get("held_mean", float("nan")),
        result.get("held_peak", "-"),
        result.get("prefetch_limit_peak", "-"),
        result.get("held_mean_by_lane", {}),
    )
    return result


def run_celery(s: Settings, pool: str, concurrency: int) -> Result:
    """Celery doing what the SDK does per message, around the same device, one item a call."""
    from kombu_worker_sdk.message import parse_task
    from kombu_worker_sdk.storage.base import join_uri

    n = s.device_backlog
    queue = unique(f"bench-f-celery-{pool}")
    with tmpdir("bench-f-celery-") as tmp:
        world = World(tmp)
        storage, state, device = world.storage, world.state, world.device
        app = celery_app(
            "memory://",
            queue,
            broker_transport=world.transport,
            broker_transport_options={"polling_interval": 0.01},
            # as on SQS, which has no fanout: no pidbox queue polled (and charged) beside the work
            worker_enable_remote_control=False,
        )
        clock = Clock(n)

        @app.task(name=f"bench.device.{queue}")
        def on_device(body: dict[str, Any]) -> None:
            msg = parse_task(body)
            if storage.find_result(msg.output_prefix) is None:
                state.claim(msg, worker_id="celery", lease_seconds=300)
                storage.read(msg.input_uri)
                device.run(1)
                storage.put(join_uri(msg.output_prefix, "metrics.json"), b"{}", "application/json")
                storage.put(join_uri(msg.output_prefix, "result.json"), b'{"n":1}', "application/json")
                state.complete(msg, [], default_queue=None)
            clock.tick()

        for i in range(n):
            on_device.apply_async((task_body(f"j{i}", f"j{i}-t"),))
        with celery_worker(app, shutdown_timeout=5, pool=pool, concurrency=concurrency):
            clock.done.wait(s.device_seconds)
            processed = clock.count
    result = world.figures(1, processed)
    result.update({"consumer": f"celery {pool}", "concurrency": concurrency, "batch_size": 1, "backlog": n})
    log.info(
        "f: celery %s x%d: duty %.1f%%, %.1f msg/s", pool, concurrency, 100 * result["duty"], result["rate"]
    )
    return result


def median_run(samples: list[Result]) -> Result:
    """The repeat with the median duty, and every repeat's duty beside it: the machine's two
    cores are shared, so one run can be a few points off either way."""
    ordered = sorted(samples, key=lambda r: r["duty"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["duties"] = [r["duty"] for r in samples]
    chosen["rates"] = [r["rate"] for r in samples]
    return chosen


def run(s: Settings, out_dir: Path) -> Result:
    runs: dict[str, Result] = {}
    for batch in s.device_batches:
        samples = [run_kombu_worker(s, batch) for _ in range(max(1, s.repeats))]
        runs[f"kombu_worker_b{batch}"] = median_run(samples)
    runs["celery_solo"] = run_celery(s, "solo", 1)
    runs[f"celery_threads_{CELERY_THREADS}"] = run_celery(s, "threads", CELERY_THREADS)
    result: Result = {
        "latencies_ms": {"storage": 1e3 * STORAGE_S, "state": 1e3 * STATE_S, "sqs_receive": 1e3 * SQS_S},
        "device_ms": {"a": 1e3 * DEVICE_A, "b_per_item": 1e3 * DEVICE_B},
        "batch_wait_ms": BATCH_WAIT_MS,
        "concurrency": 1,
        "backlog": s.device_backlog,
        "cap_seconds": s.device_seconds,
        "repeats": max(1, s.repeats),
        "runs": runs,
        "targets": {"duty_at_8": TARGETS["f_duty_at_8"], "duty_at_1": TARGETS["f_duty_at_1"]},
    }
    if s.device_moto:
        from .section_f_moto import run_over_moto

        result["moto"] = run_over_moto(s, device_hooks, World)
    log.info(summary(result))  # the parent prints it again as its last line
    return result


def summary(f: Result) -> str:
    """The figure issue 11 asks for, on a line of its own."""
    duty8 = f["runs"].get("kombu_worker_b8", {}).get("duty", float("nan"))
    return f"f: device duty at batch 8: {100 * duty8:.1f}%"


def spread(duties: list[float]) -> str:
    return f" ({percent(min(duties))}-{percent(max(duties))})" if len(duties) > 1 else ""


def rows(f: Result) -> list[Row]:
    out: list[Row] = []
    for name, r in f["runs"].items():
        size = r["batch_size"]
        target = TARGETS.get(f"f_duty_at_{size}") if name.startswith("kombu") else None
        label = name.replace("kombu_worker_b", "kombu-worker batch ").replace("_", " ")
        out.append(
            (
                f"{label}: device duty" + (" (median; range)" if len(r.get("duties", [])) > 1 else ""),
                percent(r["duty"]) + spread(r.get("duties", [])),
                f">= {target:.0%}" if target else "",
                verdict(r["duty"] >= target) if target else "",
            )
        )
        out.append(
            (
                f"  msg/s (device limit at {size})",
                f"{r['rate']:.1f} ({r['device_limit']:.0f})",
                f"mean batch {r['mean_batch']:.1f}",
                "",
            )
        )
    moto = f.get("moto")
    if moto:
        out.append(("over moto + latency proxies, batch 8: duty", percent(moto["duty"]), "", ""))
        out.append(("  msg/s (moto's own cost caps it)", f"{moto['rate']:.1f}", "", ""))
    return out


def draw(ax: Any, f: Result | None) -> None:
    if f is not None:
        names = list(f["runs"])
        labels = [n.replace("kombu_worker_b", "kw b").replace("celery_", "Celery\n") for n in names]
        duties = [100 * f["runs"][n]["duty"] for n in names]
        colors = ["#1f77b4" if n.startswith("kombu") else "#2ca02c" for n in names]
        if f.get("moto"):
            labels.append("kw b8\nmoto")
            duties.append(100 * f["moto"]["duty"])
            colors.append("#aec7e8")
        bars = ax.bar(labels, duties, color=colors)
        rates = [f"{f['runs'][n]['rate']:.0f}/s" for n in names]
        if f.get("moto"):
            rates.append(f"{f['moto']['rate']:.0f}/s")
        ax.bar_label(bars, labels=[f"{d:.0f}%\n{r}" for d, r in zip(duties, rates, strict=True)], fontsize=7)
        ax.axhline(90, ls="--", c="r", lw=1, label="target 90%")
        ax.set_ylim(0, 115)
        ax.set_ylabel("device duty % (msg/s on the bars)")
        ax.legend(fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    ax.set_title("(f) device duty, 20 ms + 2 ms/item, injected I/O latency")


SECTION = Section("f", "device duty cycle (injected latencies)", run, rows, draw, TARGETS, summary)
