"""Section a's Celery rows: a no-op task, and Celery doing the work kombu-worker does.

kombu-worker writes two objects per message (``metrics.json``, then ``result.json``) and
records the task's state twice (claim, completion). The fair Celery rows do the same amount:
a task writing two small files, with its result kept by a result backend — ``file://`` (one
more file a task), or SQLite through SQLAlchemy (one more transaction a task). Every run
shares section a's clock: N messages queued first, (N-1) over the first to the last task.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from .base import Result
from .common import Clock, tmpdir, unique
from .workers import celery_app, celery_worker


def run_celery(n: int, backend: str | None = None, cap: float = 300.0) -> Result:
    """``backend`` None: the no-op task with results ignored; ``"file"`` or ``"sqlite"``: a task
    writing two files whose result the named backend stores."""
    with tmpdir("bench-a-celery-") as tmp:
        conf: dict[str, Any] = {}
        if backend is not None:
            conf = {"result_backend": result_backend(backend, tmp), "task_ignore_result": False}
        app = celery_app("memory://", unique("bench-celery"), **conf)
        clock = Clock(n)
        out = tmp / "out"

        if backend is None:

            @app.task(name="bench.noop")
            def noop(i: int) -> None:
                clock.tick()

            task = noop
        else:

            @app.task(name="bench.write")
            def write(i: int) -> dict[str, Any]:
                folder = out / f"j{i}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "metrics.json").write_text(json.dumps({"i": i, "written_at": time.time()}))
                (folder / "result.json").write_text(json.dumps({"result": None}))
                clock.tick()
                return {"result_uri": str(folder / "result.json")}

            task = write

        for i in range(n):
            task.apply_async((i,))
        started = time.perf_counter()
        with celery_worker(app, shutdown_timeout=10):
            clock.done.wait(cap)  # the slow backends are measured on what ``cap`` seconds got through
            wall = time.perf_counter() - started
        stored = results_stored(backend, tmp) if backend is not None else None
    return {
        "rate": clock.rate(),
        "wall_s": wall,
        "processed": clock.count,
        "capped": clock.count < n,
        "results_stored": stored,
    }


def results_stored(kind: str, tmp: Path) -> int:
    """How many results the backend holds: proof that it did the work it is timed for."""
    if kind == "file":
        return sum(1 for _ in (tmp / "results").iterdir())
    import sqlite3

    with contextlib.closing(sqlite3.connect(tmp / "results.db")) as db:
        return int(db.execute("SELECT COUNT(*) FROM celery_taskmeta").fetchone()[0])


def result_backend(kind: str, tmp: Path) -> str:
    if kind == "file":
        folder = tmp / "results"
        folder.mkdir()
        return f"file://{folder}"
    if kind == "sqlite":
        return f"db+sqlite:///{tmp / 'results.db'}"
    raise ValueError(kind)
