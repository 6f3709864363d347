"""Fault injection for chaos testing: SIGKILL this process, or hang it, at a named point.

Inert unless ``KOMBU_WORKER_FAULTS`` is set, e.g.
``after_claim=0.2,between_commit_and_publish=0.1`` (point=probability). Each
fault is first appended to ``KOMBU_WORKER_FAULTS_LOG`` as ``point pid unix-time``,
so a chaos run can count faults per boundary and time each recovery.
``hang_in_hooks`` does not kill: it blocks the device thread for ever inside the
hooks stage, as a CUDA call that never returns would, for the hard time limit to
cut off (``worker.overrun``). ``scripts/chaos.py`` drives it; production never sets it.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

POINTS = (
    "after_receive",
    "after_claim",
    "during_hooks",
    "after_store",
    "between_commit_and_publish",
    "after_publish",
    "hang_in_hooks",
)
#: Points that hang the calling thread instead of killing the process.
HANGS = frozenset({"hang_in_hooks"})


def _parse(spec: str) -> dict[str, float]:
    rates: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, rate = item.partition("=")
        if name not in POINTS:
            raise ValueError(f"KOMBU_WORKER_FAULTS: unknown point {name!r}; points are {POINTS}")
        rates[name] = float(rate or 1)
    return rates


_RATES = _parse(os.environ.get("KOMBU_WORKER_FAULTS", ""))


def fault_point(name: str) -> None:
    """Maybe die here, as a pod killed by a spot reclaim or OOM would (or hang, for HANGS)."""
    rate = _RATES.get(name)
    if rate is None or random.random() >= rate:
        return
    log = os.environ.get("KOMBU_WORKER_FAULTS_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{name} {os.getpid()} {time.time():.3f}\n")
    if name in HANGS:
        threading.Event().wait()  # never set: a blocking C call no exception can interrupt
    os.kill(os.getpid(), signal.SIGKILL)
