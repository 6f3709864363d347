#!/usr/bin/env python
"""Benchmarks for kombu-worker (issue 5 §4): overhead, SQS requests, concurrency, batching, memory.

One invocation runs every section, prints a table, and writes ``bench.json`` and ``bench.png``
to ``--out-dir`` (default ``bench-out/``, gitignored)::

    python scripts/services.py --no-postgres -- python scripts/bench.py      # full run
    python scripts/bench.py --quick                                           # a smaller one
    python scripts/bench.py --quick --only a                                  # one section

Sections (each runs in its own child process, so that one cannot skew another):

a  Overhead on one Kombu transport (``memory://``, one process, one consumer after another):
   a bare Kombu ``ConsumerMixin`` that only acks (the floor), kombu-worker (no-op hooks,
   MemoryStorage, MemoryPublisher, SQLite state in a tmpfs file) and Celery 5 (solo pool, no-op
   task, worker in a thread). N messages are queued first; the rate is (N-1) over the time from
   the first message's handler to the last one's, so start-up is left out for all three.
b  SQS requests per processed message on moto's server: 75 roots that fan out 1:3 (300
   processed), for kombu-worker and for Celery doing the same work. Requests are counted on the
   wire by a small HTTP proxy in front of moto, so botocore calls and Kombu's pycurl long polls
   (which Celery's event loop uses) are all seen. Needs ``KWS_TEST_MOTO_URL``, else moto's
   server is started here.
c  Concurrency: a hook that sleeps 50 ms at concurrency 1, 8 and 32; achieved / ideal rate.
d  Batching: ``process_batch`` costing 20 ms + 1 ms per item at batch sizes 1, 8 and 32;
   speedup over batch 1 against the ideal (a+b)/(a/B+b).
e  Memory: RSS after 1,000 and after 20,000 messages through one worker (no-op hooks; a
   storage that keeps nothing, since MemoryStorage keeps every object by design).

Targets are printed beside the figures; nothing is asserted. ``--profile`` adds an unmeasured
kombu-worker run to section a, sampled by py-spy (all threads), and writes the hot spots to
``profile-a-kombu-worker*.txt`` (and the collapsed stacks beside them).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import json
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SECTIONS = ("a", "b", "c", "d", "e")
TITLES = {
    "a": "overhead on memory://",
    "b": "SQS requests per message (moto)",
    "c": "concurrency efficiency (50 ms hook)",
    "d": "micro-batching speedup (20 ms + 1 ms/item)",
    "e": "memory growth (RSS)",
}
TARGETS = {
    "a_vs_bare": 0.5,
    "a_vs_celery": 1.2,
    "b_requests_per_message": 0.3,
    "c_efficiency_at_32": 0.9,
    "d_fraction_of_ideal_at_32": 0.8,
    "e_rss_growth_pct": 5.0,
}
REGION = "us-east-1"
BUCKET = "bench"
log = logging.getLogger("bench")


# ----------------------------------------------------------------------------- settings


@dataclass
class Settings:
    quick: bool = False
    overhead_messages: int = 5000
    repeats: int = 3
    time_cap: float = 8.0
    sqs_roots: int = 75
    sqs_fanout: int = 3
    sqs_concurrency: list[int] = field(default_factory=lambda: [1, 10])
    sqs_wait_seconds: int = 2
    sleep_seconds: float = 0.05
    concurrency_levels: list[int] = field(default_factory=lambda: [1, 8, 32])
    concurrency_seconds: float = 4.0
    batch_a: float = 0.020
    batch_b: float = 0.001
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    batch_wait_ms: int = 20
    batch_seconds: float = 3.0
    memory_small: int = 1000
    memory_large: int = 20000
    profile: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        s = cls(quick=args.quick, profile=args.profile)
        if args.quick:
            s.overhead_messages, s.repeats, s.time_cap = 1000, 1, 3.0
            s.sqs_roots, s.sqs_concurrency = 25, [10]
            s.concurrency_seconds, s.batch_seconds = 1.5, 1.0
            s.memory_small, s.memory_large = 500, 3000
        if args.messages:
            s.overhead_messages = args.messages
        if args.repeats:
            s.repeats = args.repeats
        if args.sqs_concurrency:
            s.sqs_concurrency = [int(x) for x in args.sqs_concurrency.split(",")]
        return s


# ------------------------------------------------------------------------------ helpers


def task_body(job: str, task: str, step: str = "noop", **params: Any) -> dict[str, Any]:
    return {
        "job_id": job,
        "task_id": task,
        "input_uri": f"s3://{BUCKET}/input.bin",
        "output_prefix": f"s3://{BUCKET}/jobs/{job}/{task}/",
        "params": {"step": step, **params},
    }


def memory_publish(queue: str, bodies: list[dict[str, Any]]) -> None:
    """Queue raw JSON task bodies on Kombu's memory transport."""
    from kombu import Connection, Producer, Queue

    with Connection("memory://") as conn:
        producer = Producer(conn.default_channel)
        declare = [Queue(queue, routing_key=queue)]
        for body in bodies:
            producer.publish(
                json.dumps(body),
                routing_key=queue,
                content_type="application/json",
                content_encoding="utf-8",
                declare=declare,
            )
            declare = []


class Clock:
    """First and last handler times and a count, shared by every consumer under test."""

    def __init__(self, expected: int):
        self.expected = expected
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()

    def tick(self, n: int = 1) -> None:
        now = time.perf_counter()
        with self._lock:
            if self.first is None:
                self.first = now
            self.count += n
            self.last = now
            if self.count >= self.expected:
                self.done.set()

    def rate(self) -> float:
        """Messages per second between the first and the last handler call: (N-1) intervals."""
        if self.first is None or self.last is None or self.last <= self.first:
            return float("nan")
        return (self.count - 1) / (self.last - self.first)


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quiet_logging() -> None:
    """WARNING for everyone, as a production worker would log no line per message."""
    from kombu_worker_sdk.logs import configure_logging

    configure_logging("WARNING")
    for name in ("celery", "kombu", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)


