"""The dashboard's data: the worker registry, job lists, the fan-in graph, dead letters by id."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kombu_worker_sdk.cli.dlq import peek, redrive
from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.message import NextMessage, TaskMessage
from kombu_worker_sdk.state import JobStatus, SqliteStateStore
from kombu_worker_sdk.state.monitor import WorkerBeat
from kombu_worker_sdk.transport import broker_connection
from kombu_worker_sdk.transport.publish import KombuPublisher
from kombu_worker_sdk.worker.heartbeat import Heartbeat


def msg(task_id: str, job: str = "j") -> TaskMessage:
    return TaskMessage(job_id=job, task_id=task_id, input_uri="s3://b/in", output_prefix=f"s3://b/{task_id}/")


def child(task_id: str, **extra: Any) -> NextMessage:
    return NextMessage(
        job_id="j", task_id=task_id, input_uri="s3://b/in", output_prefix=f"s3://b/{task_id}/", **extra
    )


@pytest.fixture
def store(tmp_path: Path) -> SqliteStateStore:
    state = SqliteStateStore(tmp_path / "state.db")
    assert state.upgrade() == [1, 2]
    return state


def test_record_worker_upserts_and_stale_workers_drop_out(store: SqliteStateStore) -> None:
    store.record_worker(WorkerBeat("w1", "host-a", "detection", "pkg:Hooks", 2, time.time()))
    store.record_worker(WorkerBeat("w1", "host-a", "detection", "pkg:Hooks", 0, time.time()))
    store.record_worker(WorkerBeat("old", "host-b", "analysis", "pkg:Other", 1, time.time()))
    with store._tx() as cur:
        cur.execute("UPDATE kw_workers SET last_seen = ? WHERE worker_id = 'old'", (time.time() - 3600,))
    (seen,) = store.recent_workers(300)
    assert (seen.worker_id, seen.queue, seen.inflight) == ("w1", "detection", 0)
    assert {w.worker_id for w in store.recent_workers(7200)} == {"w1", "old"}


class _FakeRuntime:
    def __init__(self, state: SqliteStateStore) -> None:
        self.state = state
        self.worker_id = "wid-1"
        self.hooks_path = "service.hooks:ServiceHooks"
        self.config = WorkerConfig(queue="detection", visibility_timeout=1)
        self.logger = None


class _FakeWorker:
    def __init__(self, state: SqliteStateStore) -> None:
        self.runtime = _FakeRuntime(state)
        self.lock = threading.Lock()
        self.inflight = {object(), object()}


def test_the_heartbeat_records_the_worker_and_survives_an_old_schema(tmp_path: Path) -> None:
    state = SqliteStateStore(tmp_path / "state.db")
    state.upgrade()
    worker = _FakeWorker(state)
    heartbeat = Heartbeat(worker, worker.runtime.config)  # type: ignore[arg-type]
    heartbeat.record_presence()
    (seen,) = state.recent_workers(60)
    assert (seen.worker_id, seen.queue, seen.step, seen.inflight) == (
        "wid-1",
        "detection",
        "service.hooks:ServiceHooks",
        2,
    )
    with state._tx() as cur:
        cur.execute("DROP TABLE kw_workers")

    class Log:
        def debug(self, *args: Any) -> None:
            self.said = args

    worker.runtime.logger = Log()  # type: ignore[assignment]
    heartbeat.record_presence()  # an old schema: logged, not raised
    assert "heartbeat" in worker.runtime.logger.said[0]  # type: ignore[attr-defined]


def test_jobs_list_newest_first_with_filters_and_counts(store: SqliteStateStore) -> None:
    for job in ("alpha-1", "beta-2", "alpha_3"):
        store.register(msg(f"{job}-root", job))
    store.fail("beta-2-root", "beta-2", error="boom")
    assert [j.job_id for j in store.list_jobs()] == ["alpha_3", "beta-2", "alpha-1"]
    assert [j.job_id for j in store.list_jobs(status="FAILED")] == ["beta-2"]
    assert [j.job_id for j in store.list_jobs(search="alpha_")] == ["alpha_3"]  # _ is literal
    assert store.job_counts() == {"RUNNING": 2, "DONE": 0, "FAILED": 1, "CANCELLED": 0}


def test_the_graph_draws_fan_out_and_fan_in(store: SqliteStateStore) -> None:
    from kombu_worker_sdk.dashboard.graph import draw

    store.register(msg("root"))
    store.claim(msg("root"), worker_id="w", lease_seconds=60)
    parts = ["p0", "p1", "p2"]
    store.complete(msg("root"), [child(p) for p in parts], default_queue="q")
    join = child("join", fan_in={"group": "g", "size": 3})
    for p in parts[:2]:
        store.claim(msg(p), worker_id="w", lease_seconds=60)
        store.complete(msg(p), [join], default_queue="q")
    assert store.barriers("j") == [("g", 2, 3)]
    store.claim(msg("p2"), worker_id="w", lease_seconds=60)
    store.complete(msg("p2"), [join], default_queue="q")
    graph = draw(store.job_task_details("j"), store.fan_in_members("j"))
    assert set(graph.edges) == {("root", p) for p in parts} | {(p, "join") for p in parts}
    assert graph.depth == {"root": 0, "p0": 1, "p1": 1, "p2": 1, "join": 2}
    assert graph.svg.count('data-state="PENDING"') == 1 and graph.svg.count('data-state="DONE"') == 4
    assert store.get_job("j").status is JobStatus.RUNNING  # type: ignore[union-attr]


def _dead_letters(config: WorkerConfig, count: int) -> None:
    publisher = KombuPublisher(broker_connection(config))
    for i in range(count):
        body = json.dumps(
            {"job_id": "j", "task_id": f"t{i}", "input_uri": "s3://b/i", "output_prefix": "s3://b/o/"}
        )
        publisher.publish_raw(
            "work-dlq", body, {"x-error": f"boom {i}", "x-task-id": f"t{i}", "x-attempts": 3}
        )
    publisher.close()


def test_peek_leaves_dead_letters_and_redrive_moves_only_the_picked_one(tmp_path: Path) -> None:
    config = WorkerConfig(data_dir=tmp_path, broker_url="filesystem://", queue="work")
    _dead_letters(config, 3)
    # Kombu names files by millisecond, so order within one millisecond is arbitrary.
    letters = sorted(peek(config), key=lambda d: d.task_id)
    assert [(d.task_id, d.error) for d in letters] == [(f"t{i}", f"boom {i}") for i in range(3)]
    assert sorted(d.task_id for d in peek(config)) == ["t0", "t1", "t2"]  # still there
    assert redrive(config, ids=[letters[1].message_id]) == 1
    assert sorted(d.task_id for d in peek(config)) == ["t0", "t2"]
    moved = KombuPublisher(broker_connection(config))
    with broker_connection(config) as conn:
        queue = conn.SimpleQueue("work")
        got = queue.get(timeout=2)
        assert json.loads(got.body)["task_id"] == "t1" and got.content_type == "application/json"
        got.ack()
        queue.close()
    moved.close()
    assert redrive(config) == 2 and peek(config) == []
