#!/usr/bin/env python3
"""The fleet's load model: SQS requests and cost, state-store load and connections, per pod count.

Usage::

    python scripts/capacity.py                      # the defaults below, for 10, 100, 1,000 pods
    python scripts/capacity.py --child-s 0.2 --fan-out 100 --pods 50,500
    python scripts/capacity.py --json out.json      # the same figures, machine-readable

A job is one root message, ``--fan-out`` children, and (``--fan-in``, the default) one join
message released when every child is DONE. By default the fleet is kept busy (KEDA scales it to
the backlog); ``--arrival JOBS_PER_S`` models a fixed load instead. Each pod runs
``--concurrency`` messages at a time; a message costs its step plus ``--state-ms`` of state-store
round trips. What one message costs, as the SDK does it:

* SQS: a ReceiveMessage per ``min(10, concurrency)`` messages; a DeleteMessageBatch per the acks
  that finish within 0.5 s of each other on a pod (``transport/sqs/acks.py``); SendMessageBatch
  per 10 children, one send for the root and one for the join; a ChangeMessageVisibility every
  ``visibility/3`` seconds of a step (``worker/heartbeat.py``); idle pods long-poll every 20 s;
* state store: claim and complete (two transactions), one extend_lease transaction per
  visibility extension, and every pod's registry upsert per heartbeat tick.

Defaults for capacity come from ``scripts/capacity_bench.py`` on this machine (2 shared cores,
PostgreSQL 15 with fsync off, through PgBouncer 1.18 in transaction mode): about 1,000 msg/s x 3
transactions = 3,000 transactions/s (N = 8 to 128 workers, no hot rows: 982-1,104 msg/s), and
800 sibling completions/s on one job's fan-in rows (a 1,000-way fan-out, N = 128: 805-825).
Measure your own server with capacity_bench.py and pass ``--tx-capacity`` / ``--hot-row-capacity``.

SQS list price: US East (N. Virginia), $0.40 per million requests for standard queues and $0.50
for FIFO, first million a month free (aws.amazon.com/sqs/pricing as summarised in March 2026;
payloads under 64 KiB, one request each). Stdlib only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECONDS_PER_MONTH = 30 * 24 * 3600
FREE_REQUESTS = 1_000_000
PRICE_PER_MILLION = {"standard": 0.40, "fifo": 0.50}
#: SQS FIFO: 300 API calls/s per action per queue without batching or high-throughput mode.
FIFO_CALLS_PER_S = 300.0
LONG_POLL_S = 20.0
ACK_DELAY_S = 0.5
SQS_BATCH = 10


@dataclass(frozen=True)
class Inputs:
    pods: tuple[int, ...] = (10, 100, 1000)
    concurrency: int = 1
    fan_out: int = 10
    fan_in: bool = True
    root_s: float = 5.0
    child_s: float = 2.0
    join_s: float = 5.0
    arrival: float | None = None  # jobs/s; None: the fleet is kept busy
    visibility_s: float = 60.0
    state_ms: float = 5.0
    tx_capacity: float = 3000.0
    hot_row_capacity: float = 800.0
    tx_ms: float = 1.0  # server time per transaction, for the pooler's server connections
    maxconn: int = 8  # PostgresStateStore's pool per worker process
    max_connections: int = 100  # PostgreSQL's default
    queue: str = "standard"


def _steps(i: Inputs) -> list[tuple[float, int]]:
    """(step seconds, messages per job) for each kind of message of a job."""
    return [(i.root_s, 1), (i.child_s, i.fan_out)] + ([(i.join_s, 1)] if i.fan_in else [])


def model(i: Inputs, pods: int) -> dict[str, Any]:
    steps = _steps(i)
    per_job = sum(n for _, n in steps)
    busy = sum(n * (step + i.state_ms / 1000) for step, n in steps)  # pod-seconds per job
    fleet_jobs = pods * i.concurrency / busy  # jobs/s the fleet can finish
    jobs = fleet_jobs if i.arrival is None else min(i.arrival, fleet_jobs)
    busy_share = jobs / fleet_jobs
    rate = jobs * per_job
    interval = max(i.visibility_s / 3, 0.2)
    extensions = sum(n * math.floor(step / interval) for step, n in steps)  # per job
    mean_step = busy / per_job
    ack_batch = min(SQS_BATCH, max(1.0, i.concurrency * ACK_DELAY_S / mean_step))
    sqs = {
        "receive": rate / min(SQS_BATCH, i.concurrency) + pods * (1 - busy_share) / LONG_POLL_S,
        "delete": rate / ack_batch,
        "send": jobs * (1 + math.ceil(i.fan_out / SQS_BATCH) + int(i.fan_in)),
        "visibility": jobs * extensions,
    }
    sqs_total = sum(sqs.values())
    monthly = sqs_total * SECONDS_PER_MONTH
    tx = jobs * (2 * per_job + extensions) + pods / interval
    clients = pods * min(i.maxconn, i.concurrency + 1)  # the workers' threads and the heartbeat
    servers = max(1, math.ceil(tx * i.tx_ms / 1000))  # Little's law: busy server connections
    hot = min(i.fan_out, pods * i.concurrency) / i.child_s if i.fan_in and i.fan_out else 0.0
    load = {
        "PostgreSQL transactions": tx / i.tx_capacity,
        "one job's fan-in rows": hot / i.hot_row_capacity,
        "server connections through the pooler": servers / i.max_connections,
    }
    if i.queue == "fifo":
        load["SQS FIFO calls per action"] = max(sqs.values()) / FIFO_CALLS_PER_S
    first = max(load, key=lambda k: load[k])
    return {
        "pods": pods,
        "msg_per_s": rate,
        "jobs_per_s": jobs,
        "sqs_requests_per_s": sqs_total,
        "sqs_by_action": sqs,
        "sqs_monthly_requests": monthly,
        "sqs_monthly_usd": max(0.0, monthly - FREE_REQUESTS) / 1e6 * PRICE_PER_MILLION[i.queue],
        "state_tx_per_s": tx,
        "state_load": load["PostgreSQL transactions"],
        "pooler_client_connections": clients,
        "pooler_server_connections": servers,
        "direct_connection_load": clients / i.max_connections,  # every client straight to PostgreSQL
        "load": load,
        "first_to_saturate": first if load[first] >= 1 else None,
        "nearest_limit": first,
    }


def pods_at_store_limit(i: Inputs) -> float:
    """Pods at which a busy fleet's transactions reach the store's capacity (tx is linear in pods)."""
    per_pod = model(dataclasses.replace(i, arrival=None), 1)["state_tx_per_s"]
    return i.tx_capacity / per_pod


def pods_at_connection_limit(i: Inputs) -> int:
    """Pods whose pools, connected straight to PostgreSQL, fill its ``max_connections``."""
    return math.ceil(i.max_connections / min(i.maxconn, i.concurrency + 1))


def report(i: Inputs) -> tuple[str, list[dict[str, Any]]]:
    rows = [model(i, p) for p in i.pods]
    head = (
        f"{'pods':>6}{'msg/s':>9}{'SQS req/s':>11}{'SQS $/month':>13}{'state tx/s':>12}{'of capacity':>13}"
        f"{'pooler clients':>16}{'servers':>9}  first to saturate (nearest limit)"
    )
    lines = [head]
    for r in rows:
        limit = (
            r["first_to_saturate"]
            or f"none ({r['nearest_limit']} {100 * r['load'][r['nearest_limit']]:.0f} %)"
        )
        lines.append(
            f"{r['pods']:>6}{r['msg_per_s']:>9.1f}{r['sqs_requests_per_s']:>11.1f}{r['sqs_monthly_usd']:>13,.0f}"
            f"{r['state_tx_per_s']:>12.1f}{100 * r['state_load']:>12.0f} %{r['pooler_client_connections']:>16}"
            f"{r['pooler_server_connections']:>9}  {limit}"
        )
    lines.append(
        f"One PostgreSQL at {i.tx_capacity:,.0f} transactions/s stops being enough at about "
        f"{pods_at_store_limit(i):,.0f} busy pods of this workload."
    )
    lines.append(
        f"Without a pooler its max_connections ({i.max_connections}) is reached at "
        f"{pods_at_connection_limit(i)} pods ({min(i.maxconn, i.concurrency + 1)} connections each)."
    )
    return "\n".join(lines), rows


def parse(argv: list[str]) -> tuple[Inputs, Path | None]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    defaults = Inputs()
    parser.add_argument(
        "--pods", default=",".join(map(str, defaults.pods)), help="comma-separated pod counts"
    )
    for f in dataclasses.fields(Inputs):
        if f.name in {"pods", "fan_in", "queue", "arrival"}:
            continue
        kind = int if isinstance(f.default, int) else float
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    parser.add_argument("--arrival", type=float, default=None, help="jobs/s (default: the fleet kept busy)")
    parser.add_argument("--no-fan-in", dest="fan_in", action="store_false", help="jobs without a join step")
    parser.add_argument("--queue", choices=sorted(PRICE_PER_MILLION), default="standard")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = vars(parser.parse_args(argv))
    out = args.pop("json")
    args["pods"] = tuple(int(p) for p in str(args["pods"]).split(","))
    return Inputs(**args), out


def main(argv: list[str] | None = None) -> int:
    inputs, out = parse(sys.argv[1:] if argv is None else argv)
    text, rows = report(inputs)
    print(text)
    if out is not None:
        payload = {
            "inputs": dataclasses.asdict(inputs),
            "rows": rows,
            "pods_at_store_limit": pods_at_store_limit(inputs),
            "pods_at_connection_limit_without_pooler": pods_at_connection_limit(inputs),
        }
        out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
