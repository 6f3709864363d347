"""SQLite state: the embedded default. Safe across threads and processes.

Each thread gets its own connection (sqlite3 connections must not be shared
across threads). Writers take ``BEGIN IMMEDIATE``, so the read-check-update of
a claim is serialised across every process sharing the file: two workers can
never both claim one task. WAL mode lets readers run alongside the writer.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kombu_worker_sdk.errors import BackendUnavailableError, StateError
from kombu_worker_sdk.state.dbapi import Cursor
from kombu_worker_sdk.state.sql import SqlStateStore

BUSY_TIMEOUT_SECONDS = 30.0


class SqliteStateStore(SqlStateStore):
    placeholder = "?"

    def __init__(self, path: str | Path, *, read_only: bool = False):
        """``read_only`` opens an existing file as is (for ``status``): it creates nothing."""
        self.path = str(path)
        self.read_only = read_only
        if read_only and not Path(self.path).is_file():
            raise StateError(f"no SQLite state database at {self.path}")
        if self.path != ":memory:" and not read_only:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BackendUnavailableError(f"SQLite state folder for {self.path}: {exc}") from None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # One writer at a time within the process, queued on a lock that wakes the next at
        # once: contending on the file lock instead puts a thread in SQLite's busy handler,
        # which sleeps (1, 2, 5 ms ...) between retries. Other processes still meet
        # BEGIN IMMEDIATE.
        self._writer = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                f"{Path(self.path).resolve().as_uri()}?mode=ro" if self.read_only else self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
                uri=self.read_only,
            )
            if not self.read_only:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        if self.read_only:
            with self._transaction() as cur:
                yield cur
            return
        with self._writer, self._transaction() as cur:
            yield cur

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        conn = self._connection()
        try:
            cur = conn.cursor()
            # IMMEDIATE takes the write lock up front; a read-only connection cannot.
            cur.execute("BEGIN" if self.read_only else "BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise BackendUnavailableError(f"SQLite state at {self.path} is unavailable: {exc}") from exc
        try:
            yield cur
        except sqlite3.Error as exc:
            conn.rollback()
            raise StateError(f"SQLite state error: {exc}") from exc
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()

    def upgrade(self) -> list[int]:
        with self._tx() as cur:
            return self._apply_migrations(cur)

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
