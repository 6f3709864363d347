"""``--profile``: sample this process with py-spy and summarise where the time went."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path


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
