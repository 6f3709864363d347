"""The token bucket, rate parsing, the recycler's decisions and what /readyz says while draining."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kombu_worker_sdk import WorkerHooks
from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import ConfigError
from kombu_worker_sdk.limits import parse_rate, worker_rate
from kombu_worker_sdk.observability.health import HealthServer
from kombu_worker_sdk.observability.metrics import METRICS
from kombu_worker_sdk.storage import MemoryStorage
from kombu_worker_sdk.worker.ratelimit import TokenBucket
from kombu_worker_sdk.worker.recycle import RECYCLE_METRICS, Recycler
from tests.conftest import wait_for
from tests.sample_hooks import split_message


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(("text", "per_second"), [("10/s", 10), ("600/m", 10), ("3600/h", 1), ("1.5/s", 1.5)])
def test_rates_read_as_celery_writes_them(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["ten/s", "10", "0/s", "10/day"])
def test_a_bad_rate_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match=r"e\.g\. 10/s"):
        parse_rate(text)
    with pytest.raises(ConfigError):
        WorkerConfig(rate_limit=text)


def test_the_bucket_allows_a_burst_of_one_second_then_spaces_starts_by_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock)
    assert [bucket.take() for _ in range(10)] == [0.0] * 10
    assert bucket.take() == pytest.approx(0.1)
    clock.now += 2  # refilled, to the capacity and not beyond
    assert bucket.take(10) == 0.0
    assert bucket.take(5) == pytest.approx(0.5), "a batch past the bucket takes it into debt"


def test_acquire_waits_until_due_and_gives_up_on_a_stop() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, clock=clock)
    assert bucket.acquire(2, lambda: False, clock.sleep)
    start = clock.now
    assert bucket.acquire(1, lambda: False, clock.sleep)
    assert clock.now - start == pytest.approx(0.5)
    assert not bucket.acquire(4, lambda: True, clock.sleep), "a stop ends the wait"


def test_the_hooks_class_rate_limit_wins_over_the_config() -> None:
    class Api:
        rate_limit = "120/m"

    assert worker_rate(WorkerConfig(rate_limit="10/s"), Api()) == pytest.approx(2)
    assert worker_rate(WorkerConfig(rate_limit="10/s"), object()) == pytest.approx(10)
    assert worker_rate(WorkerConfig(), object()) is None


def test_the_recycler_admits_up_to_max_tasks_and_refuses_past_max_memory() -> None:
    by_tasks = Recycler(WorkerConfig(max_tasks_per_worker=3))
    assert [by_tasks.admit(1) for _ in range(4)] == [True, True, True, False]
    assert by_tasks.reason == "max_tasks_per_worker 3 reached"
    by_memory = Recycler(WorkerConfig(max_memory_mb=1))  # any Python process is past 1 MB
    assert not by_memory.admit(1)
    assert by_memory.reason is not None and by_memory.reason.startswith("max_memory_mb 1 reached")
    assert Recycler(WorkerConfig()).admit(1000)
    assert Recycler(WorkerConfig()).describe() == "recycling off"


class CountingHooks(WorkerHooks):
    def __init__(self) -> None:
        self.ran: list[str] = []
        self.lock = threading.Lock()

    def load_pipeline(self, ctx: Any) -> None:
        return None

    def process(self, ctx: Any, msg: Any) -> Any:
        with self.lock:
            self.ran.append(msg.task_id)
        return {"result": None}

    def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
        return []


def test_max_tasks_stops_the_worker_and_readyz_says_it_drains_to_recycle(make_worker: Any) -> None:
    storage = MemoryStorage()
    jobs = [f"rc{i}" for i in range(5)]
    for job in jobs:
        storage.put(f"s3://bucket/in/{job}", b"x", "text/plain")
    hooks = CountingHooks()
    running = make_worker(hooks, storage=storage, max_tasks_per_worker=2)
    running.send(
        *[{**split_message(job), "input_uri": f"s3://bucket/in/{job}", "params": {}} for job in jobs]
    )
    wait_for(lambda: running.worker.should_stop, timeout=30)
    running.thread.join(10)
    assert len(hooks.ran) == 2, "no hook starts past max_tasks_per_worker"
    ok, body = HealthServer(running.worker, running.runtime, 0).readiness()
    assert not ok and body["failed"]["worker"] == "draining to recycle: max_tasks_per_worker 2 reached"
    RECYCLE_METRICS.recycler = running.worker.recycler
    text = METRICS.exposition().decode()
    assert 'kombu_worker_recycle_limit{kind="tasks"} 2.0' in text
    assert "kombu_worker_tasks_started 2.0" in text
    assert "kombu_worker_resident_memory_bytes" in text