# ------------------------------------------------------------------------ hooks & storage


def make_hooks() -> dict[str, type]:
    """The hooks classes used here (built lazily so the parent needs no SDK import)."""
    from kombu_worker_sdk import WorkerHooks

    class NoopHooks(WorkerHooks):
        version = "bench"
        clock: Clock | None = None

        def load_pipeline(self, ctx: Any) -> None:
            return None

        def process(self, ctx: Any, msg: Any) -> Any:
            if self.clock is not None:
                self.clock.tick()
            return {"result": None}

        def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
            return []

    class SleepHooks(NoopHooks):
        seconds = 0.05

        def process(self, ctx: Any, msg: Any) -> Any:
            time.sleep(self.seconds)
            return super().process(ctx, msg)

    class BatchHooks(NoopHooks):
        a = 0.020
        b = 0.001

        def process(self, ctx: Any, msg: Any) -> Any:
            time.sleep(self.a + self.b)
            return super().process(ctx, msg)

        def process_batch(self, ctx: Any, msgs: list[Any]) -> list[Any]:
            time.sleep(self.a + self.b * len(msgs))
            if self.clock is not None:
                self.clock.tick(len(msgs))
            return [{"result": None} for _ in msgs]

    class FanoutHooks(NoopHooks):
        fanout = 3

        def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
            if msg["params"].get("step") != "root":
                return []
            job = msg["job_id"]
            return [task_body(job, f"{msg['task_id']}-c{i}", "child") for i in range(self.fanout)]

    return {"noop": NoopHooks, "sleep": SleepHooks, "batch": BatchHooks, "fanout": FanoutHooks}


def make_storage(kind: str) -> Any:
    """``memory``: MemoryStorage as shipped; ``indexed``: the same with an O(1) find_result
    (a diagnostic); ``null``: keeps nothing (for the memory section)."""
    from kombu_worker_sdk.storage import MemoryStorage

    class IndexedMemoryStorage(MemoryStorage):
        def find_result(self, output_prefix: str) -> str | None:
            uri = output_prefix.rstrip("/") + "/result.json"
            return uri if uri in self.objects else None

    class NullStorage(MemoryStorage):
        def put(self, uri: str, data: bytes, content_type: str) -> None:
            pass

        def find_result(self, output_prefix: str) -> str | None:
            return None

    classes = {"memory": MemoryStorage, "indexed": IndexedMemoryStorage, "null": NullStorage}
    return classes[kind](allowed_buckets=[BUCKET])


@dataclass
class KW:
    """A kombu-worker under test."""

    worker: Any
    runtime: Any
    thread: threading.Thread | None = None

    def stop(self, join: float = 10.0) -> None:
        self.worker.should_stop = True
        if self.thread is not None:
            self.thread.join(join)
        self.worker.shutdown(5)
        self.runtime.close()


def kombu_worker(
    hooks: Any,
    *,
    queue: str,
    tmp: Path,
    storage: str = "memory",
    broker_url: str = "memory://",
    publisher: Any = None,
    max_messages: int | None = None,
    threaded: bool = True,
    **settings: Any,
) -> KW:
    from kombu_worker_sdk.config import WorkerConfig
    from kombu_worker_sdk.consumer import Worker
    from kombu_worker_sdk.publish import MemoryPublisher
    from kombu_worker_sdk.runner import delivery_factory
    from kombu_worker_sdk.runtime import broker_connection, build_runtime
    from kombu_worker_sdk.state import SqliteStateStore

    config = WorkerConfig(
        broker_url=broker_url,
        queue=queue,
        data_dir=tmp,
        bucket=BUCKET,
        log_level="WARNING",
        worker_id=f"bench-{uuid.uuid4().hex[:6]}",
        **settings,
    )
    state = SqliteStateStore(tmp / f"state-{uuid.uuid4().hex[:8]}.db")
    if publisher is None:
        publisher = MemoryPublisher()
    elif publisher == "default":
        publisher = None  # the runtime picks it from broker_url (SqsPublisher for sqs://)
    runtime = build_runtime(config, hooks, storage=make_storage(storage), state=state, publisher=publisher)
    runtime.state.upgrade()
    runtime.start()
    worker = Worker(
        runtime,
        broker_connection(config),
        delivery_factory=delivery_factory(runtime),
        max_messages=max_messages,
    )
    kw = KW(worker, runtime)
    if threaded:
        kw.thread = threading.Thread(target=worker.run, name="bench-kombu-worker", daemon=True)
        kw.thread.start()
        if not worker.ready.wait(30):
            raise RuntimeError("kombu-worker did not start consuming")
    return kw


@contextlib.contextmanager
def tmpdir(prefix: str) -> Iterator[Path]:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------ a: overhead


def run_bare_kombu(n: int) -> dict[str, Any]:
    from kombu import Connection, Queue
    from kombu.mixins import ConsumerMixin

    queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
    memory_publish(queue, [task_body(f"j{i}", f"j{i}-t") for i in range(n)])
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


