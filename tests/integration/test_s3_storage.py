"""S3Storage against moto's server: real HTTP, no patching of boto3.

Run with: ``python scripts/services.py -- python -m pytest tests/integration/test_s3_storage.py``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kombu_worker_sdk.errors import (
    BackendUnavailableError,
    ObjectNotFoundError,
    OutputPrefixViolation,
    StorageError,
    UnsafeURIError,
)
from kombu_worker_sdk.storage import ScopedStorage, open_storage
from kombu_worker_sdk.storage.s3 import S3Storage
from tests.servers import boto_client, fresh_bucket, require_moto

pytestmark = pytest.mark.integration

SECRET = "sentinel-secret-key-do-not-print"


@pytest.fixture
def moto_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the standard AWS environment at moto, as a pod's env would point at S3."""
    url = require_moto()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", url)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return url


@pytest.fixture
def s3(moto_env: str) -> Any:
    return boto_client("s3")


@pytest.fixture
def bucket(s3: Any) -> str:
    return fresh_bucket(s3, "kws-s3")


@pytest.fixture
def storage(moto_env: str, bucket: str) -> S3Storage:
    return S3Storage(allowed_buckets=[bucket])


def count_calls(storage: S3Storage) -> list[str]:
    """Record every S3 operation the storage's client makes (before retries)."""
    calls: list[str] = []

    def counter(model: Any, **_: Any) -> None:
        calls.append(model.name)

    storage.client.meta.events.register("before-call.s3.*", counter)
    return calls


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ------------------------------------------------------------------ read/write


def test_write_read_roundtrip_sets_content_types(storage: S3Storage, bucket: str, s3: Any) -> None:
    prefix = f"s3://{bucket}/job-1/task-1/"
    scoped = ScopedStorage(storage, prefix)
    uris = {
        name: scoped.write(prefix, name, data)
        for name, data in [
            ("result.json", '{"ok": true}'),
            ("crops/000.png", b"\x89PNG fake"),
            ("blob.npy", b"\x93NUMPY"),
            ("notes.txt", "hello"),
        ]
    }
    assert uris["crops/000.png"] == f"s3://{bucket}/job-1/task-1/crops/000.png"
    assert scoped.written == list(uris.values())
    expected = {
        "result.json": "application/json",
        "crops/000.png": "image/png",
        "blob.npy": "application/octet-stream",
        "notes.txt": "text/plain",
    }
    for name, ctype in expected.items():
        head = s3.head_object(Bucket=bucket, Key=f"job-1/task-1/{name}")
        assert head["ContentType"] == ctype, name
    assert storage.read(uris["result.json"]) == b'{"ok": true}'
    assert scoped.read(uris["crops/000.png"]) == b"\x89PNG fake"
    with storage.open(uris["notes.txt"]) as handle:
        assert handle.read() == b"hello"


def test_open_storage_builds_s3_backend(moto_env: str, bucket: str) -> None:
    backend = open_storage("s3://", allowed_buckets=[bucket])
    assert isinstance(backend, S3Storage)
    backend.put(f"s3://{bucket}/x/y.bin", b"data", "application/octet-stream")
    assert backend.read(f"s3://{bucket}/x/y.bin") == b"data"


def test_keys_are_literal(storage: S3Storage, bucket: str, s3: Any) -> None:
    storage.put(f"s3://{bucket}/a%20b/c d.txt", b"x", "text/plain")
    assert s3.get_object(Bucket=bucket, Key="a%20b/c d.txt")["Body"].read() == b"x"
    assert storage.read(f"s3://{bucket}/a%20b/c d.txt") == b"x"


def test_missing_object_is_object_not_found(storage: S3Storage, bucket: str) -> None:
    with pytest.raises(ObjectNotFoundError):
        storage.read(f"s3://{bucket}/nope/missing.png")
    with pytest.raises(ObjectNotFoundError):
        storage.open(f"s3://{bucket}/nope/missing.png")
    with pytest.raises(ObjectNotFoundError):
        storage.read(f"s3://{bucket}")  # a bucket, not an object


