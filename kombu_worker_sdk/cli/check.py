"""``kombu-worker check``: can this worker reach its queues, bucket and database?

One line per backend, so a person can read it and a readiness gate can run it.
Every check is read-only.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import WorkerSDKError
from kombu_worker_sdk.masking import mask_url
from kombu_worker_sdk.state import open_state
from kombu_worker_sdk.state.migrations import LATEST_VERSION
from kombu_worker_sdk.storage import LocalStorage, open_storage


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return mask_url(f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}")


def run_checks(config: WorkerConfig) -> list[CheckResult]:
    return [_run(name, check) for name, check in _checks(config)]


def _run(name: str, check: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, check())
    except (WorkerSDKError, OSError) as exc:
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # vendor errors not yet translated still get one line
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}")


def _checks(config: WorkerConfig) -> Iterator[tuple[str, Callable[[], str]]]:
    queues = {
        "input queue": config.queue,
        "next queue": config.next_queue,
        "dead-letter queue": config.effective_dead_letter_queue if config.is_embedded_broker else None,
    }
    for label, queue in queues.items():
        if queue:
            yield f"{label} {queue}", functools.partial(_check_queue, config, queue)
    if not config.is_embedded_broker:  # DLQ_URL, else the redrive target, else <queue>-dlq
        yield "dead-letter queue", lambda: _check_dead_letters(config)
    yield f"storage {config.effective_storage_url}", lambda: _check_storage(config)
    yield f"database {config.effective_db_dsn}", lambda: _check_database(config)


def _check_queue(config: WorkerConfig, queue: str) -> str:
    if config.is_embedded_broker:
        folder = (config.data_dir / "queue").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise OSError(f"{folder} is not writable")
        return f"embedded queue folder {folder}"
    from kombu_worker_sdk.transport.sqs.options import new_client
    from kombu_worker_sdk.transport.sqs.publisher import SqsPublisher

    client = new_client(config)
    url = SqsPublisher(config, client).url_for(queue)
    attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return f"reachable, {attrs['Attributes']['ApproximateNumberOfMessages']} message(s) waiting"


def _check_dead_letters(config: WorkerConfig) -> str:
    from kombu_worker_sdk.transport.sqs.options import new_client
    from kombu_worker_sdk.transport.sqs.queues import dead_letter_queue

    url = dead_letter_queue(config, new_client(config))
    return f"{url} {_check_queue(config, url)}"


def _check_storage(config: WorkerConfig) -> str:
    storage = open_storage(config.effective_storage_url, allowed_buckets=config.allowed_buckets)
    if isinstance(storage, LocalStorage):
        if not os.access(storage.root, os.W_OK):
            raise OSError(f"{storage.root} is not writable")
        return f"local folder {storage.root}"
    buckets = [b for b in [config.bucket, *config.allowed_buckets] if b]
    if not buckets:
        return "no bucket configured (BUCKET or allowed_buckets); nothing to check"
    check = storage.check  # type: ignore[attr-defined]
    return "; ".join(f"bucket {check(b)['bucket']} reachable" for b in dict.fromkeys(buckets))


def _check_database(config: WorkerConfig) -> str:
    state = open_state(config.effective_db_dsn)
    try:
        state.ping()
        version = state.schema_version()
    finally:
        state.close()
    if version < LATEST_VERSION:
        raise WorkerSDKError(
            f"schema at version {version}, {LATEST_VERSION} needed: run kombu-worker db upgrade"
        )
    return f"reachable, schema version {version}"
