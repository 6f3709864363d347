"""Storage refuses every write outside output_prefix, and buckets off the allowlist."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kombu_worker_sdk.errors import ObjectNotFoundError, OutputPrefixViolation, UnsafeURIError
from kombu_worker_sdk.storage import LocalStorage, MemoryStorage, ScopedStorage, open_storage

PREFIX = "s3://bucket/jobs/j1/step/"


@pytest.mark.parametrize(
    ("prefix", "name"),
    [
        (PREFIX, "../escape.json"),
        (PREFIX, "a/../../escape.json"),
        (PREFIX, "/etc/passwd"),
        (PREFIX, "%2e%2e/escape.json"),
        (PREFIX, "%252e%252e/escape.json"),
        (PREFIX, "..%2fescape.json"),
        (PREFIX, "a\\..\\b.json"),
        (PREFIX, "a\x00.json"),
        (PREFIX, "s3://other/x.json"),
        (PREFIX, ""),
        (PREFIX, "dir/"),
        ("s3://bucket/jobs/j1/other/", "x.json"),
        ("s3://bucket/jobs/j1/step-sibling/", "x.json"),
        ("s3://bucket/jobs/", "j1/x.json"),
    ],
)
def test_writes_outside_output_prefix_are_refused(prefix: str, name: str) -> None:
    backend = MemoryStorage()
    scoped = ScopedStorage(backend, PREFIX)
    with pytest.raises(OutputPrefixViolation):
        scoped.write(prefix, name, b"x")
    assert backend.objects == {}


def test_writes_inside_are_allowed_with_content_types() -> None:
    backend = MemoryStorage()
    scoped = ScopedStorage(backend, PREFIX)
    assert scoped.write(PREFIX, "crops/000.png", b"png") == PREFIX + "crops/000.png"
    assert scoped.write(PREFIX + "crops", "001.json", "{}") == PREFIX + "crops/001.json"
    assert backend.content_types[PREFIX + "crops/001.json"] == "application/json"
    assert backend.content_types[PREFIX + "crops/000.png"] == "image/png"


def test_no_writes_without_a_message() -> None:
    with pytest.raises(OutputPrefixViolation, match="no output_prefix"):
        ScopedStorage(MemoryStorage(), None).write("", "x.json", b"{}")


def test_symlink_escape_is_refused_on_local_storage(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    local = LocalStorage(root)
    (root / "bucket" / "jobs").mkdir(parents=True)
    os.symlink(outside, root / "bucket" / "jobs" / "j1")
    scoped = ScopedStorage(local, "s3://bucket/jobs/j1/step/")
    with pytest.raises(OutputPrefixViolation, match="outside"):
        scoped.write("", "result.json", b"{}")
    assert list(outside.iterdir()) == []


def test_local_storage_round_trip_and_result_lookup(tmp_path: Path) -> None:
    local = open_storage(f"file://{tmp_path}")
    scoped = ScopedStorage(local, PREFIX)
    assert local.find_result(PREFIX) is None
    scoped.write("", "result.png", b"\x89PNG")
    assert local.find_result(PREFIX) == PREFIX + "result.png"
    assert local.read(PREFIX + "result.png") == b"\x89PNG"
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "bucket/jobs/j1/step").iterdir())
    with pytest.raises(ObjectNotFoundError):
        local.read(PREFIX + "missing.json")


def test_bucket_allowlist_and_local_input_rules() -> None:
    backend = MemoryStorage(allowed_buckets=["bucket"])
    scoped = ScopedStorage(backend, PREFIX)
    with pytest.raises(UnsafeURIError, match="allowlist"):
        scoped.read("s3://secret-bucket/x")
    with pytest.raises(UnsafeURIError, match="local input"):
        scoped.read("file:///etc/passwd")
    with pytest.raises(UnsafeURIError, match="allowlist"):
        ScopedStorage(backend, "s3://other-bucket/jobs/").write("", "result.json", b"{}")
