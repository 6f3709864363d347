"""Security (issue 4 §7b): the backends guard themselves: S3Storage refuses before any request,
LocalStorage refuses symlinks and traversal out of its root.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from kombu_worker_sdk.errors import BackendUnavailableError, OutputPrefixViolation, UnsafeURIError
from kombu_worker_sdk.storage import LocalStorage, ScopedStorage
from kombu_worker_sdk.storage.s3 import S3Storage
from tests.unit.security_common import BUCKET, FORBIDDEN_READS, FOREIGN, PREFIX, refused_endpoint


@pytest.fixture
def dead_endpoint() -> Iterator[str]:
    """A bound socket that never listens: any request to it is refused at once."""
    with refused_endpoint() as url:
        yield url


# --------------------------------------------------------------- S3Storage, before any request


@pytest.fixture
def s3(dead_endpoint: str) -> S3Storage:
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=dead_endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="not-a-secret",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2, read_timeout=2),
    )
    return S3Storage([BUCKET], client=client)


def test_s3_storage_would_really_hit_the_network_for_an_allowed_bucket(s3: S3Storage) -> None:
    with pytest.raises(BackendUnavailableError):
        s3.read(f"s3://{BUCKET}/in.txt")
    with pytest.raises(BackendUnavailableError):
        s3.put(f"s3://{BUCKET}/jobs/x.json", b"{}", "application/json")


@pytest.mark.parametrize("uri", FORBIDDEN_READS)
def test_s3_storage_refuses_reads_outside_the_allowlist_before_any_request(s3: S3Storage, uri: str) -> None:
    with pytest.raises(UnsafeURIError):
        s3.read(uri)
    with pytest.raises(UnsafeURIError):
        s3.open(uri)


@pytest.mark.parametrize(
    "uri",
    [
        f"s3://{FOREIGN}/jobs/x.json",
        f"s3://{BUCKET}@{FOREIGN}/jobs/x.json",
        "file:///tmp/kombu-worker-security/x.json",
        f"S3://{BUCKET}/jobs/x.json",
        f"s3://{BUCKET}/",
        f"s3://{BUCKET}",
    ],
)
def test_s3_storage_refuses_writes_outside_the_allowlist_before_any_request(s3: S3Storage, uri: str) -> None:
    with pytest.raises(UnsafeURIError):
        s3.put(uri, b"{}", "application/json")


@pytest.mark.parametrize(
    "prefix",
    [f"s3://{FOREIGN}/jobs/j1/", "file:///tmp/kombu-worker-security/", f"s3://{BUCKET}@{FOREIGN}/j/"],
)
def test_s3_storage_refuses_foreign_output_prefixes(s3: S3Storage, prefix: str) -> None:
    with pytest.raises(UnsafeURIError):
        s3.check_writable_prefix(prefix)


# ----------------------------------------------------------------------- LocalStorage symlinks


@pytest.fixture
def local_root(tmp_path: Path) -> tuple[LocalStorage, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    storage = LocalStorage(tmp_path / "root", allowed_buckets=[BUCKET])
    (storage.root / BUCKET / "jobs").mkdir(parents=True)
    return storage, outside


def test_a_symlinked_output_prefix_is_refused_at_validation_and_on_write(
    local_root: tuple[LocalStorage, Path],
) -> None:
    storage, outside = local_root
    os.symlink(outside, storage.root / BUCKET / "jobs" / "j1")
    with pytest.raises(OutputPrefixViolation):
        storage.check_writable_prefix(PREFIX)  # what the validate stage calls
    with pytest.raises(OutputPrefixViolation):
        ScopedStorage(storage, PREFIX).write("", "result.json", b"{}")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_a_symlinked_result_file_cannot_carry_a_write_outside_the_root(
    local_root: tuple[LocalStorage, Path],
) -> None:
    storage, outside = local_root
    folder = storage.root / BUCKET / "jobs" / "j1" / "step"
    folder.mkdir(parents=True)
    os.symlink(outside / "secret.txt", folder / "result.json")
    with pytest.raises(OutputPrefixViolation):
        ScopedStorage(storage, PREFIX).write("", "result.json", b"{}")
    assert (outside / "secret.txt").read_bytes() == b"secret"


@pytest.mark.parametrize("path", ["../../outside/secret.txt", "%2e%2e/%2e%2e/outside/secret.txt"])
def test_local_storage_reads_cannot_climb_out_of_the_bucket(
    local_root: tuple[LocalStorage, Path], path: str
) -> None:
    storage, _outside = local_root
    # root/bucket/../../outside == tmp_path/outside
    with pytest.raises((UnsafeURIError, OutputPrefixViolation)):
        ScopedStorage(storage, PREFIX).read(f"s3://{BUCKET}/{path}")
