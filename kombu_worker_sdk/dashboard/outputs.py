"""A task's outputs as links: local files through the server, S3 objects by presigned URL.

Only objects under the configured storage root are ever served: an ``s3://`` URI maps to
``ROOT/bucket/key`` and the resolved path (symlinks followed) must stay under ROOT.
S3 objects are never proxied: the page gets a GET URL that expires in minutes, made
only when the page is rendered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import StorageError, UnsafeURIError, WorkerSDKError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
PRESIGN_SECONDS = 300
MAX_LISTED = 200


@dataclass(frozen=True)
class OutputLink:
    name: str  # relative to the task's output prefix
    uri: str
    href: str

    @property
    def is_image(self) -> bool:
        return self.name.lower().endswith(IMAGE_SUFFIXES)


class Outputs:
    """Lists a prefix and makes links, for file:// or s3:// storage."""

    def __init__(self, config: WorkerConfig):
        url = config.effective_storage_url
        self.scheme = urlsplit(url).scheme
        self.root = Path(unquote(urlsplit(url).path)).resolve() if self.scheme == "file" else None
        self._s3: Any = None

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            from kombu_worker_sdk.storage.s3 import S3Storage

            self._s3 = S3Storage().client
        return self._s3

    def list_prefix(self, prefix: str | None) -> list[OutputLink]:
        if not prefix or not prefix.startswith("s3://"):
            return []
        try:
            if self.root is not None:
                return self._list_local(prefix)
            if self.scheme == "s3":
                return self._list_s3(prefix)
        except (OSError, WorkerSDKError):
            return []
        return []

    def local_path(self, uri: str) -> Path:
        """The file behind ``uri``, refused unless it is a file under the storage root."""
        if self.root is None:
            raise UnsafeURIError("local files are served only with file:// storage")
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise UnsafeURIError(f"not a stored object: {uri[:120]!r}")
        path = (self.root / parts.netloc / unquote(parts.path).lstrip("/")).resolve()
        if self.root not in path.parents or not path.is_file():
            raise UnsafeURIError(f"{uri[:120]!r} is not a file under the storage root")
        return path

    def _list_local(self, prefix: str) -> list[OutputLink]:
        folder = self.local_path_of_folder(prefix)
        links = []
        for dirpath, _dirs, files in os.walk(folder):
            for name in sorted(files):
                if name.startswith(".tmp-"):
                    continue
                relative = (Path(dirpath) / name).relative_to(folder).as_posix()
                uri = prefix.rstrip("/") + "/" + relative
                links.append(OutputLink(relative, uri, "/files?uri=" + quote(uri, safe="")))
                if len(links) >= MAX_LISTED:
                    return sorted(links, key=lambda link: link.name)
        return sorted(links, key=lambda link: link.name)

    def local_path_of_folder(self, prefix: str) -> Path:
        assert self.root is not None
        parts = urlsplit(prefix)
        folder = (self.root / parts.netloc / unquote(parts.path).lstrip("/")).resolve()
        if folder != self.root and self.root not in folder.parents:
            raise UnsafeURIError(f"{prefix[:120]!r} resolves outside the storage root")
        return folder

    def _list_s3(self, prefix: str) -> list[OutputLink]:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, key = prefix[len("s3://") :].partition("/")
        key = key if key.endswith("/") else key + "/"
        try:
            found = self.s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=MAX_LISTED)
            links = []
            for item in found.get("Contents", []):
                href = self.s3.generate_presigned_url(
                    "get_object", Params={"Bucket": bucket, "Key": item["Key"]}, ExpiresIn=PRESIGN_SECONDS
                )
                links.append(OutputLink(item["Key"][len(key) :], f"s3://{bucket}/{item['Key']}", href))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot list {prefix}: {type(exc).__name__}") from exc
        return sorted(links, key=lambda link: link.name)

    def image_sources(self) -> str:
        """The CSP img-src origin of presigned URLs (none with local storage)."""
        if self.scheme != "s3":
            return ""
        try:
            url = self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=1
            )
        except Exception:  # no credentials yet: pages still render, images will not
            return ""
        parts = urlsplit(url)
        if parts.netloc.startswith("b."):  # virtual-hosted style: every bucket is a subdomain
            return f"{parts.scheme}://*.{parts.netloc[2:]}"
        return f"{parts.scheme}://{parts.netloc}"
