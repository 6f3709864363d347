"""c  Concurrency: a hook that sleeps 50 ms at concurrency 1, 8 and 32; achieved / ideal rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Result, Row, Section, percent, verdict
from .hooks import clocked
from .settings import Settings, log
from .workers import drain_memory

TARGETS = {"c_efficiency_at_32": 0.9}


def level(s: Settings, storage: str, conc: int) -> Result:
    ideal = conc / s.sleep_seconds
    n = max(conc * 2, round(ideal * s.concurrency_seconds / conc) * conc)
    hooks, clock = clocked("sleep", n, seconds=s.sleep_seconds)
    started, ended = drain_memory(hooks, n, name=f"c{conc}", poll=0.005, storage=storage, concurrency=conc)
    # n messages in ceil(n/conc) waves of sleep_seconds at best; measured from the
    # worker's start to the last settle, minus nothing: prefetch is part of the job.
    first = clock.first or started
    achieved = n / (ended - first + s.sleep_seconds)
    log.info(
        "c: storage=%s concurrency %d: %.1f/s of ideal %.1f/s (%.0f%%)",
        storage,
        conc,
        achieved,
        ideal,
        100 * achieved / ideal,
    )
    return {
        "messages": n,
        "achieved_rate": achieved,
        "ideal_rate": ideal,
        "efficiency": achieved / ideal,
        "wall_s": ended - started,
    }


def run(s: Settings, out_dir: Path) -> Result:
    results = {
        storage: {str(conc): level(s, storage, conc) for conc in s.concurrency_levels}
        for storage in ("memory", "indexed")
    }
    return {
        "sleep_seconds": s.sleep_seconds,
        "levels": results["memory"],
        "levels_indexed_storage": results["indexed"],
        "measure": "n / (last settle - first hook start + one sleep); ideal = concurrency / sleep",
        "setup": "memory://, MemoryStorage, MemoryPublisher, file-backed SQLite state (tmpfs); "
        "levels_indexed_storage: the same with an O(1) find_result (diagnostic)",
        "target_efficiency_at_32": TARGETS["c_efficiency_at_32"],
    }


def rows(c: Result) -> list[Row]:
    target = TARGETS["c_efficiency_at_32"]
    out: list[Row] = []
    for conc, r in c["levels"].items():
        is32 = conc == "32"
        out.append(
            (
                f"concurrency {conc}: achieved/ideal",
                percent(r["efficiency"]),
                f">= {target:.0%}" if is32 else "",
                verdict(r["efficiency"] >= target) if is32 else "",
            )
        )
    for conc, r in c.get("levels_indexed_storage", {}).items():
        out.append((f"  (indexed storage) concurrency {conc}", percent(r["efficiency"]), "", ""))
    return out


def draw(ax: Any, c: Result | None) -> None:
    if c is not None:
        levels = list(c["levels"])
        ax.plot(levels, [100 * c["levels"][k]["efficiency"] for k in levels], "o-", label="MemoryStorage")
        if c.get("levels_indexed_storage"):
            li = c["levels_indexed_storage"]
            ax.plot(list(li), [100 * li[k]["efficiency"] for k in li], "s--", label="indexed find_result")
        ax.axhline(90, ls="--", c="r", lw=1, label="target 90% at 32")
        ax.set_ylim(0, 105)
        ax.set_xlabel("concurrency")
        ax.set_ylabel("achieved / ideal rate (%)")
        ax.legend(fontsize=8)
    ax.set_title("(c) concurrency efficiency, 50 ms hook")


SECTION = Section("c", "concurrency efficiency (50 ms hook)", run, rows, draw, TARGETS)
