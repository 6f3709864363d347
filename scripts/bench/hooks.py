"""The hooks under test, and the latency they inject in place of a model.

Built lazily (inside :func:`make_hooks`) so that the parent process needs no SDK import.
``sleep`` costs a fixed time per message (section c); ``batch`` costs ``a + b`` per message
and ``a + b·B`` per batch of B (section d); ``fanout`` publishes children from ``root`` tasks
(section b). Each counts handled messages on its ``clock`` when one is set.
"""

from __future__ import annotations

import time
from typing import Any

from .common import Clock, task_body


def make_hooks() -> dict[str, type]:
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


def clocked(kind: str, expected: int, **attrs: Any) -> tuple[Any, Clock]:
    """A hooks instance of ``kind`` with ``attrs`` set, counting on a fresh clock of ``expected``."""
    hooks = make_hooks()[kind]()
    for name, value in attrs.items():
        setattr(hooks, name, value)
    clock = Clock(expected)
    hooks.clock = clock
    return hooks, clock