def test_missing_bucket_is_a_storage_error_not_a_missing_object(moto_env: str) -> None:
    storage = S3Storage()
    name = "kws-no-such-bucket-" + os.urandom(4).hex()
    with pytest.raises(StorageError, match="bucket does not exist") as info:
        storage.read(f"s3://{name}/a.txt")
    assert not isinstance(info.value, ObjectNotFoundError)
    with pytest.raises(StorageError, match="bucket does not exist"):
        storage.put(f"s3://{name}/a.txt", b"x", "text/plain")
    with pytest.raises(StorageError, match="bucket does not exist"):
        storage.check(name)


def test_open_streams_a_large_object(storage: S3Storage, bucket: str, s3: Any) -> None:
    size = 8 * 1024 * 1024
    payload = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="big/input.bin", Body=payload)
    uri = f"s3://{bucket}/big/input.bin"
    digest = hashlib.sha256()
    storage.check(bucket)  # build the client (and load its service model) before measuring
    tracemalloc.start()
    try:
        with storage.open(uri) as handle:
            first = handle.read(1000)
            assert len(first) == 1000
            digest.update(first)
            while chunk := handle.read(64 * 1024):
                digest.update(chunk)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert handle.closed
    assert digest.digest() == hashlib.sha256(payload).digest()
    # Streamed: far less than the object was ever held in Python memory at once.
    assert peak < size // 4, f"peak {peak} bytes while streaming {size}"


# ------------------------------------------------------------------ find_result


def test_find_result_makes_exactly_one_request(storage: S3Storage, bucket: str) -> None:
    prefix = f"s3://{bucket}/job/task/"
    for key, data in [
        ("job/task/metrics.json", b"{}"),
        ("job/task/results/other.json", b"{}"),
        ("job/task-2/result.json", b"{}"),
        ("job/result.json", b"{}"),
    ]:
        storage.put(f"s3://{bucket}/{key}", data, "application/json")
    calls = count_calls(storage)
    assert storage.find_result(prefix) is None
    assert calls == ["ListObjectsV2"]

    storage.put(prefix + "result.png", b"png", "image/png")
    calls.clear()
    assert storage.find_result(prefix) == prefix + "result.png"
    assert storage.find_result(prefix.rstrip("/")) == prefix + "result.png"  # no trailing slash
    assert calls == ["ListObjectsV2", "ListObjectsV2"]  # one request per call


def test_find_result_on_an_empty_bucket(storage: S3Storage, bucket: str) -> None:
    assert storage.find_result(f"s3://{bucket}/") is None
    storage.put(f"s3://{bucket}/result.json", b"{}", "application/json")
    assert storage.find_result(f"s3://{bucket}/") == f"s3://{bucket}/result.json"


# ------------------------------------------------------------------ guards


def test_bucket_allowlist_refuses_reads_and_writes(storage: S3Storage, bucket: str, s3: Any) -> None:
    other = fresh_bucket(s3, "kws-foreign")
    s3.put_object(Bucket=other, Key="secret.txt", Body=b"secret")
    foreign = f"s3://{other}/secret.txt"
    calls = count_calls(storage)
    scoped = ScopedStorage(storage, f"s3://{bucket}/job/task/")
    with pytest.raises(UnsafeURIError, match="allowlist"):
        scoped.read(foreign)
    with pytest.raises(UnsafeURIError, match="allowlist"):
        storage.read(foreign)  # the backend refuses too (defence in depth)
    with pytest.raises(UnsafeURIError, match="allowlist"):
        storage.open(foreign)
    with pytest.raises(UnsafeURIError, match="allowlist"):
        storage.put(f"s3://{other}/x.txt", b"x", "text/plain")
    with pytest.raises(UnsafeURIError, match="allowlist"):
        ScopedStorage(storage, f"s3://{other}/job/task/").write("", "result.json", "{}")
    with pytest.raises(OutputPrefixViolation):
        scoped.write(f"s3://{bucket}/job/other/", "result.json", "{}")
    assert calls == []  # refused before any request


