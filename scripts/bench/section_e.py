"""e  Memory: RSS after 1,000 and after 20,000 messages through one worker.

No-op hooks, and a storage that keeps nothing, since MemoryStorage keeps every object by design.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

from .base import Result, Row, Section, verdict
from .common import rss_bytes, seed_memory, tmpdir, unique, wait_settled
from .hooks import make_hooks
from .settings import Settings
from .workers import kombu_worker

TARGETS = {"e_rss_growth_pct": 5.0}
CHUNK = 500


def measure() -> int:
    gc.collect()
    time.sleep(0.2)
    return rss_bytes()


def run(s: Settings, out_dir: Path) -> Result:
    hooks = make_hooks()["noop"]()
    queue = unique("bench-e")
    with tmpdir("bench-e-") as tmp:
        # prefetch 100: RSS per message is the question here, not the dispatch latency of (a)
        kw = kombu_worker(hooks, queue=queue, tmp=tmp, storage="null", prefetch=100)
        sent = 0

        def feed(total: int) -> None:
            nonlocal sent
            while sent < total:
                count = min(CHUNK, total - sent)
                seed_memory(queue, count, start=sent)
                sent += count
                wait_settled(kw.worker, sent, poll=0.005, timeout=120)

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


def rows(e: Result) -> list[Row]:
    target = TARGETS["e_rss_growth_pct"]
    return [
        (
            f"RSS after {e['small']:,} / {e['large']:,} msgs",
            f"{e['after_small_mb']:.1f} / {e['after_large_mb']:.1f} MB",
            "",
            "",
        ),
        ("RSS growth", f"{e['growth_pct']:.2f}%", f"< {target:.0f}%", verdict(e["growth_pct"] < target)),
    ]


def draw(ax: Any, e: Result | None) -> None:
    if e is None:
        ax.set_title("(e) RSS")
        return
    labels = ["start", f"{e['small']:,} msgs", f"{e['large']:,} msgs"]
    vals = [e["after_start_mb"], e["after_small_mb"], e["after_large_mb"]]
    bars = ax.bar(labels, vals, color="#9467bd")
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in vals], fontsize=8)
    ax.set_ylabel("RSS (MB)")
    ax.set_title(f"(e) RSS, growth {e['growth_pct']:.2f}% (target < 5%)")


SECTION = Section("e", "memory growth (RSS)", run, rows, draw, TARGETS)
