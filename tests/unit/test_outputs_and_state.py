"""Outputs (result.json / result.<ext> / metrics.json) and the SQLite state machine."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from kombu_worker_sdk import WorkerHooks
from kombu_worker_sdk.message import NextMessage, TaskMessage
from kombu_worker_sdk.stages.store import sniff_extension
from kombu_worker_sdk.state import ClaimOutcome, JobStatus, SqliteStateStore, TaskStatus
from kombu_worker_sdk.testing import LocalRunner, run_message
from tests.sample_hooks import StepHooks, split_message


class BytesHooks(WorkerHooks):
    version = "bytes-2"

    def load_pipeline(self, ctx: Any) -> None:
        return None

    def process(self, ctx: Any, msg: Any) -> Any:
        out: dict[str, Any] = {"result": bytes.fromhex(msg["params"]["hex"]), "metrics": {"n": 1}}
        if msg["params"].get("ext"):
            out["result_ext"] = msg["params"]["ext"]
        return out

    def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
        return []


def leaf(**params: Any) -> dict[str, Any]:
    return {**split_message("b1"), "params": params}


def test_json_result_and_metrics_with_sdk_figures() -> None:
    result = run_message(StepHooks(), leaf(step="leaf"))
    assert result.read_json("result.json")["step"] == "leaf"
    metrics = result.read_json("metrics.json")
    assert metrics["latency_ms"] == 1
    sdk = metrics["sdk"]
    assert set(sdk["stage_seconds"]) == {"validate", "idempotency", "claim", "prefetch", "hooks"}
    assert sdk["attempt"] == 1 and sdk["worker_id"] == "test"
    assert sdk["sdk_version"] == "0.1.0" and sdk["hooks_version"] == "test-1"
    assert result.storage.content_types["s3://bucket/jobs/b1/split/result.json"] == "application/json"


@pytest.mark.parametrize(
    ("hexdata", "ext", "filename"),
    [
        ("89504e470d0a1a0a00", None, "result.png"),
        ("ffd8ffe000", None, "result.jpg"),
        ("00010203", None, "result.bin"),
        ("00010203", "npz", "result.npz"),
    ],
)
def test_bytes_result_extension_given_or_sniffed(hexdata: str, ext: str | None, filename: str) -> None:
    result = run_message(BytesHooks(), leaf(hex=hexdata, ext=ext))
    assert result.status == "DONE"
    prefix = "s3://bucket/jobs/b1/split/"
    assert result.storage.read(prefix + filename) == bytes.fromhex(hexdata)
    assert not any(k.endswith("result.json") for k in result.storage.objects)


def test_bad_result_ext_fails_permanently() -> None:
    result = run_message(BytesHooks(), leaf(hex="00", ext="../x"))
    assert result.disposition == "dead_letter" and result.status == "FAILED"


def test_sniffing() -> None:
    assert sniff_extension(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff_extension(b"%PDF-1.7") == "pdf"


def msg(task_id: str, job: str = "j") -> TaskMessage:
    return TaskMessage(job_id=job, task_id=task_id, input_uri="s3://b/i", output_prefix=f"s3://b/{task_id}/")


def child(task_id: str, **extra: Any) -> NextMessage:
    return NextMessage(
        job_id="j", task_id=task_id, input_uri="s3://b/i", output_prefix=f"s3://b/{task_id}/", **extra
    )


@pytest.fixture
def store(tmp_path: Path) -> SqliteStateStore:
    state = SqliteStateStore(tmp_path / "state.db")
    state.upgrade()
    return state


def test_status_moves_pending_processing_done_and_job_done(store: SqliteStateStore) -> None:
    root = msg("root")
    assert store.register(root)
    assert store.get_task("root").status is TaskStatus.PENDING  # type: ignore[union-attr]
    assert store.claim(root, worker_id="w", lease_seconds=60).outcome is ClaimOutcome.CLAIMED
    assert store.get_task("root").status is TaskStatus.PROCESSING  # type: ignore[union-attr]
    pending = store.complete(root, [child("c1"), child("c2")], default_queue="next")
    assert [p.message.task_id for p in pending] == ["c1", "c2"]
    assert store.get_job("j").status is JobStatus.RUNNING  # type: ignore[union-attr]
    for name in ("c1", "c2"):
        store.claim(msg(name), worker_id="w", lease_seconds=60)
        store.complete(msg(name), [], default_queue=None)
    job = store.get_job("j")
    assert job is not None and (job.status, job.total, job.done) == (JobStatus.DONE, 3, 3)
    assert store.pending_children("root") == []


def test_claim_is_atomic_across_threads(store: SqliteStateStore) -> None:
    target = msg("contended")
    barrier = threading.Barrier(8)
    outcomes: list[ClaimOutcome] = []

    def claim(i: int) -> None:
        barrier.wait()
        outcomes.append(store.claim(target, worker_id=f"w{i}", lease_seconds=60).outcome)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count(ClaimOutcome.CLAIMED) == 1
    assert outcomes.count(ClaimOutcome.HELD) == 7


def test_expired_lease_can_be_reclaimed_and_done_is_final(store: SqliteStateStore) -> None:
    target = msg("lease")
    assert store.claim(target, worker_id="a", lease_seconds=-1).outcome is ClaimOutcome.CLAIMED
    second = store.claim(target, worker_id="b", lease_seconds=60)
    assert second.outcome is ClaimOutcome.CLAIMED and second.attempts == 2
    assert not store.extend_lease("lease", worker_id="a", lease_seconds=60)
    assert store.extend_lease("lease", worker_id="b", lease_seconds=60)
    store.complete(target, [], default_queue=None)
    assert store.claim(target, worker_id="c", lease_seconds=60).outcome is ClaimOutcome.DONE


def test_conflicting_content_is_detected(store: SqliteStateStore) -> None:
    store.claim(msg("same"), worker_id="a", lease_seconds=60)
    other = TaskMessage(job_id="j", task_id="same", input_uri="s3://b/other", output_prefix="s3://b/same/")
    assert store.claim(other, worker_id="b", lease_seconds=60).outcome is ClaimOutcome.CONFLICT


def test_fan_in_counts_each_sibling_once_and_releases_once(store: SqliteStateStore) -> None:
    store.register(msg("root"))
    store.claim(msg("root"), worker_id="w", lease_seconds=60)
    siblings = [f"s{i}" for i in range(3)]
    store.complete(msg("root"), [child(s) for s in siblings], default_queue="q")
    join = child("join", fan_in={"group": "g", "size": 3})
    released = []
    for s in [*siblings[:2], siblings[1], siblings[2]]:  # s1 is redelivered and completes twice
        store.claim(msg(s), worker_id="w", lease_seconds=60)
        released.append([p.message.task_id for p in store.complete(msg(s), [join], default_queue="q")])
    assert released == [[], [], [], ["join"]]
    job = store.get_job("j")
    assert job is not None and (job.total, job.done, job.status) == (5, 4, JobStatus.RUNNING)


def test_failure_marks_job_failed_and_redrive_can_recover(store: SqliteStateStore) -> None:
    store.claim(msg("f"), worker_id="w", lease_seconds=60)
    store.retry_later("f", error="boom")
    record = store.get_task("f")
    assert record is not None and record.status is TaskStatus.PENDING and record.error == "boom"
    store.fail("f", "j", error="gave up")
    assert store.get_job("j").status is JobStatus.FAILED  # type: ignore[union-attr]
    assert store.claim(msg("f"), worker_id="w", lease_seconds=60).outcome is ClaimOutcome.CLAIMED
    store.complete(msg("f"), [], default_queue=None)
    assert store.get_job("j").status is JobStatus.DONE  # type: ignore[union-attr]


def test_fail_for_unknown_task_creates_a_failed_row(store: SqliteStateStore) -> None:
    store.fail("ghost", None, error="InvalidMessageError: bad")
    record = store.get_task("ghost")
    assert record is not None and record.status is TaskStatus.FAILED and "bad" in (record.error or "")


def test_seed_ctx_db_api(store: SqliteStateStore) -> None:
    store.register(msg("api"))
    assert store.claim_task("api")
    assert not store.claim_task("api")
    assert not store.claim_task("unknown")
    store.update_status("api", "DONE")
    assert store.get_task("api").status is TaskStatus.DONE  # type: ignore[union-attr]


def test_chained_steps_share_state(tmp_path: Path) -> None:
    first = LocalRunner(StepHooks())
    second = LocalRunner(StepHooks(), storage=first.storage, state=first.state, publisher=first.publisher)
    out = first.run(split_message("ch", parts=2))
    joins = [second.run(m).published for m in out.published]
    assert [len(j) for j in joins] == [0, 1]
    assert joins[1][0]["task_id"] == "ch-join"


def test_claimants_are_per_delivery_and_retry_later_respects_the_holder(store: SqliteStateStore) -> None:
    target = msg("dup")
    assert store.claim(target, worker_id="pod1/aaa", lease_seconds=60).outcome is ClaimOutcome.CLAIMED
    assert store.claim(target, worker_id="pod1/bbb", lease_seconds=60).outcome is ClaimOutcome.HELD
    assert store.claim(target, worker_id="pod1/aaa", lease_seconds=60).outcome is ClaimOutcome.CLAIMED
    store.retry_later("dup", error="not mine", worker_id="pod1/bbb")
    assert store.get_task("dup").status is TaskStatus.PROCESSING  # type: ignore[union-attr]
    store.retry_later("dup", error="mine", worker_id="pod1/aaa")
    assert store.get_task("dup").status is TaskStatus.PENDING  # type: ignore[union-attr]