def run_kombu_worker_overhead(
    n: int, storage: str, cap: float, profile_to: Path | None = None
) -> dict[str, Any]:
    hooks_cls = make_hooks()["noop"]
    hooks = hooks_cls()
    clock = Clock(n)
    hooks.clock = clock
    queue = f"bench-kw-{uuid.uuid4().hex[:8]}"
    memory_publish(queue, [task_body(f"j{i}", f"j{i}-t") for i in range(n)])
    with tmpdir("bench-a-") as tmp, py_spy(profile_to):
        started = time.perf_counter()
        kw = kombu_worker(hooks, queue=queue, tmp=tmp, storage=storage)
        clock.done.wait(cap)  # a slow build is measured on what it got through in ``cap`` seconds
        wall = time.perf_counter() - started
        kw.stop()
    return {
        "rate": clock.rate(),
        "wall_s": wall,
        "processed": clock.count,
        "capped": clock.count < n,
        "stage_us": stage_means(kw.runtime.storage),
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


@contextlib.contextmanager
def py_spy(out: Path | None) -> Iterator[None]:
    """Sample this process with py-spy (all threads) while the block runs; summarise to ``out``."""
    if out is None:
        yield
        return
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    raw = out.with_suffix(".collapsed")
    proc = subprocess.Popen(
        [
            exe,
            "record",
            "-p",
            str(os.getpid()),
            "-r",
            "500",
            "--format",
            "raw",
            "-o",
            str(raw),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let it attach
    try:
        yield
    finally:
        proc.send_signal(2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        if raw.exists():
            out.write_text(summarise_collapsed(raw.read_text()))


def summarise_collapsed(text: str, top: int = 40) -> str:
    """Self and inclusive sample shares by function, from py-spy's collapsed stacks."""
    self_: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        samples = int(count)
        total += samples
        self_[frames[-1]] += samples
        for frame in set(frames):
            incl[frame] += samples
    lines = [f"py-spy samples (non-idle, all threads): {total}", "", "self time:"]
    lines += [f"{100 * c / total:6.1f}%  {f}" for f, c in self_.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"{100 * c / total:6.1f}%  {f}" for f, c in incl.most_common(top)]
    return "\n".join(lines) + "\n"


def run_celery_overhead(n: int) -> dict[str, Any]:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    queue = f"bench-celery-{uuid.uuid4().hex[:8]}"
    app = Celery(f"bench{uuid.uuid4().hex[:6]}", broker="memory://", set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        task_acks_late=True,  # the same at-least-once guarantee as kombu-worker
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
    )
    clock = Clock(n)

    @app.task(name="bench.noop")
    def noop(i: int) -> None:
        clock.tick()

    for i in range(n):
        noop.apply_async((i,))
    started = time.perf_counter()
    with start_worker(
        app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10
    ):
        clock.done.wait(300)
        wall = time.perf_counter() - started
    return {"rate": clock.rate(), "wall_s": wall, "processed": clock.count}


def section_a(s: Settings, out_dir: Path) -> dict[str, Any]:
    n = s.overhead_messages
    runs: dict[str, list[dict[str, Any]]] = {
        "bare_kombu": [],
        "kombu_worker": [],
        "celery": [],
        "kombu_worker_indexed_storage": [],
    }
    for rep in range(s.repeats):
        log.info("a: repeat %d/%d, %d messages each", rep + 1, s.repeats, n)
        runs["bare_kombu"].append(run_bare_kombu(n))
        runs["kombu_worker"].append(run_kombu_worker_overhead(n, "memory", s.time_cap))
        runs["kombu_worker_indexed_storage"].append(run_kombu_worker_overhead(n, "indexed", s.time_cap))
        runs["celery"].append(run_celery_overhead(n))
        gc.collect()
    if s.profile:  # an extra run, not measured: sampling slows the process down
        log.info("a: profiling kombu-worker with py-spy")
        run_kombu_worker_overhead(n, "memory", s.time_cap, out_dir / "profile-a-kombu-worker.txt")
        run_kombu_worker_overhead(n, "indexed", s.time_cap, out_dir / "profile-a-kombu-worker-indexed.txt")
    consumers = {}
    for name, samples in runs.items():
        rates = [r["rate"] for r in samples]
        consumers[name] = {
            "rate": statistics.median(rates),
            "rates": rates,
            "us_per_message": 1e6 / statistics.median(rates),
            "wall_s": statistics.median(r["wall_s"] for r in samples),
            "processed": [r["processed"] for r in samples],
            "capped": any(r.get("capped") for r in samples),
        }
        if samples[0].get("stage_us"):
            consumers[name]["stage_us_first_repeat"] = samples[0]["stage_us"]
    consumers["kombu_worker_indexed_storage"]["diagnostic"] = (
        "MemoryStorage with an O(1) find_result instead of its sorted scan of every object"
    )
    kw, bare, cel = (consumers[k]["rate"] for k in ("kombu_worker", "bare_kombu", "celery"))
    return {
        "transport": "memory://",
        "messages": n,
        "repeats": s.repeats,
        "consumers": consumers,
        "kombu_worker_vs_bare": kw / bare,
        "kombu_worker_vs_celery": kw / cel,
        "indexed_vs_bare": consumers["kombu_worker_indexed_storage"]["rate"] / bare,
        "indexed_vs_celery": consumers["kombu_worker_indexed_storage"]["rate"] / cel,
        "setup": {
            "bare_kombu": "ConsumerMixin, prefetch_count=1, on_message acks only",
            "kombu_worker": "Worker, concurrency 1, no-op hooks, MemoryStorage, MemoryPublisher, "
            "SqliteStateStore on a tmpfs file, WARNING logging",
            "celery": "Celery 5 solo pool in a thread (start_worker), no-op task, acks_late, "
            "results ignored, default prefetch multiplier (4)",
        },
        "targets": {"vs_bare": TARGETS["a_vs_bare"], "vs_celery": TARGETS["a_vs_celery"]},
    }


# ------------------------------------------------------------------- b: SQS request counts


class CountingProxy:
    """An HTTP proxy in front of moto that counts SQS requests by operation, on the wire."""

    HOP = {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "content-length",
    }

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.count(self.command, self.path, self.headers.get("X-Amz-Target"), body)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy.HOP}
                data, status, reply = b"", 502, []
                for _attempt in range(2):
                    conn = getattr(local, "conn", None)
                    if conn is None:
                        conn = local.conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        resp = conn.getresponse()
                        data, status, reply = resp.read(), resp.status, resp.getheaders()
                        break
                    except (OSError, http.client.HTTPException):
                        conn.close()
                        local.conn = None
                try:
                    self.send_response(status)
                    for key, value in reply:
                        if key.lower() not in proxy.HOP:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client went away (a long poll cut short by a stopping worker)
                    self.close_connection = True

            do_POST = do_GET = do_PUT = do_DELETE = do_HEAD = _forward

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that hangs up mid-request is not the benchmark's business

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="bench-proxy", daemon=True)
        self.thread.start()

    def count(self, method: str, path: str, target: str | None, body: bytes) -> None:
        op = target.rpartition(".")[2] if target else ""
        if not op:
            form = parse_qs(body.decode("utf-8", "replace")) if body else {}
            form.update(parse_qs(urlsplit(path).query))
            op = (form.get("Action") or [f"{method} {urlsplit(path).path}"])[0]
        with self.lock:
            self.counts[op] += 1

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """``KWS_TEST_MOTO_URL`` when the harness runs, else a moto server started (and stopped) here."""
    url = os.environ.get("KWS_TEST_MOTO_URL")
    if url:
        yield url
        return
    port = free_port()
    logdir = Path(tempfile.mkdtemp(prefix="bench-moto-"))
    logfile = logdir / "moto.log"
    with logfile.open("wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not start: {logfile.read_text()[-2000:]}") from None
                time.sleep(0.1)
        log.info("b: started moto's server on %s (pid %d)", url, proc.pid)
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(logdir, ignore_errors=True)


def per_message(counts: Counter[str], processed: int) -> dict[str, Any]:
    total = sum(counts.values())
    return {
        "processed": processed,
        "requests": dict(sorted(counts.items())),
        "total_requests": total,
        "per_message": total / processed if processed else float("nan"),
        "per_message_by_operation": {k: v / processed for k, v in sorted(counts.items())}
        if processed
        else {},
    }


def run_kw_sqs(
    s: Settings, sqs: Any, proxy: CountingProxy, concurrency: int, receive_batch_size: int | None = None
) -> dict[str, Any]:
    name = f"bench-kw-c{concurrency}-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    roots = [task_body(f"job{i}", f"job{i}-root", "root") for i in range(s.sqs_roots)]
    for start in range(0, len(roots), 10):
        entries = [
            {"Id": str(k), "MessageBody": json.dumps(b)} for k, b in enumerate(roots[start : start + 10])
        ]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    expected = s.sqs_roots * (1 + s.sqs_fanout)
    hooks = make_hooks()["fanout"]()
    hooks.fanout = s.sqs_fanout
    clock = Clock(expected)
    hooks.clock = clock
    before = proxy.snapshot()
    started = time.perf_counter()
    with tmpdir("bench-b-") as tmp:
        kw = kombu_worker(
            hooks,
            queue=url,
            next_queue=url,
            tmp=tmp,
            storage="indexed",
            broker_url="sqs://",
            publisher="default",
            region=REGION,
            concurrency=concurrency,
            wait_time_seconds=s.sqs_wait_seconds,
            receive_batch_size=receive_batch_size,
        )
        ready = proxy.snapshot()
        deadline = time.monotonic() + 600
        while kw.worker.settled < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        busy = time.perf_counter() - started
        kw.stop(join=s.sqs_wait_seconds + 10)
    after = proxy.snapshot()
    result = per_message(after - before, kw.worker.settled)
    result.update(
        {
            "consumer": "kombu-worker",
            "concurrency": concurrency,
            "prefetch": kw.runtime.config.effective_prefetch,
            "startup_requests": dict(ready - before),
            "wall_s": busy,
            "rate": clock.rate(),
        }
    )
    return result


def run_celery_sqs(s: Settings, sqs: Any, proxy: CountingProxy) -> dict[str, Any]:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    name = f"bench-celery-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    app = Celery(f"bench{uuid.uuid4().hex[:6]}", broker="sqs://", set_as_current=False)
    app.conf.update(
        task_default_queue=name,
        task_acks_late=True,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_enable_remote_control=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "predefined_queues": {name: {"url": url}},
            "region": REGION,
            "is_secure": False,
            "wait_time_seconds": s.sqs_wait_seconds,
            "visibility_timeout": 60,
            "polling_interval": 0,
        },
    )
    expected = s.sqs_roots * (1 + s.sqs_fanout)
    clock = Clock(expected)
    fanout = s.sqs_fanout

    @app.task(name="bench.leaf")
    def leaf(i: int, k: int) -> None:
        clock.tick()

    @app.task(name="bench.root")
    def root(i: int) -> None:
        for k in range(fanout):
            leaf.delay(i, k)
        clock.tick()

    for i in range(s.sqs_roots):
        root.delay(i)
    before = proxy.snapshot()
    started = time.perf_counter()
    with start_worker(
        app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30
    ):
        clock.done.wait(600)
        busy = time.perf_counter() - started
        time.sleep(0.5)  # acks_late: the last ack follows the task's return
    after = proxy.snapshot()
    result = per_message(after - before, clock.count)
    result.update(
        {"consumer": "celery", "concurrency": 1, "prefetch": 4, "wall_s": busy, "rate": clock.rate()}
    )
    return result


def sqs_floors(roots: int, fanout: int) -> dict[str, float]:
    """Fewest requests per message: full receives and deletes of 10, and sends per parent or
    packed 10 to a call across parents (start-up calls left out)."""
    processed = roots * (1 + fanout)
    full = -(-processed // 10)
    return {
        "full_batches_sends_per_parent": (2 * full + roots) / processed,
        "full_batches_sends_packed": (2 * full + -(-roots * fanout // 10)) / processed,
    }


def section_b(s: Settings, out_dir: Path) -> dict[str, Any]:
    import boto3

    for key, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", REGION),
    ):
        os.environ.setdefault(key, value)
    with moto_server() as moto_url:
        proxy = CountingProxy(moto_url)
        # Every SQS client made from here on (boto3, Kombu's sync and pycurl clients) goes
        # through the counting proxy; the bench's own client below talks to moto directly.
        os.environ["AWS_ENDPOINT_URL_SQS"] = proxy.url
        os.environ.pop("AWS_ENDPOINT_URL", None)
        sqs = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)
        consumers: dict[str, Any] = {}
        try:
            for concurrency in s.sqs_concurrency:
                log.info(
                    "b: kombu-worker, concurrency %d, %d roots x 1:%d", concurrency, s.sqs_roots, s.sqs_fanout
                )
                consumers[f"kombu_worker_c{concurrency}"] = run_kw_sqs(s, sqs, proxy, concurrency)
                # The short-step profile: receive (and so prefetch) up to 10 at a time.
                consumers[f"kombu_worker_c{concurrency}_rb10"] = run_kw_sqs(s, sqs, proxy, concurrency, 10)
            log.info("b: celery, %d roots x 1:%d", s.sqs_roots, s.sqs_fanout)
            consumers["celery"] = run_celery_sqs(s, sqs, proxy)
        finally:
            proxy.close()
    return {
        "roots": s.sqs_roots,
        "fanout": s.sqs_fanout,
        "expected_processed": s.sqs_roots * (1 + s.sqs_fanout),
        "wait_time_seconds": s.sqs_wait_seconds,
        "counted": "every HTTP request to moto from worker start to worker stop (seeding excluded), "
        "by a counting proxy, so Kombu's pycurl long polls are included",
        "consumers": consumers,
        "floors": sqs_floors(s.sqs_roots, s.sqs_fanout),
        "target_per_message": TARGETS["b_requests_per_message"],
    }


# ------------------------------------------------------------------- c: concurrency


def section_c(s: Settings, out_dir: Path) -> dict[str, Any]:
    results = {}
    for storage in ("memory", "indexed"):
        levels = {}
        for conc in s.concurrency_levels:
            ideal = conc / s.sleep_seconds
            n = max(conc * 2, round(ideal * s.concurrency_seconds / conc) * conc)
            hooks = make_hooks()["sleep"]()
            hooks.seconds = s.sleep_seconds
            clock = Clock(n)
            hooks.clock = clock
            queue = f"bench-c{conc}-{uuid.uuid4().hex[:8]}"
            memory_publish(queue, [task_body(f"j{i}", f"j{i}-t") for i in range(n)])
            with tmpdir("bench-c-") as tmp:
                started = time.perf_counter()
                kw = kombu_worker(hooks, queue=queue, tmp=tmp, storage=storage, concurrency=conc)
                deadline = time.monotonic() + 300
                while kw.worker.settled < n and time.monotonic() < deadline:
                    time.sleep(0.005)
                ended = time.perf_counter()
                kw.stop()
            # n messages in ceil(n/conc) waves of sleep_seconds at best; measured from the
            # worker's start to the last settle, minus nothing: prefetch is part of the job.
            first = clock.first or started
            achieved = n / (ended - first + s.sleep_seconds)
            levels[str(conc)] = {
                "messages": n,
                "achieved_rate": achieved,
                "ideal_rate": ideal,
                "efficiency": achieved / ideal,
                "wall_s": ended - started,
            }
            log.info(
                "c: storage=%s concurrency %d: %.1f/s of ideal %.1f/s (%.0f%%)",
                storage,
                conc,
                achieved,
                ideal,
                100 * achieved / ideal,
            )
        results[storage] = levels
    return {
        "sleep_seconds": s.sleep_seconds,
        "levels": results["memory"],
        "levels_indexed_storage": results["indexed"],
        "measure": "n / (last settle - first hook start + one sleep); ideal = concurrency / sleep",
        "setup": "memory://, MemoryStorage, MemoryPublisher, file-backed SQLite state (tmpfs); "
        "levels_indexed_storage: the same with an O(1) find_result (diagnostic)",
        "target_efficiency_at_32": TARGETS["c_efficiency_at_32"],
    }


# ---------------------------------------------------------------------- d: batching


def section_d(s: Settings, out_dir: Path) -> dict[str, Any]:
    a, b = s.batch_a, s.batch_b
    rows: dict[str, Any] = {}
    for size in s.batch_sizes:
        per_batch = a + b * size
        batches = max(4, int(s.batch_seconds / per_batch))
        n = batches * size
        hooks = make_hooks()["batch"]()
        hooks.a, hooks.b = a, b
        clock = Clock(n)
        hooks.clock = clock
        queue = f"bench-d{size}-{uuid.uuid4().hex[:8]}"
        memory_publish(queue, [task_body(f"j{i}", f"j{i}-t") for i in range(n)])
        with tmpdir("bench-d-") as tmp:
            kw = kombu_worker(
                hooks,
                queue=queue,
                tmp=tmp,
                storage="indexed",
                batch_size=size,
                batch_wait_ms=s.batch_wait_ms if size > 1 else 0,
            )
            deadline = time.monotonic() + 300
            while kw.worker.settled < n and time.monotonic() < deadline:
                time.sleep(0.002)
            ended = time.perf_counter()
            kw.stop()
        first = clock.first or ended
        # the first tick comes after the first batch's sleep: add one batch's cost back
        rate = n / (ended - first + per_batch)
        rows[str(size)] = {"messages": n, "rate": rate, "ideal_rate": size / per_batch}
        log.info("d: batch %d: %.1f msg/s (ideal %.1f)", size, rate, size / per_batch)
    base = rows[str(s.batch_sizes[0])]["rate"]
    for size in s.batch_sizes:
        row = rows[str(size)]
        ideal_speedup = (a + b) / (a / size + b)
        row["speedup"] = row["rate"] / base
        row["ideal_speedup"] = ideal_speedup
        row["fraction_of_ideal"] = row["speedup"] / ideal_speedup
        # not flattered by a slow batch-1 baseline: the rate against a + b·B per batch
        row["rate_vs_ideal_rate"] = row["rate"] / row["ideal_rate"]
    return {
        "a_seconds": a,
        "b_seconds_per_item": b,
        "batch_wait_ms": s.batch_wait_ms,
        "concurrency": 1,
        "sizes": rows,
        "setup": "memory://, concurrency 1, prefetch = batch size (the SDK default), "
        "MemoryStorage with O(1) find_result, file-backed SQLite (tmpfs)",
        "target_fraction_at_32": TARGETS["d_fraction_of_ideal_at_32"],
    }


# ------------------------------------------------------------------------ e: memory


def section_e(s: Settings, out_dir: Path) -> dict[str, Any]:
    hooks = make_hooks()["noop"]()
    queue = f"bench-e-{uuid.uuid4().hex[:8]}"
    chunk = 500
    with tmpdir("bench-e-") as tmp:
        # prefetch 100: RSS per message is the question here, not the dispatch latency of (a)
        kw = kombu_worker(hooks, queue=queue, tmp=tmp, storage="null", prefetch=100)
        sent = 0

        def feed(total: int) -> None:
            nonlocal sent
            while sent < total:
                count = min(chunk, total - sent)
                memory_publish(queue, [task_body(f"j{i}", f"j{i}-t") for i in range(sent, sent + count)])
                sent += count
                deadline = time.monotonic() + 120
                while kw.worker.settled < sent and time.monotonic() < deadline:
                    time.sleep(0.005)

        def measure() -> int:
            gc.collect()
            time.sleep(0.2)
            return rss_bytes()

        rss0 = measure()
        feed(s.memory_small)
        rss_small = measure()
        feed(s.memory_large)
        rss_large = measure()
        settled = kw.worker.settled
        kw.stop()
    growth = 100.0 * (rss_large - rss_small) / rss_small
    return {
        "after_start_mb": rss0 / 2**20,
        "after_small_mb": rss_small / 2**20,
        "after_large_mb": rss_large / 2**20,
        "small": s.memory_small,
        "large": s.memory_large,
        "settled": settled,
        "growth_pct": growth,
        "per_1000_messages_kb": (rss_large - rss_small) / 1024 / ((s.memory_large - s.memory_small) / 1000),
        "setup": "memory://, concurrency 1, prefetch 100, no-op hooks, a storage that keeps nothing (MemoryStorage "
        "keeps every object, by design), file-backed SQLite (tmpfs), fed 500 at a time",
        "target_growth_pct": TARGETS["e_rss_growth_pct"],
    }


RUNNERS: dict[str, Callable[[Settings, Path], dict[str, Any]]] = {
    "a": section_a,
    "b": section_b,
    "c": section_c,
    "d": section_d,
    "e": section_e,
}


# ------------------------------------------------------------------------- reporting


def fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


def table_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = []
    a = results.get("a")
    if a and "error" not in a:
        c = a["consumers"]
        for name in ("bare_kombu", "kombu_worker", "celery", "kombu_worker_indexed_storage"):
            label = name.replace("_", " ") + (" (diagnostic)" if "indexed" in name else "")
            rows.append(
                (
                    "a",
                    f"{label} msg/s",
                    f"{c[name]['rate']:,.0f}",
                    f"{c[name]['us_per_message']:.0f} us/msg",
                    "",
                )
            )
        rows.append(
            (
                "a",
                "kombu-worker / bare kombu",
                fmt(a["kombu_worker_vs_bare"], ".3f"),
                ">= 0.5",
                verdict(a["kombu_worker_vs_bare"] >= TARGETS["a_vs_bare"]),
            )
        )
        rows.append(
            (
                "a",
                "kombu-worker / celery",
                fmt(a["kombu_worker_vs_celery"], ".3f"),
                ">= 1.2",
                verdict(a["kombu_worker_vs_celery"] >= TARGETS["a_vs_celery"]),
            )
        )
        rows.append(
            (
                "a",
                "  (indexed storage) / celery",
                fmt(a["indexed_vs_celery"], ".3f"),
                ">= 1.2",
                verdict(a["indexed_vs_celery"] >= TARGETS["a_vs_celery"]),
            )
        )
    b = results.get("b")
    if b and "error" not in b:
        celery = b["consumers"].get("celery", {}).get("per_message")
        for name, r in b["consumers"].items():
            ops = ", ".join(f"{k} {v}" for k, v in r["requests"].items())
            target = "<= 0.3" if name != "celery" else "reference"
            ok = r["per_message"] <= TARGETS["b_requests_per_message"] and (
                celery is None or name == "celery" or r["per_message"] < celery
            )
            rows.append(
                (
                    "b",
                    f"{name} requests/msg ({r['processed']} msgs)",
                    fmt(r["per_message"], ".3f"),
                    target,
                    verdict(ok) if name != "celery" else "",
                )
            )
            rows.append(("b", "  by operation", ops, "", ""))
        for name, value in b.get("floors", {}).items():
            rows.append(("b", f"  floor: {name.replace('_', ' ')}", fmt(value, ".3f"), "", ""))
    c = results.get("c")
    if c and "error" not in c:
        for conc, r in c["levels"].items():
            is32 = conc == "32"
            rows.append(
                (
                    "c",
                    f"concurrency {conc}: achieved/ideal",
                    f"{100 * r['efficiency']:.1f}%",
                    ">= 90%" if is32 else "",
                    verdict(r["efficiency"] >= 0.9) if is32 else "",
                )
            )
        for conc, r in c.get("levels_indexed_storage", {}).items():
            rows.append(
                ("c", f"  (indexed storage) concurrency {conc}", f"{100 * r['efficiency']:.1f}%", "", "")
            )
    d = results.get("d")
    if d and "error" not in d:
        for size, r in d["sizes"].items():
            is32 = size == "32"
            rows.append(
                (
                    "d",
                    f"batch {size}: speedup (ideal)",
                    f"{r['speedup']:.2f}x ({r['ideal_speedup']:.2f}x)",
                    "",
                    "",
                )
            )
            rows.append(
                (
                    "d",
                    f"batch {size}: speedup / ideal speedup",
                    f"{100 * r['fraction_of_ideal']:.1f}%",
                    ">= 80%" if is32 else "",
                    verdict(r["fraction_of_ideal"] >= 0.8) if is32 else "",
                )
            )
            rows.append(
                (
                    "d",
                    f"batch {size}: rate / ideal rate (B/(a+bB))",
                    f"{100 * r['rate_vs_ideal_rate']:.1f}%",
                    "",
                    "",
                )
            )
    e = results.get("e")
    if e and "error" not in e:
        rows.append(
            (
                "e",
                f"RSS after {e['small']:,} / {e['large']:,} msgs",
                f"{e['after_small_mb']:.1f} / {e['after_large_mb']:.1f} MB",
                "",
                "",
            )
        )
        rows.append(("e", "RSS growth", f"{e['growth_pct']:.2f}%", "< 5%", verdict(e["growth_pct"] < 5.0)))
    for key, r in results.items():
        if isinstance(r, dict) and "error" in r:
            rows.append((key, "ERROR", r["error"][:80], "", ""))
    return rows


def print_table(rows: list[tuple[str, str, str, str, str]]) -> str:
    header = ("sec", "metric", "value", "target", "")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    last = None
    for r in rows:
        if last is not None and r[0] != last:
            lines.append("")
        last = r[0]
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    text = "\n".join(lines)
    print(text)
    return text


def draw_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    ax_a, ax_b, ax_c, ax_d, ax_e, ax_info = axes.flat
    a = results.get("a")
    if a and "error" not in a:
        names = ["bare_kombu", "kombu_worker", "celery", "kombu_worker_indexed_storage"]
        labels = ["bare Kombu", "kombu-worker", "Celery 5", "kombu-worker\n(indexed find_result)"]
        values = [a["consumers"][n]["rate"] for n in names]
        bars = ax_a.bar(labels, values, color=["#888", "#1f77b4", "#2ca02c", "#aec7e8"])
        ax_a.set_yscale("log")
        ax_a.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
        ax_a.set_ylabel("messages/s (log)")
        bare, cel = a["consumers"]["bare_kombu"]["rate"], a["consumers"]["celery"]["rate"]
        ax_a.axhline(0.5 * bare, ls="--", c="#888", lw=1, label="target 0.5x bare")
        ax_a.axhline(1.2 * cel, ls="--", c="#2ca02c", lw=1, label="target 1.2x Celery")
        ax_a.legend(fontsize=8)
        ax_a.tick_params(axis="x", labelsize=8)
    ax_a.set_title("(a) overhead, no-op hooks, memory://")
    b = results.get("b")
    if b and "error" not in b:
        consumers = list(b["consumers"])
        ops = sorted({op for r in b["consumers"].values() for op in r["requests"]})
        bottom = [0.0] * len(consumers)
        for op in ops:
            vals = [b["consumers"][c]["per_message_by_operation"].get(op, 0.0) for c in consumers]
            short = [c.replace("kombu_worker_", "kw ").replace("_rb10", "\n+rb10") for c in consumers]
            ax_b.bar(short, vals, bottom=bottom, label=op)
            bottom = [x + y for x, y in zip(bottom, vals, strict=True)]
        ax_b.axhline(TARGETS["b_requests_per_message"], ls="--", c="r", lw=1, label="target 0.3")
        ax_b.set_ylabel("SQS requests per processed message")
        ax_b.legend(fontsize=7)
        ax_b.tick_params(axis="x", labelsize=8)
    ax_b.set_title("(b) SQS requests/message, fan-out 1:3 (moto)")
    c = results.get("c")
    if c and "error" not in c:
        levels = list(c["levels"])
        ax_c.plot(levels, [100 * c["levels"][k]["efficiency"] for k in levels], "o-", label="MemoryStorage")
        if c.get("levels_indexed_storage"):
            li = c["levels_indexed_storage"]
            ax_c.plot(list(li), [100 * li[k]["efficiency"] for k in li], "s--", label="indexed find_result")
        ax_c.axhline(90, ls="--", c="r", lw=1, label="target 90% at 32")
        ax_c.set_ylim(0, 105)
        ax_c.set_xlabel("concurrency")
        ax_c.set_ylabel("achieved / ideal rate (%)")
        ax_c.legend(fontsize=8)
    ax_c.set_title("(c) concurrency efficiency, 50 ms hook")
    d = results.get("d")
    if d and "error" not in d:
        sizes = list(d["sizes"])
        ax_d.plot(sizes, [d["sizes"][k]["speedup"] for k in sizes], "o-", label="achieved")
        ax_d.plot(sizes, [d["sizes"][k]["ideal_speedup"] for k in sizes], "k--", label="ideal (a+b)/(a/B+b)")
        ax_d.plot(sizes, [0.8 * d["sizes"][k]["ideal_speedup"] for k in sizes], "r:", label="80% of ideal")
        last = d["sizes"][sizes[-1]]
        ax_d.text(
            0.02,
            0.6,
            f"rate / ideal rate at {sizes[-1]}: {100 * last['rate_vs_ideal_rate']:.0f}%\n"
            f"at 1: {100 * d['sizes'][sizes[0]]['rate_vs_ideal_rate']:.0f}%",
            transform=ax_d.transAxes,
            fontsize=8,
        )
        ax_d.set_xlabel("batch size")
        ax_d.set_ylabel("speedup over batch 1")
        ax_d.legend(fontsize=8)
    ax_d.set_title("(d) micro-batching, 20 ms + 1 ms/item")
    e = results.get("e")
    if e and "error" not in e:
        labels = ["start", f"{e['small']:,} msgs", f"{e['large']:,} msgs"]
        vals = [e["after_start_mb"], e["after_small_mb"], e["after_large_mb"]]
        bars = ax_e.bar(labels, vals, color="#9467bd")
        ax_e.bar_label(bars, labels=[f"{v:.1f}" for v in vals], fontsize=8)
        ax_e.set_ylabel("RSS (MB)")
        ax_e.set_title(f"(e) RSS, growth {e['growth_pct']:.2f}% (target < 5%)")
    else:
        ax_e.set_title("(e) RSS")
    meta = results.get("meta", {})
    ax_info.axis("off")
    ax_info.text(
        0,
        1,
        "\n".join(f"{k}: {v}" for k, v in meta.items() if not isinstance(v, dict | list)),
        va="top",
        fontsize=8,
        family="monospace",
    )
    fig.suptitle("kombu-worker benchmarks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default="bench-out", help="where bench.json and bench.png go")
    parser.add_argument("--only", default="", help="comma-separated sections, e.g. a,c (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller runs (about a minute in all)")
    parser.add_argument("--messages", type=int, default=0, help="messages per consumer in section a")
    parser.add_argument("--repeats", type=int, default=0, help="repeats of section a (median reported)")
    parser.add_argument("--sqs-concurrency", default="", help="kombu-worker concurrencies in b, e.g. 1,10")
    parser.add_argument("--profile", action="store_true", help="py-spy hot spots of a's kombu-worker")
    parser.add_argument("--no-chart", action="store_true", help="skip bench.png")
    parser.add_argument("--section", help=argparse.SUPPRESS)  # child mode: run one section
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_child(args: argparse.Namespace) -> int:
    quiet_logging()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s bench %(message)s"))
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    settings = Settings.from_args(args)
    out_dir = Path(args.out_dir)
    started = time.perf_counter()
    result = RUNNERS[args.section](settings, out_dir)
    result["section_seconds"] = time.perf_counter() - started
    Path(args.child_out).write_text(json.dumps(result, indent=1, default=str))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # worker threads (Celery's, Kombu's) must not hold the child open


def child_argv(args: argparse.Namespace, section: str, child_out: Path) -> list[str]:
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--section",
        section,
        "--child-out",
        str(child_out),
        "--out-dir",
        str(args.out_dir),
    ]
    for flag in ("quick", "profile"):
        if getattr(args, flag):
            argv.append(f"--{flag}")
    for opt in ("messages", "repeats", "sqs_concurrency"):
        value = getattr(args, opt)
        if value:
            argv += [f"--{opt.replace('_', '-')}", str(value)]
    return argv


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.section:
        return run_child(args)
    only = [x.strip() for x in args.only.split(",") if x.strip()] or list(SECTIONS)
    unknown = [x for x in only if x not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; choose from {','.join(SECTIONS)}", file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    import celery
    import kombu

    results: dict[str, Any] = {
        "meta": {
            "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
            "quick": args.quick,
            "python": platform.python_version(),
            "kombu": kombu.__version__,
            "celery": celery.__version__,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "moto": "KWS_TEST_MOTO_URL" if os.environ.get("KWS_TEST_MOTO_URL") else "started by bench",
            "git": git_head(),
            "uncommitted_package_files": git_dirty(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    }
    began = time.perf_counter()
    for section in only:
        print(f"== {section}: {TITLES[section]}", file=sys.stderr, flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            child_out = Path(handle.name)
        try:
            proc = subprocess.run(child_argv(args, section, child_out), cwd=REPO, timeout=900, check=False)
            if proc.returncode == 0 and child_out.stat().st_size:
                results[section] = json.loads(child_out.read_text())
            else:
                results[section] = {"error": f"section {section} exited with code {proc.returncode}"}
        except subprocess.TimeoutExpired:
            results[section] = {"error": f"section {section} timed out"}
        finally:
            child_out.unlink(missing_ok=True)
    results["meta"]["total_seconds"] = round(time.perf_counter() - began, 1)
    results["targets"] = TARGETS
    print()
    results["table"] = print_table(table_rows(results))
    json_path = out_dir / "bench.json"
    json_path.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nJSON: {json_path}")
    if not args.no_chart:
        png = out_dir / "bench.png"
        draw_chart(results, png)
        print(f"chart: {png}")
    print(f"total: {results['meta']['total_seconds']} s")
    return 0 if not any(isinstance(v, dict) and "error" in v for v in results.values()) else 1


def git_dirty() -> list[str]:
    """Package files with uncommitted edits: others change the consumer while this runs."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", "kombu_worker_sdk"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return [line[3:] for line in out.stdout.splitlines()]
    except OSError:
        return []


def git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
