"""What the lanes must keep: overlap, heartbeat coverage, shutdown, and the thread-safety contract.

Every wait here is on an event or a polled condition with a deadline, never on timing.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kombu_worker_sdk import WorkerHooks
from kombu_worker_sdk.errors import UnsafeURIError
from kombu_worker_sdk.pipeline import Stage, TaskRun
from kombu_worker_sdk.storage import MemoryStorage, ScopedStorage
from kombu_worker_sdk.storage.prefetched import InputCache
from kombu_worker_sdk.worker.lanes import ReadyQueue
from tests.conftest import wait_for
from tests.sample_hooks import split_message


class GatedHooks(WorkerHooks):
    """``process`` blocks on a per-task event; records who entered and how many at once."""

    def __init__(self) -> None:
        self.gates: dict[str, threading.Event] = {}
        self.entered: list[str] = []
        self.inside = 0
        self.most_inside = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def load_pipeline(self, ctx: Any) -> dict[str, Any]:
        return {}

    def gate(self, task_id: str) -> threading.Event:
        with self._lock:
            return self.gates.setdefault(task_id, threading.Event())

    def _enter(self) -> None:
        with self._lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)

    def _leave(self) -> None:
        with self._lock:
            self.inside -= 1

    def process(self, ctx: Any, msg: Any) -> Any:
        self.threads.add(threading.current_thread().name)
        self._enter()
        try:
            self.entered.append(msg.task_id)
            if msg["params"].get("gated"):
                assert self.gate(msg.task_id).wait(30), "the test never opened the gate"
            return {"result": {"read": ctx.storage.read(msg["input_uri"]).decode()}, "metrics": {}}
        finally:
            self._leave()

    def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
        self.threads.add(threading.current_thread().name)
        self._enter()
        try:
            return []
        finally:
            self._leave()


def task(job: str, gated: bool = False) -> dict[str, Any]:
    return {**split_message(job), "input_uri": f"s3://bucket/in/{job}", "params": {"gated": gated}}


def with_inputs(storage: MemoryStorage, *jobs: str) -> MemoryStorage:
    for job in jobs:
        storage.put(f"s3://bucket/in/{job}", f"input of {job}".encode(), "text/plain")
    return storage


def lease(running: Any, task_id: str) -> float:
    with running.runtime.state._tx() as cur:  # the SQLite store's own transaction, read-only here
        found = cur.execute("SELECT lease_until FROM kw_tasks WHERE task_id = ?", (task_id,)).fetchone()
    return float(found[0]) if found and found[0] is not None else 0.0


def test_the_next_message_is_prepared_while_one_runs(make_worker: Any) -> None:
    hooks = GatedHooks()
    running = make_worker(hooks, storage=with_inputs(MemoryStorage(), "a", "b"))
    running.send(task("a", gated=True))
    wait_for(lambda: hooks.entered == ["a-split"])
    running.send(task("b"))
    # a is on the device; b was validated, claimed and its input read, and waits ready.
    wait_for(lambda: running.worker.lane_counts()["ready"] == 1)
    assert running.worker.lane_counts()["device"] == 1
    assert running.status("b-split") == "PROCESSING", "claimed before the device took it"
    assert running.runtime.context.storage.cache is not None
    assert running.runtime.context.storage.cache.get("s3://bucket/in/b") == b"input of b"
    hooks.gate("a-split").set()
    wait_for(lambda: running.status("a-split") == running.status("b-split") == "DONE")
    assert running.storage.read("s3://bucket/jobs/b/split/result.json") == b'{"read": "input of b"}'


class HoldAfterHooks(Stage):
    """A custom stage between hooks and store that holds a message in the finishing lane."""

    name = "hold_after_hooks"

    def __init__(self) -> None:
        self.release = threading.Event()

    def process(self, run: TaskRun) -> None:
        if run.message is not None and run.message["params"].get("hold_finish"):
            assert self.release.wait(30)


def test_the_heartbeat_extends_ready_and_finishing_messages(make_worker: Any) -> None:
    hooks, holder = GatedHooks(), HoldAfterHooks()
    running = make_worker(hooks, storage=with_inputs(MemoryStorage(), "f", "g", "r"), visibility_timeout=30)
    running.runtime.pipeline.add(holder, after="hooks")
    running.worker.finish_stages.insert(0, holder)  # the phases were read when the worker started
    running.send({**task("f"), "params": {"hold_finish": True}})
    wait_for(lambda: running.worker.lane_counts()["finishing"] == 1)
    running.send(task("g", gated=True))
    wait_for(lambda: running.worker.lane_counts()["device"] == 1)
    running.send(task("r"))
    wait_for(lambda: running.worker.lane_counts()["ready"] == 1)
    before = {t: lease(running, t) for t in ("f-split", "g-split", "r-split")}
    running.worker.heartbeat.beat()
    wait_for(lambda: running.worker.heartbeat.beat() or all(lease(running, t) > before[t] for t in before))
    holder.release.set()
    hooks.gate("g-split").set()
    wait_for(lambda: all(running.status(t) == "DONE" for t in before))


def test_shutdown_releases_what_has_not_started_and_finishes_what_has(make_worker: Any) -> None:
    hooks = GatedHooks()
    running = make_worker(hooks, storage=with_inputs(MemoryStorage(), "s", "t"), shutdown_grace_seconds=30)
    running.send(task("s", gated=True))
    wait_for(lambda: hooks.entered == ["s-split"])
    running.send(task("t"))
    wait_for(lambda: running.worker.lane_counts()["ready"] == 1)
    stopper = threading.Thread(target=lambda: running.worker.shutdown(30))
    running.worker.should_stop = True
    stopper.start()
    # t was claimed but never started: its claim is handed back at once, before s finishes.
    wait_for(lambda: running.status("t-split") == "PENDING")
    assert running.status("s-split") == "PROCESSING"
    handed_back = running.runtime.state.get_task("t-split")
    assert handed_back is not None and (handed_back.attempts, handed_back.error) == (0, None), (
        "nothing ran: the attempt is given back and no error recorded"
    )
    hooks.gate("s-split").set()
    stopper.join(30)
    assert not stopper.is_alive()
    assert running.status("s-split") == "DONE"
    assert hooks.entered == ["s-split"], "the unstarted message never reached the hooks"
    assert not running.worker.inflight
    running.thread.join(10)
    running.stopped = True
    running.runtime.close()


def test_a_one_thread_hooks_class_is_never_entered_twice(make_worker: Any) -> None:
    hooks = GatedHooks()
    jobs = [f"c{i}" for i in range(30)]
    running = make_worker(hooks, storage=with_inputs(MemoryStorage(), *jobs))
    running.send(*[task(job) for job in jobs])
    wait_for(lambda: all(running.status(f"{job}-split") == "DONE" for job in jobs))
    assert hooks.most_inside == 1, "process and publish_next overlapped on a concurrency-1 worker"
    assert hooks.threads == {"kombu-worker-device-0"}, "every hook call on the one device thread"


def test_a_cached_input_is_still_refused_where_a_read_would_be() -> None:
    cache = InputCache(1024)
    backend = MemoryStorage(allowed_buckets=["bucket"])
    cache.put("s3://elsewhere/secret", b"never served")
    cache.put("s3://bucket/ok", b"served")
    scoped = ScopedStorage(backend, "s3://bucket/out/", cache)
    with pytest.raises(UnsafeURIError):
        scoped.read("s3://elsewhere/secret")
    assert scoped.read("s3://bucket/ok") == b"served"
    cache.release("s3://bucket/ok")
    assert len(cache) == 1 and cache.size == len(b"never served")


def test_prefetch_stays_within_its_budget_and_can_be_turned_off(make_worker: Any) -> None:
    assert not InputCache(4).put("s3://bucket/big", b"12345"), "over the budget: the hook streams it"
    hooks = GatedHooks()
    storage = with_inputs(MemoryStorage(), "o")
    running = make_worker(hooks, storage=storage, prefetch_input=False)
    running.send(task("o"))
    wait_for(lambda: running.status("o-split") == "DONE")
    cache = running.runtime.context.storage.cache
    assert cache is not None and cache.hits == 0 and len(cache) == 0


def test_the_ready_queue_forms_batches_like_a_dynamic_batcher() -> None:
    ready = ReadyQueue(batch_size=2, batch_wait_seconds=0)
    a, b, c = (object() for _ in range(3))
    assert ready.put([a, b, c])  # type: ignore[list-item]
    assert ready.take() == ([], [a, b]), "a full batch as soon as one is ready"
    assert ready.take() == ([], [c]), "no wait: what is ready goes"
    assert ready.put([a])  # type: ignore[list-item]
    assert ready.close() == [a]
    assert not ready.put([b])  # type: ignore[list-item]
    ran: list[str] = []
    assert ready.post(lambda: ran.append("chore"))
    chores, batch = ready.take() or ([], [])
    assert batch == [] and len(chores) == 1, "after the stop, chores still reach the device"
    ready.stop()
    assert ready.take() is None and not ready.post(lambda: None)


def test_a_batch_wait_ends_early_for_a_chore() -> None:
    ready = ReadyQueue(batch_size=8, batch_wait_seconds=30)
    a = object()
    assert ready.put([a])  # type: ignore[list-item]
    got: list[Any] = []
    taker = threading.Thread(target=lambda: got.append(ready.take()))
    taker.start()
    assert ready.post(lambda: None)
    taker.join(10)
    assert not taker.is_alive(), "a chore does not wait out the batch window"
    assert got[0][0] and got[0][1] == []
    assert ready.close() == [a]