def test_local_input_refused_unless_allowed(moto_env: str, bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "input.bin"
    local.write_bytes(b"local bytes")
    uri = local.as_uri()
    strict = S3Storage(allowed_buckets=[bucket])
    with pytest.raises(UnsafeURIError, match="local input"):
        strict.read(uri)
    with pytest.raises(UnsafeURIError, match="local input"):
        strict.open(uri)
    with pytest.raises(UnsafeURIError):
        strict.put(uri, b"x", "text/plain")  # never writes to local paths
    with pytest.raises(UnsafeURIError):
        strict.check_writable_prefix(tmp_path.as_uri() + "/")

    lenient = S3Storage(allowed_buckets=[bucket], local_input_root=tmp_path)
    assert lenient.read(uri) == b"local bytes"
    with lenient.open(uri) as handle:
        assert handle.read(5) == b"local"
    with pytest.raises(ObjectNotFoundError):
        lenient.read((tmp_path / "missing.bin").as_uri())
    with pytest.raises(UnsafeURIError):
        lenient.put(uri, b"x", "text/plain")


# ------------------------------------------------------------------ environment


def test_endpoint_and_region_come_from_the_environment(
    moto_env: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = S3Storage()
    assert storage.client.meta.endpoint_url == moto_env
    assert storage.client.meta.region_name == "us-east-1"
    storage.put(f"s3://{bucket}/env.txt", b"via AWS_ENDPOINT_URL_S3", "text/plain")
    assert storage.read(f"s3://{bucket}/env.txt") == b"via AWS_ENDPOINT_URL_S3"

    # The generic variable works too, and AWS_REGION wins over AWS_DEFAULT_REGION.
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_env)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    generic = S3Storage()
    assert generic.client.meta.endpoint_url == moto_env
    assert generic.client.meta.region_name == "eu-west-1"
    assert generic.read(f"s3://{bucket}/env.txt") == b"via AWS_ENDPOINT_URL_S3"


def test_check_reports_the_bucket(storage: S3Storage, bucket: str, moto_env: str) -> None:
    info = storage.check(bucket)
    assert info["bucket"] == bucket
    assert info["endpoint"] == moto_env
    assert info["region"] == "us-east-1"


def test_one_lazily_created_client_shared_by_threads(moto_env: str, bucket: str) -> None:
    storage = S3Storage(allowed_buckets=[bucket])
    barrier = threading.Barrier(8)
    clients: list[Any] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            clients.append(storage.client)
            storage.put(f"s3://{bucket}/t/{i}.txt", str(i).encode(), "text/plain")
            assert storage.read(f"s3://{bucket}/t/{i}.txt") == str(i).encode()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len({id(c) for c in clients}) == 1


def test_unreachable_endpoint_is_backend_unavailable(moto_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{closed_port()}")
    storage = S3Storage(max_attempts=2, connect_timeout=1, read_timeout=2)
    for call in (
        lambda: storage.read("s3://bucket/key"),
        lambda: storage.open("s3://bucket/key"),
        lambda: storage.put("s3://bucket/key", b"x", "text/plain"),
        lambda: storage.find_result("s3://bucket/prefix/"),
        lambda: storage.check("bucket"),
    ):
        with pytest.raises(BackendUnavailableError, match="unavailable") as info:
            call()
        assert SECRET not in str(info.value)
        assert SECRET not in repr(info.value.__cause__)


@pytest.fixture
def no_credentials(moto_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield


def test_missing_credentials_are_a_clear_storage_error(no_credentials: None) -> None:
    storage = S3Storage(max_attempts=1)
    with pytest.raises(StorageError, match="no usable AWS credentials"):
        storage.read("s3://bucket/key")
