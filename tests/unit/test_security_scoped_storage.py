"""Security (issue 4 §7b): the bucket allowlist and output-prefix guard in ScopedStorage, in the
validate stage, and for children returned by ``publish_next``.
"""

from __future__ import annotations

import json
from typing import Any, BinaryIO

import pytest

from kombu_worker_sdk.errors import OutputPrefixViolation, UnsafeURIError
from kombu_worker_sdk.storage import MemoryStorage, ScopedStorage
from tests.sample_hooks import StepHooks
from tests.unit.security_common import (
    BUCKET,
    FORBIDDEN_READS,
    FOREIGN,
    PREFIX,
    MakeWorker,
    drain_dead_letters,
    message,
)

# ------------------------------------------------------------ (b) ScopedStorage on every path


class SpyStorage(MemoryStorage):
    """MemoryStorage that records every backend call, to prove the guard ran first."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[tuple[str, str]] = []

    def read(self, uri: str) -> bytes:
        self.calls.append(("read", uri))
        return super().read(uri)

    def open(self, uri: str) -> BinaryIO:
        self.calls.append(("open", uri))
        return super().open(uri)

    def put(self, uri: str, data: bytes, content_type: str) -> None:
        self.calls.append(("put", uri))
        super().put(uri, data, content_type)


@pytest.mark.parametrize("uri", FORBIDDEN_READS)
@pytest.mark.parametrize("method", ["read", "open"])
def test_scoped_storage_refuses_reads_outside_the_allowlist(uri: str, method: str) -> None:
    spy = SpyStorage(allowed_buckets=[BUCKET])
    spy.objects[uri] = b"secret"
    scoped = ScopedStorage(spy, PREFIX)
    with pytest.raises(UnsafeURIError):
        getattr(scoped, method)(uri)
    assert spy.calls == []


@pytest.mark.parametrize(
    ("output_prefix", "prefix", "name", "error"),
    [
        (PREFIX, "", "../x.json", OutputPrefixViolation),
        (PREFIX, "", "%252e%252e/x.json", OutputPrefixViolation),
        (PREFIX, f"s3://{BUCKET}/jobs/j1/", "x.json", OutputPrefixViolation),
        (PREFIX, f"s3://{FOREIGN}/jobs/j1/step/", "x.json", OutputPrefixViolation),
        (PREFIX, "", f"s3://{FOREIGN}/x.json", OutputPrefixViolation),
        (f"s3://{FOREIGN}/jobs/j1/step/", "", "result.json", UnsafeURIError),
    ],
)
def test_scoped_storage_refuses_writes_outside_the_prefix_or_allowlist(
    output_prefix: str, prefix: str, name: str, error: type[Exception]
) -> None:
    spy = SpyStorage(allowed_buckets=[BUCKET])
    with pytest.raises(error):
        ScopedStorage(spy, output_prefix).write(prefix, name, b"x")
    assert spy.calls == []


# ------------------------------------------------------------------------------ validate stage


class RecordingHooks(StepHooks):
    """StepHooks that remember which tasks reached ``process``."""

    def __init__(self) -> None:
        self.processed: list[str] = []

    def process(self, ctx: Any, msg: Any) -> Any:
        self.processed.append(msg.task_id)
        return super().process(ctx, msg)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"input_uri": f"s3://{FOREIGN}/secret.txt"}, "UnsafeURIError"),
        ({"input_uri": "file:///etc/passwd"}, "LocalInputViolation"),  # an UnsafeURIError
        ({"output_prefix": f"s3://{FOREIGN}/jobs/j1/t1/"}, "UnsafeURIError"),
        ({"output_prefix": f"s3://{BUCKET}@{FOREIGN}/jobs/j1/t1/"}, "UnsafeURIError"),
        ({"output_prefix": f"s3://{BUCKET}/jobs/j1/%2e%2e/%2e%2e/x/"}, "InvalidMessageError"),
        ({"input_uri": f"s3://{BUCKET}/jobs/%252e%252e/secret"}, "InvalidMessageError"),
    ],
)
def test_validate_stage_refuses_foreign_buckets_local_paths_and_traversal(
    make_worker: MakeWorker, changes: dict[str, Any], error: str
) -> None:
    hooks = RecordingHooks()
    storage = MemoryStorage(allowed_buckets=[BUCKET])
    running = make_worker(hooks, storage=storage)
    running.send_raw(
        json.dumps(message(**changes)), content_type="application/json", content_encoding="utf-8"
    )
    [headers] = drain_dead_letters(running, 1)
    assert headers["x-error"].startswith(error + ":")
    assert running.status("t1") == "FAILED"
    assert hooks.processed == [] and storage.puts == []


# ------------------------------------------------------------- children returned by publish_next


class RogueChildHooks(StepHooks):
    """publish_next returns ``params.child`` as it is: a child built by a careless hook."""

    def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
        child = msg["params"].get("child")
        return [child] if child else []


class RecordingRogueHooks(RecordingHooks, RogueChildHooks):
    pass


def child(**changes: Any) -> dict[str, Any]:
    return message(task_id="rogue-child", **changes)


@pytest.mark.parametrize(
    ("rogue", "error"),
    [
        (child(job_id="someone-elses-job"), "UnsafeURIError"),
        (child(output_prefix=f"s3://{BUCKET}/jobs/j1/../../other/"), "InvalidMessageError"),
        (child(output_prefix=f"s3://{BUCKET}/jobs/j1/%252e%252e/x/"), "InvalidMessageError"),
        (child(input_uri="file:///etc/passwd\x00"), "InvalidMessageError"),
    ],
)
def test_a_child_outside_its_parents_job_or_with_traversal_is_never_published(
    make_worker: MakeWorker, rogue: dict[str, Any], error: str
) -> None:
    storage = MemoryStorage(allowed_buckets=[BUCKET])
    running = make_worker(RogueChildHooks(), storage=storage)  # next_queue is the input queue
    running.send(message(params={"step": "leaf", "child": rogue}))
    [headers] = drain_dead_letters(running, 1)
    assert headers["x-error"].startswith(error + ":")
    assert headers["x-task-id"] == "t1"
    assert running.status("t1") == "FAILED"
    assert running.runtime.state.get_task("rogue-child") is None
    assert running.dead_letters(timeout=0.3) == []


@pytest.mark.parametrize(
    ("rogue", "error"),
    [
        (child(job_id="j1", output_prefix=f"s3://{FOREIGN}/jobs/j1/child/"), "UnsafeURIError"),
        (child(job_id="j1", input_uri=f"s3://{FOREIGN}/secret.txt"), "UnsafeURIError"),
        (child(job_id="j1", input_uri="file:///etc/passwd"), "LocalInputViolation"),  # an UnsafeURIError
    ],
)
def test_a_child_in_a_foreign_bucket_never_runs(
    make_worker: MakeWorker, rogue: dict[str, Any], error: str
) -> None:
    hooks = RecordingRogueHooks()
    storage = MemoryStorage(allowed_buckets=[BUCKET])
    running = make_worker(hooks, storage=storage)
    running.send(message(params={"step": "leaf", "child": rogue}))
    [headers] = drain_dead_letters(running, 1)
    assert headers["x-error"].startswith(error + ":")
    assert hooks.processed == ["t1"]  # the child was refused before its hooks
    assert running.status("rogue-child") == "FAILED"
    assert not any(FOREIGN in uri or uri.startswith("file:") for uri in storage.puts)
