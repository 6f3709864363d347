"""A claim's lease lives and dies with the heartbeat, and a held copy waits without using an attempt."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kombu_worker_sdk.config import WorkerConfig, load_config
from kombu_worker_sdk.errors import ConfigError
from kombu_worker_sdk.message import TaskMessage
from kombu_worker_sdk.state import Claim, ClaimOutcome, SqliteStateStore
from kombu_worker_sdk.worker.heartbeat import Heartbeat
from tests.conftest import wait_for
from tests.sample_hooks import split_message

REPO = Path(__file__).parents[2]


def leaf(job: str, **params: Any) -> dict[str, Any]:
    return {**split_message(job), "params": {"step": "leaf", **params}}


class FakeDelivery:
    """What the heartbeat reads from a delivery: its run's claim, and ``extend``."""

    def __init__(self, run: Any):
        self.run = run
        self.settled = False
        self.received_at = time.monotonic()
        self.extended: list[int] = []

    def extend(self, seconds: int) -> None:
        self.extended.append(seconds)


class FakeWorker:
    def __init__(self, state: SqliteStateStore, delivery: FakeDelivery):
        self.lock = threading.Lock()
        self.inflight = {delivery}
        self.runtime = type("R", (), {"state": state, "logger": logging.getLogger("test")})()

    def on_visibility_extended(self) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> SqliteStateStore:
    state = SqliteStateStore(tmp_path / "state.db")
    state.upgrade()
    return state


def held_until(store: SqliteStateStore, msg: TaskMessage) -> float:
    """The holder's lease end, as another claimant sees it."""
    claim = store.claim(msg, worker_id="someone-else", lease_seconds=1)
    assert claim.outcome is ClaimOutcome.HELD and claim.lease_until is not None
    return claim.lease_until


def test_a_claim_lasts_one_visibility_timeout_and_each_beat_pushes_it_with_the_visibility(
    store: SqliteStateStore,
) -> None:
    config = WorkerConfig(visibility_timeout=30)
    assert config.claim_lease_seconds == 30
    msg = TaskMessage.model_validate(leaf("hb"))
    before = time.time()
    claim = store.claim(msg, worker_id="pod/a", lease_seconds=config.claim_lease_seconds)
    assert claim.lease_until is not None and before + 30 <= claim.lease_until <= time.time() + 30
    run = type("Run", (), {"claim": claim, "task_id": msg.task_id, "holder": "pod/a"})()
    delivery = FakeDelivery(run)
    heartbeat = Heartbeat(FakeWorker(store, delivery), config)  # type: ignore[arg-type]

    first = held_until(store, msg)
    start = time.time()
    heartbeat.beat()
    pushed = held_until(store, msg)
    assert delivery.extended == [30], "visibility and lease are pushed by the same amount"
    assert pushed > first and start + 30 <= pushed <= time.time() + 30


def test_the_claim_of_a_holder_that_stopped_beating_ends_within_one_visibility_timeout(
    store: SqliteStateStore,
) -> None:
    config = WorkerConfig(visibility_timeout=1)
    msg = TaskMessage.model_validate(leaf("dead"))
    dead = store.claim(msg, worker_id="crashed/a", lease_seconds=config.claim_lease_seconds)
    assert dead.lease_until is not None and dead.lease_until <= time.time() + 1
    # Nobody beats for the crashed holder: another worker gets the task once the lease ends.
    taken: list[Claim] = []

    def claimed_by_another() -> bool:
        taken.append(store.claim(msg, worker_id="alive/b", lease_seconds=1))
        return taken[-1].outcome is ClaimOutcome.CLAIMED

    wait_for(claimed_by_another, timeout=20, interval=0.05)
    assert time.time() >= dead.lease_until
    assert taken[-1].attempts == 2


def test_a_held_copy_waits_in_process_and_runs_when_the_holders_lease_ends(
    make_worker: Any, tmp_path: Path
) -> None:
    done = tmp_path / "done"
    done.mkdir()
    running = make_worker(visibility_timeout=1)
    body = leaf("h1", marker_dir=str(done))
    # A crashed holder: its claim is never extended, so it lapses after one lease.
    held = running.runtime.state.claim(TaskMessage.model_validate(body), worker_id="gone/x", lease_seconds=1)
    assert held.outcome is ClaimOutcome.CLAIMED
    running.send(body)
    wait_for(lambda: running.status("h1-split") == "DONE", timeout=30)
    record = running.runtime.state.get_task("h1-split")
    assert record is not None and record.attempts == 2  # the crashed holder's and this worker's
    metrics = json.loads(running.storage.read("s3://bucket/jobs/h1/split/metrics.json"))
    assert metrics["sdk"]["attempt"] == 1, "waiting on the holder did not use an attempt"
    assert len(list(done.iterdir())) == 1
    assert running.dead_letters() == []


def test_a_held_copy_of_a_task_a_live_worker_finishes_is_acked_without_running(
    make_worker: Any, tmp_path: Path
) -> None:
    done = tmp_path / "done"
    done.mkdir()
    running = make_worker(visibility_timeout=1)
    body = leaf("h2", marker_dir=str(done))
    msg = TaskMessage.model_validate(body)
    state = running.runtime.state
    assert state.claim(msg, worker_id="live/y", lease_seconds=3).outcome is ClaimOutcome.CLAIMED
    stop = threading.Event()

    def holder_heartbeat() -> None:  # the live holder pushes its lease, as its heartbeat would
        while not stop.wait(0.1):
            state.extend_lease("h2-split", worker_id="live/y", lease_seconds=3)

    beating = threading.Thread(target=holder_heartbeat, daemon=True)
    beating.start()
    try:
        running.send(body)
        # The copy is kept in-process (still in flight, so the heartbeat keeps it) and looks
        # again, with a growing backoff capped by the holder's lease, several times.
        delivery = wait_for(lambda: next(iter(running.worker._held), None), timeout=15)
        assert delivery in running.worker.inflight
        for _ in range(3):
            timer = running.worker._held.get(delivery)
            wait_for(lambda t=timer: running.worker._held.get(delivery) not in (None, t), timeout=15)
    finally:
        stop.set()
        beating.join(5)
    assert running.status("h2-split") == "PROCESSING"
    state.complete(msg, [], default_queue=None)
    wait_for(lambda: running.worker.settled == 1, timeout=15)
    record = state.get_task("h2-split")
    assert record is not None and record.status == "DONE" and record.attempts == 1
    assert list(done.iterdir()) == [], "the copy saw DONE and was acked, not run again"
    assert running.dead_letters() == []


def test_lease_seconds_is_refused_with_what_to_set(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("lease_seconds: 900\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml.*lease_seconds.*visibility_timeout"):
        load_config(str(tmp_path / "mine.yaml"), config_dir=tmp_path, env={})
    with pytest.raises(ConfigError, match=r"\$KOMBU_WORKER_LEASE_SECONDS.*set visibility_timeout"):
        load_config(config_dir=tmp_path, env={"KOMBU_WORKER_LEASE_SECONDS": "900"})


@pytest.mark.parametrize("name", ["default", "production", "vastra", "ytbot"])
def test_shipped_configs_tie_the_lease_to_the_visibility_timeout(name: str) -> None:
    config = load_config(name, config_dir=REPO / "config", env={})
    assert config.claim_lease_seconds == max(config.visibility_timeout, 1)
