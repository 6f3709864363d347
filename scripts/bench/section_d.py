"""d  Batching: ``process_batch`` costing 20 ms + 1 ms per item at batch sizes 1, 8 and 32.

The speedup over batch 1 is set against the ideal (a+b)/(a/B+b).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Result, Row, Section, percent, verdict
from .hooks import clocked
from .settings import Settings, log
from .workers import drain_memory

TARGETS = {"d_fraction_of_ideal_at_32": 0.8}


def size_row(s: Settings, size: int) -> Result:
    a, b = s.batch_a, s.batch_b
    per_batch = a + b * size
    n = max(4, int(s.batch_seconds / per_batch)) * size
    hooks, clock = clocked("batch", n, a=a, b=b)
    _, ended = drain_memory(
        hooks,
        n,
        name=f"d{size}",
        poll=0.002,
        storage="indexed",
        batch_size=size,
        batch_wait_ms=s.batch_wait_ms if size > 1 else 0,
    )
    first = clock.first or ended
    # the first tick comes after the first batch's sleep: add one batch's cost back
    rate = n / (ended - first + per_batch)
    log.info("d: batch %d: %.1f msg/s (ideal %.1f)", size, rate, size / per_batch)
    return {"messages": n, "rate": rate, "ideal_rate": size / per_batch}


def run(s: Settings, out_dir: Path) -> Result:
    a, b = s.batch_a, s.batch_b
    sizes = {str(size): size_row(s, size) for size in s.batch_sizes}
    base = sizes[str(s.batch_sizes[0])]["rate"]
    for size in s.batch_sizes:
        row = sizes[str(size)]
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
        "sizes": sizes,
        "setup": "memory://, concurrency 1, prefetch = batch size (the SDK default), "
        "MemoryStorage with O(1) find_result, file-backed SQLite (tmpfs)",
        "target_fraction_at_32": TARGETS["d_fraction_of_ideal_at_32"],
    }


def rows(d: Result) -> list[Row]:
    target = TARGETS["d_fraction_of_ideal_at_32"]
    out: list[Row] = []
    for size, r in d["sizes"].items():
        is32 = size == "32"
        out += [
            (f"batch {size}: speedup (ideal)", f"{r['speedup']:.2f}x ({r['ideal_speedup']:.2f}x)", "", ""),
            (
                f"batch {size}: speedup / ideal speedup",
                percent(r["fraction_of_ideal"]),
                f">= {target:.0%}" if is32 else "",
                verdict(r["fraction_of_ideal"] >= target) if is32 else "",
            ),
            (f"batch {size}: rate / ideal rate (B/(a+bB))", percent(r["rate_vs_ideal_rate"]), "", ""),
        ]
    return out


def draw(ax: Any, d: Result | None) -> None:
    if d is not None:
        sizes = list(d["sizes"])
        ax.plot(sizes, [d["sizes"][k]["speedup"] for k in sizes], "o-", label="achieved")
        ax.plot(sizes, [d["sizes"][k]["ideal_speedup"] for k in sizes], "k--", label="ideal (a+b)/(a/B+b)")
        ax.plot(sizes, [0.8 * d["sizes"][k]["ideal_speedup"] for k in sizes], "r:", label="80% of ideal")
        last = d["sizes"][sizes[-1]]
        ax.text(
            0.02,
            0.6,
            f"rate / ideal rate at {sizes[-1]}: {100 * last['rate_vs_ideal_rate']:.0f}%\n"
            f"at 1: {100 * d['sizes'][sizes[0]]['rate_vs_ideal_rate']:.0f}%",
            transform=ax.transAxes,
            fontsize=8,
        )
        ax.set_xlabel("batch size")
        ax.set_ylabel("speedup over batch 1")
        ax.legend(fontsize=8)
    ax.set_title("(d) micro-batching, 20 ms + 1 ms/item")


SECTION = Section("d", "micro-batching speedup (20 ms + 1 ms/item)", run, rows, draw, TARGETS)
