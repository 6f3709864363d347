"""Soft and hard time limits on in-process workers (memory:// transport, SQLite state).

Every wait is on an event or a polled condition with a deadline; the limits themselves
are what the tests exercise, never a measured duration.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kombu_worker_sdk import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerHooks
from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import ConfigError, HookError
from kombu_worker_sdk.limits import (
    HARD_PARAM,
    SOFT_PARAM,
    Deadline,
    TimeLimits,
    message_limits,
    worker_limits,
)
from kombu_worker_sdk.observability.health import HealthServer
from kombu_worker_sdk.storage import MemoryStorage
from kombu_worker_sdk.worker.overrun import EXIT_TIME_LIMIT
from tests.conftest import wait_for
from tests.sample_hooks import split_message


def task(job: str, **params: Any) -> dict[str, Any]:
    return {**split_message(job), "input_uri": f"s3://bucket/in/{job}", "params": params}


def inputs(*jobs: str) -> MemoryStorage:
    storage = MemoryStorage()
    for job in jobs:
        storage.put(f"s3://bucket/in/{job}", b"x", "text/plain")
    return storage


class SpinningHooks(WorkerHooks):
    """Attempt 1 spins in pure Python until interrupted; later attempts return at once."""

    def __init__(self) -> None:
        self.caught: list[BaseException] = []
        self.time_left: list[float | None] = []
        self.release = threading.Event()

    def load_pipeline(self, ctx: Any) -> None:
        return None

    def process(self, ctx: Any, msg: Any) -> Any:
        self.time_left.append(ctx.time_left())
        if msg["params"].get("hang"):
            self.release.wait()  # a blocking C call: only the hard limit ends it
        if ctx.attempt == 1:
            try:
                while True:  # pure Python: the soft limit's exception lands here
                    pass
            except SoftTimeLimitExceeded as exc:
                self.caught.append(exc)
                raise
        return {"result": {"attempt": ctx.attempt}}

    def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
        return []


@pytest.fixture
def hooks() -> Any:
    made = SpinningHooks()
    yield made
    made.release.set()  # let a hung hook thread end with the test


def test_the_soft_limit_interrupts_pure_python_inside_the_hook_and_the_task_retries(
    make_worker: Any, hooks: SpinningHooks
) -> None:
    running = make_worker(hooks, storage=inputs("sl1"), soft_time_limit_seconds=0.2)
    running.send(task("sl1"))
    wait_for(lambda: running.status("sl1-split") == "DONE", timeout=30)
    assert len(hooks.caught) == 1 and isinstance(hooks.caught[0], TimeLimitExceeded)
    assert all(left is not None and 0 < left <= 0.2 for left in hooks.time_left), "ctx knew its deadline"
    assert running.worker.overrun is None


def test_the_hard_limit_hands_the_task_back_and_fails_liveness_when_the_process_cannot_exit(
    make_worker: Any, hooks: SpinningHooks
) -> None:
    running = make_worker(hooks, storage=inputs("hl1"), time_limit_seconds=0.3)
    running.send(task("hl1", hang=True))
    wait_for(lambda: running.worker.overrun is not None, timeout=30)
    wait_for(lambda: running.status("hl1-split") == "PENDING", timeout=30)
    record = running.runtime.state.get_task("hl1-split")
    assert record is not None and "TimeLimitExceeded" in (record.error or "")
    assert "hard time limit of 0.3s" in (record.error or "")
    wait_for(lambda: running.worker.should_stop and not running.worker.inflight, timeout=30)
    ok, body = HealthServer(running.worker, running.runtime, 0).liveness()
    assert not ok and "hard time limit" in body["reason"]


def test_the_last_attempt_at_the_hard_limit_fails_and_dead_letters_then_exits_124(
    make_worker: Any, hooks: SpinningHooks
) -> None:
    running = make_worker(hooks, storage=inputs("hl2"), time_limit_seconds=0.3, max_attempts=1)
    exits: list[int] = []
    running.worker.exit_on_overrun = exits.append
    running.send(task("hl2", hang=True))
    wait_for(lambda: exits, timeout=30)
    assert exits == [EXIT_TIME_LIMIT]
    assert running.status("hl2-split") == "FAILED"
    letters = running.dead_letters()
    assert [headers["x-task-id"] for _, headers in letters] == ["hl2-split"]
    assert "TimeLimitExceeded" in letters[0][1]["x-error"]


def test_a_message_may_lower_its_limits_but_never_raise_them() -> None:
    base = TimeLimits(soft=10, hard=20)
    assert message_limits(base, {SOFT_PARAM: 2, HARD_PARAM: 5}) == TimeLimits(2, 5)
    assert message_limits(base, {SOFT_PARAM: 60, HARD_PARAM: 3600}) == base
    assert message_limits(base, {HARD_PARAM: "never", SOFT_PARAM: True}) == base
    assert message_limits(TimeLimits(), {HARD_PARAM: 4}) == TimeLimits(None, 4)


def test_a_hooks_class_attribute_overrides_the_config() -> None:
    config = WorkerConfig(soft_time_limit_seconds=5, time_limit_seconds=10)

    class Slow:
        time_limit_seconds = 600

    assert worker_limits(config, Slow()) == TimeLimits(5, 600)
    assert worker_limits(config, object()) == TimeLimits(5, 10)


def test_the_config_refuses_a_soft_limit_at_or_past_the_hard_one() -> None:
    with pytest.raises(ValueError, match="soft_time_limit_seconds must be below"):
        WorkerConfig(soft_time_limit_seconds=10, time_limit_seconds=10)


def test_check_time_limit_raises_once_the_deadline_has_passed() -> None:
    deadline = Deadline()
    deadline.check()  # no limit: never raises
    assert deadline.time_left() is None
    deadline.start(TimeLimits(soft=0.0))
    with pytest.raises(SoftTimeLimitExceeded):
        deadline.check()
    deadline.start(TimeLimits(soft=3600, hard=7200))
    deadline.check()
    left = deadline.time_left()
    assert left is not None and 0 < left <= 3600


def test_the_time_limit_errors_sit_in_the_one_hierarchy() -> None:
    assert issubclass(SoftTimeLimitExceeded, TimeLimitExceeded)
    assert issubclass(TimeLimitExceeded, HookError)
    assert not issubclass(TimeLimitExceeded, ConfigError)


def test_the_interrupt_waits_out_a_blocking_c_call_and_reaches_only_a_thread_inside_a_hook() -> None:
    from kombu_worker_sdk.limits import interrupt, interruptible

    in_c_call, release, seen = threading.Event(), threading.Event(), []

    def hook() -> None:
        try:
            with interruptible():
                in_c_call.set()
                release.wait()  # blocking C call: the exception cannot land in here
                while True:  # the first Python bytecodes after it returns: it lands here
                    pass
        except SoftTimeLimitExceeded as exc:
            seen.append(exc)

    thread = threading.Thread(target=hook, daemon=True)
    idle = threading.Thread(target=release.wait, daemon=True)
    thread.start()
    idle.start()
    assert in_c_call.wait(10)
    assert interrupt(idle.ident or 0) is False, "a thread outside any hook is never interrupted"
    assert interrupt(thread.ident or 0) is True
    assert interrupt(thread.ident or 0) is False, "one interrupt per hook call"
    assert seen == [] and thread.is_alive(), "still blocked in C"
    release.set()
    thread.join(10)
    assert len(seen) == 1 and not thread.is_alive()
