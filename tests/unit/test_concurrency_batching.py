"""Concurrency, bounded prefetch and GPU micro-batching through the real consumer."""

from __future__ import annotations

import threading
from typing import Any

from kombu_worker_sdk import PermanentError, task_prerun
from kombu_worker_sdk.observability.metrics import METRICS
from tests.conftest import wait_for
from tests.sample_hooks import StepHooks, split_message


class BatchHooks(StepHooks):
    """process_batch records its batch sizes and fails the item asked to fail."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def process_batch(self, ctx: Any, msgs: list[Any]) -> list[Any]:
        self.batches.append(len(msgs))
        self.threads.add(threading.current_thread().name)
        out: list[Any] = []
        for msg in msgs:
            if msg["params"].get("bad"):
                out.append(PermanentError("bad item"))
            else:
                out.append({"result": {"task": msg.task_id, "model": id(self.model)}, "metrics": {}})
        return out


def leaf(job: str, **params: Any) -> dict[str, Any]:
    return {**split_message(job), "params": {"step": "leaf", **params}}


def test_micro_batches_with_per_item_outcomes(make_worker: Any) -> None:
    hooks = BatchHooks()
    running = make_worker(hooks, batch_size=4, batch_wait_ms=200, concurrency=1)
    msgs = [leaf(f"b{i}", bad=(i == 2)) for i in range(8)]
    running.send(*msgs)
    wait_for(lambda: all(running.status(f"b{i}-split") in {"DONE", "FAILED"} for i in range(8)))
    assert running.status("b2-split") == "FAILED"
    assert [running.status(f"b{i}-split") for i in range(8) if i != 2] == ["DONE"] * 7
    assert sum(hooks.batches) == 8 and max(hooks.batches) > 1, hooks.batches
    assert all(running.storage.find_result(f"s3://bucket/jobs/b{i}/split/") for i in range(8) if i != 2)
    assert len(running.dead_letters()) == 1


def test_batched_fan_out_publishes_every_child_once(make_worker: Any) -> None:
    running = make_worker(BatchHooks(), batch_size=4, batch_wait_ms=100)
    running.send(*[split_message(f"f{i}", parts=3) for i in range(4)])
    wait_for(lambda: all(running.status(f"f{i}-join") == "DONE" for i in range(4)))
    for i in range(4):
        job = running.runtime.state.get_job(f"f{i}")
        assert job is not None and (job.status, job.total, job.done) == ("DONE", 5, 5)


def _held_at_each_hook_call(running_box: list[Any], run: Any) -> list[tuple[int, int]]:
    """(messages held, prefetch limit) each time a hook starts, while ``run()`` goes on."""
    samples: list[tuple[int, int]] = []

    def sample(sender: Any = None, **kwargs: Any) -> None:
        if running_box:
            worker = running_box[0].worker
            samples.append((len(worker.inflight), worker.governor.limit()))

    task_prerun.connect(sample)
    try:
        run()
    finally:
        task_prerun.disconnect(sample)
    return samples


def test_a_fixed_prefetch_is_never_exceeded(make_worker: Any) -> None:
    box: list[Any] = []

    def run() -> None:
        box.append(make_worker(concurrency=3, prefetch=3))
        box[0].send(*[leaf(f"c{i}", sleep=0.05) for i in range(24)])
        wait_for(lambda: all(box[0].status(f"c{i}-split") == "DONE" for i in range(24)))

    samples = _held_at_each_hook_call(box, run)
    assert samples and max(held for held, _ in samples) <= 3, samples
    assert {limit for _, limit in samples} == {3}
    assert max(held for held, _ in samples) > 1, "three threads should overlap"


def test_prefetch_grows_to_feed_the_device_but_stays_under_its_ceiling(make_worker: Any) -> None:
    box: list[Any] = []

    def run() -> None:
        box.append(make_worker(concurrency=1))
        box[0].send(*[leaf(f"g{i}", sleep=0.02) for i in range(40)])
        wait_for(lambda: all(box[0].status(f"g{i}-split") == "DONE" for i in range(40)))

    samples = _held_at_each_hook_call(box, run)
    config = box[0].runtime.config
    assert max(held for held, _ in samples) <= config.effective_prefetch_max, samples
    assert max(held for held, _ in samples) > config.effective_prefetch, "it grew past one batch"
    exposition = METRICS.exposition().decode()
    assert 'kombu_worker_messages_held{lane="device"}' in exposition
    assert "kombu_worker_prefetch_limit" in exposition


def test_trace_id_starts_at_the_root_and_travels_to_every_child() -> None:
    from kombu_worker_sdk.testing import LocalRunner

    runner = LocalRunner(StepHooks())
    parts = runner.run(split_message("t1", parts=2)).published
    trace = parts[0]["trace_id"]
    assert len(trace) == 32 and {p["trace_id"] for p in parts} == {trace}
    joins = [runner.run(p).published for p in parts]
    assert joins[1][0]["trace_id"] == trace
    given = {**split_message("t2", parts=1), "trace_id": "abc-123"}
    assert runner.run(given).published[0]["trace_id"] == "abc-123"


def test_two_copies_of_one_task_in_one_worker_run_once(make_worker: Any, tmp_path: Any) -> None:
    import os

    done = tmp_path / "done"
    done.mkdir()
    running = make_worker(concurrency=4)
    copy = leaf("dup", sleep=0.3, marker_dir=str(done))
    running.send(copy, copy, copy)
    wait_for(lambda: running.status("dup-split") == "DONE")
    wait_for(lambda: running.worker.settled == 3 and not running.worker.inflight)
    assert len(os.listdir(done)) == 1
