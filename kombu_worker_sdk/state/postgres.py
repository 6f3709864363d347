"""PostgreSQL state: the production store, shared by every worker pod.

All SQL lives in :mod:`.sql`; this module owns connections and the dialect:

* a ``psycopg2`` :class:`~psycopg2.pool.ThreadedConnectionPool`, created on
  first use with one connection and growing to ``maxconn``. Idle connections
  are kept up to ``maxconn`` (psycopg2 would close every connection above
  ``minconn`` on return, reconnecting on nearly every transaction of a busy
  worker), and a caller waits for a free connection instead of getting
  psycopg2's "pool exhausted" error;
* ``SELECT ... FOR UPDATE`` as the row lock of the claim's read-check-update;
* ``upgrade()`` in one transaction holding a transaction-scoped advisory lock,
  so pods starting together migrate once: the others wait, then find every
  version applied.

Recovery: a connection that fails with OperationalError/InterfaceError is
closed, not returned to the pool. When the failure shows the server connection
itself was lost (a restart, a failover), every idle connection opened before it
is discarded as well, so the first transaction after the server returns works.

Errors: connection problems (and transient conflicts such as deadlocks, which
psycopg2 also reports as OperationalError) become BackendUnavailableError, any
other database error StateError. The DSN's password never appears in a message.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg2
import psycopg2.extensions
import psycopg2.pool

from kombu_worker_sdk.errors import BackendUnavailableError, ConfigError, StateError
from kombu_worker_sdk.masking import mask_url
from kombu_worker_sdk.state.dbapi import Cursor
from kombu_worker_sdk.state.sql import SqlStateStore

#: Key of the transaction-scoped advisory lock that serialises ``upgrade()`` ("kwmigr").
MIGRATION_LOCK_ID = 0x6B77_6D69_6772
DEFAULT_MAXCONN = 8
#: How long a transaction waits for a free pooled connection before giving up.
POOL_WAIT_SECONDS = 30.0
_DEFAULTS = {"connect_timeout": "5", "application_name": "kombu-worker", "keepalives_idle": "30"}
_STATUS_UNKNOWN = psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN


mask_dsn = mask_url  # URL-style and key=value DSNs alike


class _Connection(psycopg2.extensions.connection):
    """A connection that remembers when it was opened, to spot ones older than an outage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened_at = time.monotonic()


class _Pool(psycopg2.pool.ThreadedConnectionPool):
    """Opens ``minconn`` connections at once but keeps up to ``maxconn`` idle ones warm."""

    def __init__(self, minconn: int, maxconn: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(minconn, maxconn, *args, **kwargs)
        self.minconn = maxconn  # psycopg2 closes returned connections beyond ``minconn``


class PostgresStateStore(SqlStateStore):
    """The SQL state machine on PostgreSQL (tested on 15), through a thread-safe pool."""

    lock_suffix = " FOR UPDATE"
    writable_ctes = True  # a fan-in arrival and its job's counters in one statement

    def __init__(self, dsn: str, *, maxconn: int = DEFAULT_MAXCONN, minconn: int = 1) -> None:
        if maxconn < 1 or not 0 <= minconn <= maxconn:
            raise ConfigError(f"PostgreSQL pool: need 0 <= minconn ({minconn}) <= maxconn ({maxconn})")
        try:
            params = psycopg2.extensions.parse_dsn(dsn)
        except psycopg2.Error:
            raise ConfigError(f"db_dsn {mask_dsn(dsn)!r} is not a valid PostgreSQL DSN") from None
        self._dsn = dsn
        self._connect_kwargs: dict[str, Any] = {k: v for k, v in _DEFAULTS.items() if k not in params}
        self._connect_kwargs["connection_factory"] = _Connection
        self.where = (
            f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params.get('dbname')}"
        )
        self.minconn = minconn
        self.maxconn = maxconn
        self._pool: _Pool | None = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(maxconn)
        self._lost_at = 0.0  # monotonic time the server connection was last seen lost

    def __repr__(self) -> str:
        return f"PostgresStateStore({mask_dsn(self._dsn)!r}, maxconn={self.maxconn})"

    # -- connections ----------------------------------------------------
    def _get_pool(self) -> _Pool:
        with self._lock:
            if self._pool is None:
                try:
                    self._pool = _Pool(self.minconn, self.maxconn, self._dsn, **self._connect_kwargs)
                except psycopg2.Error as exc:
                    raise self._unavailable(exc) from exc
            return self._pool

    def _checkout(self) -> tuple[_Pool, _Connection]:
        pool = self._get_pool()
        while True:
            try:
                conn = cast(_Connection, pool.getconn())
            except psycopg2.pool.PoolError as exc:  # closed by close() meanwhile
                raise StateError(f"PostgreSQL state at {self.where}: {exc}") from exc
            except psycopg2.Error as exc:
                raise self._unavailable(exc) from exc
            if not conn.closed and conn.opened_at > self._lost_at:
                return pool, conn
            self._checkin(pool, conn, discard=True)  # stale: opened before an outage

    @staticmethod
    def _checkin(pool: _Pool, conn: _Connection, *, discard: bool) -> None:
        try:
            pool.putconn(conn, close=discard or bool(conn.closed))
        except psycopg2.Error:  # the pool was closed meanwhile, or the connection is gone
            with contextlib.suppress(psycopg2.Error):
                conn.close()

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        if not self._slots.acquire(timeout=POOL_WAIT_SECONDS):
            raise BackendUnavailableError(
                f"PostgreSQL state at {self.where}: all {self.maxconn} pooled connections stayed "
                f"busy for {POOL_WAIT_SECONDS:.0f}s"
            )
        try:
            pool, conn = self._checkout()
            discard = True
            try:
                with conn.cursor() as cur:
                    yield cast(Cursor, cur)
                conn.commit()
                discard = False
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self._rollback(conn)
                if (
                    conn.closed
                    or conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN
                ):
                    self._lost_at = time.monotonic()  # the server went away: flush older connections
                raise self._unavailable(exc) from exc
            except psycopg2.Error as exc:
                discard = not self._rollback(conn)
                raise StateError(f"PostgreSQL state error: {_describe(exc)}") from exc
            except BaseException:
                discard = not self._rollback(conn)
                raise
            finally:
                self._checkin(pool, conn, discard=discard)
        finally:
            self._slots.release()

    @staticmethod
    def _rollback(conn: _Connection) -> bool:
        """Roll back; False when the connection is unusable (closed or rollback failed)."""
        if conn.closed:
            return False
        try:
            conn.rollback()
        except psycopg2.Error:
            return False
        return True

    def _unavailable(self, exc: psycopg2.Error) -> BackendUnavailableError:
        return BackendUnavailableError(f"PostgreSQL state at {self.where} is unavailable: {_describe(exc)}")

    # -- StateStore -----------------------------------------------------
    def upgrade(self) -> list[int]:
        """Apply missing migrations in one transaction under an advisory lock (safe to race)."""
        with self._tx() as cur:
            self._run(cur, "SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
            return self._apply_migrations(cur)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and not pool.closed:
            pool.closeall()


def _describe(exc: psycopg2.Error) -> str:
    """The server's message (first line) with its SQLSTATE; passwords masked."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    code = f" [{exc.pgcode}]" if getattr(exc, "pgcode", None) else ""
    return mask_dsn(f"{type(exc).__name__}: {text}{code}")
