"""The embedded transports (``filesystem://``, ``memory://``): no server, no account.

They have no visibility timeout, so a retry holds the unacked message in-process
until its delay passes.
"""

from __future__ import annotations

import os
from typing import Any

from kombu.message import Message
from kombu.transport import filesystem
from kombu.utils.json import dumps

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.ids import random_hex
from kombu_worker_sdk.observability import tracing
from kombu_worker_sdk.transport.delivery import Delivery
from kombu_worker_sdk.transport.publish import Publisher


class EmbeddedDelivery(Delivery):
    """A message on Kombu's filesystem or memory transport."""

    def __init__(self, message: Message, publisher: Publisher, attempt: int = 1):
        super().__init__(message, attempt)
        self.publisher = publisher

    @property
    def body(self) -> bytes | str:
        body: bytes | str = self.message.body
        return body

    def retry_in(self, delay: float) -> bool:
        return False  # no visibility timeout here: the consumer holds it and re-runs it when due

    def _ack(self) -> None:
        self.message.ack()

    def _dead_letter(self, queue: str, reason: str, task_id: str | None) -> None:
        headers = {"x-error": reason, "x-task-id": task_id or "", "x-attempts": self.attempt}
        if self.traceparent:  # a redriven copy continues the trace it came with
            headers[tracing.TRACEPARENT] = self.traceparent
        self.publisher.publish_raw(queue, self.body, headers)
        self.message.ack()

    def _release(self) -> None:
        self.message.requeue()


def filesystem_options(config: WorkerConfig) -> dict[str, Any]:
    """Kombu filesystem transport options: every queue in one folder under data_dir."""
    folder = (config.data_dir / "queue").resolve()
    (folder / "control").mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(folder / "control"),
        "polling_interval": 0.05,
    }


class AtomicFilesystemChannel(filesystem.Channel):  # type: ignore[misc]
    """Writes each message under a temporary name, then renames it into the queue.

    Kombu's ``_put`` creates ``<ts>_<uuid>.<queue>.msg`` and then writes it, while a
    consumer's ``_get`` moves and reads any ``*.msg`` it lists: a consumer that wins
    that race reads half a message, fails to parse it and has already deleted it.
    A rename within one folder is atomic, so a listed file is always complete.
    """

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{int(filesystem.monotonic() * 1000)}_{random_hex()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as handle:
                handle.write(dumps(payload).encode("utf-8"))
            os.replace(partial, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc


class AtomicFilesystemTransport(filesystem.Transport):  # type: ignore[misc]
    Channel = AtomicFilesystemChannel
