"""Acks as DeleteMessageBatch calls: up to 10 receipt handles a request.

SQS bills per request. Deleting each message on its own costs one request per
message; batching acks that finish close together cuts that by up to ten times. An
ack waits at most ``max_delay`` seconds. A delete that fails only makes SQS
redeliver the message later, which the idempotency stage turns into a skip.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from kombu_worker_sdk.logs import get_logger

BATCH = 10
log = get_logger(__name__)


class AckBatcher:
    """Collects (queue URL, receipt handle) pairs and deletes them in batches from one thread."""

    def __init__(self, client: Any, *, max_delay: float = 0.5):
        self.client = client
        self.max_delay = max_delay
        self.requests = 0
        self._pending: dict[str, list[str]] = defaultdict(list)
        self._oldest: float | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="kombu-worker-acks", daemon=True)
        self._thread.start()

    def add(self, queue_url: str, receipt_handle: str) -> None:
        with self._cond:
            self._pending[queue_url].append(receipt_handle)
            if self._oldest is None:
                self._oldest = time.monotonic()
            self._cond.notify()

    def close(self) -> None:
        """Delete everything still pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(10)
        self._flush(self._take_all())

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._due():
                    timeout = (
                        None if self._oldest is None else self._oldest + self.max_delay - time.monotonic()
                    )
                    self._cond.wait(timeout)
                if self._closed:
                    return
                work = self._take_all()
            self._flush(work)

    def _due(self) -> bool:
        if self._oldest is None:
            return False
        full = any(len(handles) >= BATCH for handles in self._pending.values())
        return full or time.monotonic() - self._oldest >= self.max_delay

    def _take_all(self) -> dict[str, list[str]]:
        work, self._pending = dict(self._pending), defaultdict(list)
        self._oldest = None
        return work

    def _flush(self, work: dict[str, list[str]]) -> None:
        for url, handles in work.items():
            for start in range(0, len(handles), BATCH):
                self._delete(url, handles[start : start + BATCH])

    def _delete(self, url: str, handles: list[str]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
        try:
            self.requests += 1
            response = self.client.delete_message_batch(QueueUrl=url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            log.warning(
                "DeleteMessageBatch of %d message(s) failed (%s); SQS will redeliver them and "
                "they will be skipped as done",
                len(handles),
                type(exc).__name__,
            )
            return
        for failure in response.get("Failed", []):
            log.warning(
                "could not delete a message (%s); it will be skipped as done when redelivered",
                failure.get("Code"),
            )
