"""Amazon S3 (or any S3-compatible store) through boto3.

The client honours the standard AWS environment, so the same worker runs on a
laptop, in CI against moto and on EKS with IRSA without SDK settings:

* region: ``AWS_REGION``, else ``AWS_DEFAULT_REGION`` / the shared config file;
* credentials: boto3's usual chain (environment, web identity/IRSA, profile, IMDS);
* endpoint: ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL`` (read by botocore
  itself); when one is set, path-style addressing is used, which every
  S3-compatible server (moto, MinIO, Ceph) understands.

Keys are taken literally from the URI (``s3://bucket/a%20b`` is the key
``a%20b``), as the AWS CLI does. One client is created lazily and shared by all
threads (boto3 clients are thread-safe; creating them is not, hence the lock).

Every vendor error is translated into the SDK's tree: a missing object is
:class:`ObjectNotFoundError`, an unreachable, throttling or failing endpoint is
:class:`BackendUnavailableError` (retried without counting as a failed attempt),
anything else (access denied, missing bucket, no credentials) is
:class:`StorageError`. Messages never carry credentials.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import boto3
from botocore import exceptions as bex
from botocore.config import Config

from kombu_worker_sdk.errors import (
    BackendUnavailableError,
    ObjectNotFoundError,
    StorageError,
    UnsafeURIError,
    WorkerSDKError,
)
from kombu_worker_sdk.masking import mask_url
from kombu_worker_sdk.storage.base import RESULT_STEM, Storage, is_local_uri, open_local

ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
STREAM_BUFFER_BYTES = 256 * 1024

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
        "500",
        "502",
        "503",
        "504",
    }
)
# Connection-level failures: the endpoint did not answer (after botocore's retries).
_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    bex.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ...
    bex.ReadTimeoutError,
    bex.HTTPClientError,
    bex.ResponseStreamingError,
    bex.IncompleteReadError,
    bex.CredentialRetrievalError,  # IMDS/STS (IRSA) did not hand out credentials this time
)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; the key is kept literally (may be empty)."""
    if not uri.startswith("s3://"):
        raise UnsafeURIError(f"not an s3:// URI: {uri[:120]!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise UnsafeURIError(f"no bucket in {uri[:120]!r}")
    return bucket, key


def configured_endpoint() -> str | None:
    """The S3 endpoint from the environment (service-specific first), or None for AWS."""
    for name in ENDPOINT_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


class S3Storage(Storage):
    """Objects in S3 buckets, addressed as ``s3://bucket/key``.

    ``client`` may be given (tests, custom sessions); otherwise one is built on
    first use from the environment. ``endpoint_url``/``region_name`` override
    the environment; ``addressing_style`` defaults to ``"path"`` with a custom
    endpoint and ``"auto"`` on AWS.
    """

    def __init__(
        self,
        allowed_buckets: Iterable[str] = (),
        *,
        local_input_root: str | Path | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        addressing_style: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 5,
        max_pool_connections: int = 64,
        client: Any = None,
    ) -> None:
        super().__init__(allowed_buckets, local_input_root=local_input_root)
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.addressing_style = addressing_style
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts
        self.max_pool_connections = max_pool_connections
        self._client: Any = client
        self._lock = threading.Lock()

    # -- client ---------------------------------------------------------
    @property
    def client(self) -> Any:
        """The shared boto3 S3 client, created on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        endpoint = self.endpoint_url or configured_endpoint()
        style = self.addressing_style or ("path" if endpoint else "auto")
        config = Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"mode": "standard", "max_attempts": self.max_attempts},
            max_pool_connections=self.max_pool_connections,
            s3={"addressing_style": style},
        )
        region = self.region_name or os.environ.get("AWS_REGION") or None  # botocore reads only the DEFAULT
        session = boto3.session.Session()  # a private session: the default one is not thread-safe
        try:
            # endpoint_url=None lets botocore apply AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL itself.
            return session.client("s3", region_name=region, endpoint_url=self.endpoint_url, config=config)
        except (bex.BotoCoreError, ValueError) as exc:
            raise StorageError(f"cannot create the S3 client: {mask_url(str(exc))}") from exc

    # -- reads ----------------------------------------------------------
    def read(self, uri: str) -> bytes:
        if is_local_uri(uri):  # a message's file:// input: only under local_input_root
            with open_local(self.local_input_path(uri), uri) as handle:
                return handle.read()
        self.check_readable(uri)  # defence in depth: ScopedStorage checks too
        body = self._get_body(uri)
        try:
            data: bytes = body.read()
        except Exception as exc:
            _raise_translated(exc, "read", uri)
        finally:
            body.close()
        return data

    def open(self, uri: str) -> BinaryIO:
        """A buffered stream over the GetObject body: the object is never held whole."""
        if is_local_uri(uri):
            return open_local(self.local_input_path(uri), uri)
        self.check_readable(uri)
        raw = _BodyReader(self._get_body(uri), uri)
        return io.BufferedReader(raw, buffer_size=STREAM_BUFFER_BYTES)

    def _get_body(self, uri: str) -> Any:
        bucket, key = split_s3_uri(uri)
        if not key:
            raise ObjectNotFoundError(f"no object at {uri[:300]} (the URI names a bucket, not an object)")
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as exc:
            _raise_translated(exc, "read", uri)

    def find_result(self, output_prefix: str) -> str | None:
        """One ListObjectsV2 (MaxKeys=1) for ``result.*`` under the prefix."""
        bucket, key_prefix = split_s3_uri(output_prefix)
        if key_prefix and not key_prefix.endswith("/"):
            key_prefix += "/"
        try:
            response = self.client.list_objects_v2(
                Bucket=bucket, Prefix=key_prefix + RESULT_STEM + ".", MaxKeys=1
            )
        except Exception as exc:
            _raise_translated(exc, "list", output_prefix)
        contents = response.get("Contents") or []
        return f"s3://{bucket}/{contents[0]['Key']}" if contents else None

    # -- writes ---------------------------------------------------------
    def put(self, uri: str, data: bytes, content_type: str) -> None:
        bucket, key = split_s3_uri(uri)  # refuses file:// and every other scheme
        self.check_bucket(uri)
        if not key or key.endswith("/"):
            raise UnsafeURIError(f"cannot write to {uri[:120]!r}: no object key")
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        except Exception as exc:
            _raise_translated(exc, "write", uri)

    def check_writable_prefix(self, output_prefix: str) -> None:
        """Only ``s3://`` prefixes in an allowed bucket are writable on this backend."""
        split_s3_uri(output_prefix)
        super().check_writable_prefix(output_prefix)

    # -- health ---------------------------------------------------------
    def check(self, bucket: str) -> dict[str, Any]:
        """HeadBucket: proves the endpoint answers, credentials work and the bucket exists.

        For ``kombu-worker check``. Read-only (no probe object is written), so it
        is safe against production buckets; it does not prove write permission.
        Returns ``{"bucket", "region", "endpoint"}``; raises BackendUnavailableError
        or StorageError (bucket missing, access denied, no credentials).
        """
        try:
            response = self.client.head_bucket(Bucket=bucket)
        except Exception as exc:
            _raise_translated(exc, "check", f"s3://{bucket}")
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return {
            "bucket": bucket,
            "region": headers.get("x-amz-bucket-region") or self.client.meta.region_name,
            "endpoint": mask_url(self.client.meta.endpoint_url),
        }

    ping = check


class _BodyReader(io.RawIOBase):
    """A botocore StreamingBody as a raw stream; errors while streaming are translated."""

    def __init__(self, body: Any, uri: str) -> None:
        super().__init__()
        self._body = body
        self._uri = uri

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            chunk: bytes = self._body.read(len(view))
        except Exception as exc:
            _raise_translated(exc, "read", self._uri)
        view[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            try:
                self._body.close()
            finally:
                super().close()


def _raise_translated(exc: Exception, action: str, uri: str) -> NoReturn:
    if isinstance(exc, WorkerSDKError):
        raise exc
    raise translate_error(exc, action, uri) from exc


def translate_error(exc: Exception, action: str, uri: str) -> WorkerSDKError:
    """The SDK error for a boto3/botocore exception raised while ``action``-ing ``uri``."""
    where = f"S3 {action} {uri[:300]}"
    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "")
        missing = code in _NOT_FOUND_CODES or (status == "404" and not code)
        if code in _MISSING_BUCKET_CODES or (missing and action == "check"):
            return StorageError(f"{where}: the bucket does not exist")
        if missing:
            return ObjectNotFoundError(f"no object at {uri[:300]}")
        if code in _DENIED_CODES or status == "403":
            return StorageError(
                f"{where}: access denied ({code or status}); check the worker's IAM role/bucket policy"
            )
        if code in _TRANSIENT_CODES or status.startswith("5"):
            return BackendUnavailableError(f"{where}: S3 is unavailable ({code or status})")
        return StorageError(f"{where} failed: {code or status or type(exc).__name__}")
    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return StorageError(f"{where}: no usable AWS credentials ({type(exc).__name__})")
    if isinstance(exc, _UNAVAILABLE_ERRORS):
        return BackendUnavailableError(f"{where}: S3 endpoint unavailable: {mask_url(str(exc))}")
    if isinstance(exc, bex.BotoCoreError):
        return StorageError(f"{where} failed: {type(exc).__name__}: {mask_url(str(exc))}")
    if isinstance(exc, OSError):  # urllib3/socket errors that escaped botocore while streaming
        return BackendUnavailableError(f"{where}: connection failed: {type(exc).__name__}")
    return StorageError(f"{where} failed: {type(exc).__name__}")
