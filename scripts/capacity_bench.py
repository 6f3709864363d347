#!/usr/bin/env python3
"""Capacity of one PostgreSQL state store, driven the way N concurrent workers drive it.

Usage (the services harness starts a throwaway PostgreSQL and PgBouncer; moto is not needed)::

    .venv/bin/python scripts/services.py --no-moto -- .venv/bin/python scripts/capacity_bench.py

Each simulated worker is a thread with its own ``PostgresStateStore`` (``maxconn=1``: a pod with
``concurrency 1``), connected through PgBouncer in ``pool_mode = transaction`` (``--direct``
skips the pooler). Per message it does what the SDK does: ``claim``, one ``extend_lease``, and
``complete`` with its child registration. Two scenarios, for N = 8, 32, 128 workers:

* ``independent``: every message is the root of its own job and registers one child, so no two
  workers touch the same row: the store's plain capacity;
* ``fan-in 1000``: jobs fanned out 1,000 ways (the root's ``complete`` registering 1,000 children
  is timed as ``fan-out``); the workers drain the siblings of one job after another, and every
  sibling's ``complete`` counts its arrival at the job's fan-in barrier and bumps the job's
  counters: two hot rows.

Printed per run: messages/s, transactions and SQL statements per message (counted in the client),
p50/p99 per operation, and the share of active backends waiting on a row lock (sampled from
``pg_stat_activity``). Marks: ``<- saturated`` on the first N whose throughput gains under 20 %
over the previous N (here on 2 shared cores that is CPU: client, PgBouncer and server together),
``<- row locks`` on the first N whose lock-wait share passes 10 % (workers queue on hot rows). The cluster runs with ``fsync`` off (a
throwaway): commits cost less than on a durable server, so these figures are an upper bound.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2
from psycopg2 import sql

from kombu_worker_sdk.errors import BackendUnavailableError
from kombu_worker_sdk.message import FanIn, NextMessage, TaskMessage
from kombu_worker_sdk.state.dbapi import Cursor
from kombu_worker_sdk.state.postgres import PostgresStateStore

OPS = ("claim", "extend", "complete")
STEP_SECONDS = 0.0  # --step-ms
_TX = itertools.count()
_STMT = itertools.count()


class CountingStore(PostgresStateStore):
    """Counts transactions and statements (``next()`` on a count is atomic under the GIL)."""

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        next(_TX)
        with super()._tx() as cur:
            yield cur

    def _run(self, cur: Cursor, sql: str, params: Any = ()) -> Cursor:
        next(_STMT)
        return super()._run(cur, sql, params)


def _counts() -> tuple[int, int]:
    # Peek without consuming: the next value of each count, minus this call's own step.
    return next(_TX), next(_STMT)


@dataclass
class Run:
    scenario: str
    workers: int
    messages: int = 0
    seconds: float = 0.0
    tx: int = 0
    statements: int = 0
    lock_share: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    extra: dict[str, float] = field(default_factory=dict)
    marks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def pct(self, op: str, q: float) -> float:
        values = sorted(self.latencies[op])
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "workers": self.workers,
            "messages": self.messages,
            "msg_per_s": round(self.rate, 1),
            "tx_per_msg": round(self.tx / self.messages, 2) if self.messages else 0,
            "statements_per_msg": round(self.statements / self.messages, 2) if self.messages else 0,
            "lock_wait_share": round(self.lock_share, 3),
            "p50_ms": {op: round(self.pct(op, 0.50), 2) for op in OPS},
            "p99_ms": {op: round(self.pct(op, 0.99), 2) for op in OPS},
            "marks": self.marks,
            "failed_workers": len(self.errors),
            **{k: round(v, 2) for k, v in self.extra.items()},
        }


def _msg(job: str, task: str, **params: Any) -> TaskMessage:
    return TaskMessage(
        job_id=job,
        task_id=task,
        input_uri=f"s3://in/{task}",
        output_prefix=f"s3://out/{job}/{task}/",
        params=params,
    )


def _child(job: str, task: str, fan_in: FanIn | None = None) -> NextMessage:
    return NextMessage(
        job_id=job,
        task_id=task,
        input_uri=f"s3://in/{task}",
        output_prefix=f"s3://out/{job}/{task}/",
        fan_in=fan_in,
    )


def _timed(run: Run, lock: threading.Lock, op: str, fn: Callable[[], Any]) -> Any:
    began = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - began
    with lock:
        run.latencies[op].append(elapsed)
    return result


def _process(
    store: PostgresStateStore,
    run: Run,
    lock: threading.Lock,
    msg: TaskMessage,
    kids: list[NextMessage],
    me: str,
) -> None:
    claim = _timed(run, lock, "claim", lambda: store.claim(msg, worker_id=me, lease_seconds=60))
    assert claim.outcome == "CLAIMED", claim
    _timed(run, lock, "extend", lambda: store.extend_lease(msg.task_id, worker_id=me, lease_seconds=60))
    if STEP_SECONDS:
        time.sleep(STEP_SECONDS)  # the step itself (a GPU's work): the load model's check point
    _timed(run, lock, "complete", lambda: store.complete(msg, kids, default_queue="next"))


class LockSampler(threading.Thread):
    """Every 20 ms: how many of the database's active backends wait on another's row lock.

    Row locks show as ``tuple`` / ``transactionid`` waits; other ``Lock`` waits (``extend``:
    many backends growing one table) are not hot rows and are left out.
    """

    def __init__(self, direct: str, database: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg2.connect(direct)
        self.conn.autocommit = True
        self.database = database
        self.stop = threading.Event()
        self.waiting = self.active = 0

    def run(self) -> None:
        with self.conn.cursor() as cur:
            while not self.stop.wait(0.02):
                cur.execute(
                    "SELECT count(*) FILTER (WHERE wait_event IN ('tuple', 'transactionid')), count(*) "
                    "FROM pg_stat_activity "
                    "WHERE datname = %s AND state = 'active' AND pid <> pg_backend_pid()",
                    (self.database,),
                )
                waiting, active = cur.fetchone()
                self.waiting += waiting
                self.active += active

    def share(self) -> float:
        self.stop.set()
        self.join()
        self.conn.close()
        return self.waiting / self.active if self.active else 0.0


def _drive(
    run: Run,
    stores: list[PostgresStateStore],
    direct: str,
    database: str,
    work: Callable[[int, PostgresStateStore, threading.Lock], int],
) -> None:
    lock = threading.Lock()
    start = threading.Barrier(len(stores) + 1)
    done: list[int] = [0] * len(stores)

    def worker(i: int) -> None:
        start.wait()
        try:
            done[i] = work(i, stores[i], lock)
        except BackendUnavailableError as exc:  # e.g. direct, N above max_connections
            with lock:
                run.errors.append(str(exc).rsplit(": ", 1)[-1].strip())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    sampler = LockSampler(direct, database)
    tx0, st0 = _counts()
    sampler.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    run.seconds = time.perf_counter() - began
    tx1, st1 = _counts()
    run.lock_share = sampler.share()
    run.tx, run.statements, run.messages = tx1 - tx0 - 1, st1 - st0 - 1, sum(done)


def independent(
    run: Run, stores: list[PostgresStateStore], direct: str, database: str, seconds: float
) -> None:
    tag = uuid.uuid4().hex[:6]

    def work(i: int, store: PostgresStateStore, lock: threading.Lock) -> int:
        deadline, n = time.perf_counter() + seconds, 0
        while time.perf_counter() < deadline:
            job = f"{tag}-w{i}-m{n}"
            _process(store, run, lock, _msg(job, f"{job}-root"), [_child(job, f"{job}-c")], f"w{i}")
            n += 1
        return n

    _drive(run, stores, direct, database, work)


def fan_in(
    run: Run, stores: list[PostgresStateStore], direct: str, database: str, jobs: int, width: int
) -> None:
    tag = uuid.uuid4().hex[:6]
    work_queue: queue.Queue[tuple[TaskMessage, list[NextMessage]]] = queue.Queue()
    fanouts: list[float] = []
    for j in range(jobs):  # set-up: the roots fan out (timed, not counted in msg/s)
        job = f"{tag}-j{j}"
        root = _msg(job, f"{job}-root", width=width)
        kids = [_child(job, f"{job}-s{k:04d}") for k in range(width)]
        stores[0].claim(root, worker_id="setup", lease_seconds=60)
        began = time.perf_counter()
        pending = stores[0].complete(root, kids, default_queue="next")
        fanouts.append(time.perf_counter() - began)
        join = _child(job, f"{job}-join", FanIn(group="join", size=width))
        for child in pending:
            work_queue.put((child.message, [join]))
    run.extra["fanout_ms"] = 1000 * sum(fanouts) / len(fanouts)

    def work(i: int, store: PostgresStateStore, lock: threading.Lock) -> int:
        n = 0
        while True:
            try:
                msg, kids = work_queue.get_nowait()
            except queue.Empty:
                return n
            _process(store, run, lock, msg, kids, f"w{i}")
            n += 1

    _drive(run, stores, direct, database, work)
    done = stores[0].get_job(f"{tag}-j0")
    if not run.errors:
        assert done is not None and done.total == width + 2, done  # root + siblings + the join


def _fresh_database(admin: str) -> tuple[str, str]:
    name = f"kws_capacity_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn.close()
    return name, admin.rsplit("/", 1)[0] + "/" + name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="8,32,128", help="comma-separated worker counts")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each independent run")
    parser.add_argument("--jobs", type=int, default=3, help="1,000-way fan-outs drained per fan-in run")
    parser.add_argument("--width", type=int, default=1000, help="fan-out width")
    parser.add_argument("--direct", action="store_true", help="connect to PostgreSQL, not PgBouncer")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--step-ms", type=float, default=0.0, help="work per message between extend and complete"
    )
    parser.add_argument("--scenarios", default="independent,fan-in", help="which scenarios to run")
    args = parser.parse_args(argv)
    admin = os.environ.get("KWS_TEST_PG_DSN")
    bouncer = os.environ.get("KWS_TEST_PGBOUNCER_DSN")
    if not admin or not (bouncer or args.direct):
        parser.error("run under scripts/services.py (KWS_TEST_PG_DSN / KWS_TEST_PGBOUNCER_DSN unset)")
    global STEP_SECONDS
    STEP_SECONDS = args.step_ms / 1000
    results: list[Run] = []
    wanted = args.scenarios.split(",")
    for scenario in [s for s in ("independent", f"fan-in {args.width}") if s.split()[0] in wanted]:
        previous: Run | None = None
        for n in (int(x) for x in args.workers.split(",")):
            database, direct = _fresh_database(admin)
            dsn = direct if args.direct else str(bouncer).rsplit("/", 1)[0] + "/" + database
            stores = [CountingStore(dsn, maxconn=1) for _ in range(n)]
            stores[0].upgrade()
            run = Run(scenario, n)
            if scenario == "independent":
                independent(run, stores, direct, database, args.seconds)
            else:
                fan_in(run, stores, direct, database, args.jobs, args.width)
            for store in stores:
                store.close()
            _mark(run, previous, [r for r in results if r.scenario == scenario])
            results.append(run)
            _print_row(run, first=len(results) == 1)
            previous = run
    if args.json:
        args.json.write_text(json.dumps([r.summary() for r in results], indent=2) + "\n")
    return 0


def _mark(run: Run, previous: Run | None, earlier: list[Run]) -> None:
    """Mark the first run of a scenario where throughput stops growing, and where locks queue."""
    seen = {mark for r in earlier for mark in r.marks}
    if previous is not None and run.rate < 1.2 * previous.rate and "saturated" not in seen:
        run.marks.append("saturated")
    if run.lock_share > 0.10 and "row locks" not in seen:
        run.marks.append("row locks")


def _print_row(run: Run, *, first: bool) -> None:
    if first:
        print(
            f"{'scenario':<13}{'N':>5}{'msg/s':>9}{'tx/msg':>8}{'stmt/msg':>9}  "
            f"{'p50/p99 claim':>15}{'p50/p99 extend':>16}{'p50/p99 complete':>18}{'lock-wait':>10}  (ms)"
        )
    s = run.summary()
    cells = "".join(f"{s['p50_ms'][op]:>8.1f}/{s['p99_ms'][op]:<6.1f}" for op in OPS)
    extra = f"  fan-out {s['fanout_ms']:.0f} ms" if "fanout_ms" in s else ""
    mark = "".join(f"  <- {m}" for m in run.marks)
    if run.errors:
        mark += f"  ({len(run.errors)} of {run.workers} workers failed: {run.errors[0]})"
    print(
        f"{run.scenario:<13}{run.workers:>5}{run.rate:>9.0f}{s['tx_per_msg']:>8}{s['statements_per_msg']:>9}  "
        f"{cells}{100 * run.lock_share:>8.0f} %{extra}{mark}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
