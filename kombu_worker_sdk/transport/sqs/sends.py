"""Packing children from concurrent messages into shared SendMessageBatch calls.

With ``--concurrency N``, N messages finish close together and each publishes
its own children. Sending each set alone costs a request per parent; waiting a
few milliseconds lets them share batches of 10. Each caller still blocks until
its own entries are sent (or raises), so commit → publish → ack keeps its order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SendBatch = Callable[[str, list[dict[str, Any]]], None]
BATCH = 10


@dataclass
class _Ticket:
    url: str
    entries: list[dict[str, Any]]
    queued_at: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class CoalescingSender:
    """Sends the entries of many callers in as few batches as a short window allows."""

    def __init__(self, send_batch: SendBatch, *, window: float = 0.02):
        self.send_batch = send_batch
        self.window = window
        self._queue: list[_Ticket] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="kombu-worker-sends", daemon=True)
        self._thread.start()

    def send(self, url: str, entries: list[dict[str, Any]]) -> None:
        ticket = _Ticket(url, entries)
        with self._cond:
            self._queue.append(ticket)
            self._cond.notify()
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    timeout = (
                        None if not self._queue else self._queue[0].queued_at + self.window - time.monotonic()
                    )
                    self._cond.wait(timeout)
                tickets, self._queue = self._queue, []
            self._flush(tickets)

    def _due(self) -> bool:
        if not self._queue:
            return False
        waiting = sum(len(t.entries) for t in self._queue)
        return waiting >= BATCH or time.monotonic() - self._queue[0].queued_at >= self.window

    def _flush(self, tickets: list[_Ticket]) -> None:
        by_url: dict[str, list[_Ticket]] = {}
        for ticket in tickets:
            by_url.setdefault(ticket.url, []).append(ticket)
        for url, group in by_url.items():
            self._send_group(url, group)

    def _send_group(self, url: str, tickets: list[_Ticket]) -> None:
        """Pack whole tickets into batches of ≤10 entries; a failed batch fails its tickets."""
        batch: list[_Ticket] = []
        for ticket in tickets:
            if batch and sum(len(t.entries) for t in batch) + len(ticket.entries) > BATCH:
                self._send_tickets(url, batch)
                batch = []
            batch.append(ticket)
        if batch:
            self._send_tickets(url, batch)

    def _send_tickets(self, url: str, tickets: list[_Ticket]) -> None:
        entries = [{**entry, "Id": str(i)} for i, entry in enumerate(e for t in tickets for e in t.entries)]
        try:
            self.send_batch(url, entries)
        except BaseException as exc:
            for ticket in tickets:
                ticket.error = exc
        for ticket in tickets:
            ticket.done.set()
