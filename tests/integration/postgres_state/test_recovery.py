"""PostgresStateStore's connections: a bounded pool, errors by name, a PostgreSQL restart survived.

Run with: ``python scripts/services.py -- python -m pytest tests/integration/postgres_state``.
"""

from __future__ import annotations

import time
import urllib.parse

import psycopg2
import pytest

from kombu_worker_sdk.errors import BackendUnavailableError, ConfigError, StateError
from kombu_worker_sdk.state import TaskStatus
from kombu_worker_sdk.state.postgres import PostgresStateStore
from tests.integration.postgres_state.helpers import query, run_together, task
from tests.servers import connect, start_postgres, stop_postgres

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- pool and recovery


def test_more_threads_than_connections_wait_for_a_free_one(dsn: str) -> None:
    state = PostgresStateStore(dsn, maxconn=2)
    state.upgrade()
    try:
        run_together(24, lambda i: state.register(task(f"t{i}", job_id=f"j{i}")))
        assert len(query(dsn, "SELECT task_id FROM kw_tasks")) == 24
        backends = query(
            dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'kombu-worker'",
        )
        assert backends[0][0] <= 2
    finally:
        state.close()


def test_database_errors_are_state_errors(store: PostgresStateStore, dsn: str) -> None:
    with pytest.raises(StateError) as info, store._tx() as cur:
        cur.execute("SELECT no_such_column FROM kw_tasks")
    assert not isinstance(info.value, BackendUnavailableError)
    assert "UndefinedColumn" in str(info.value)
    store.ping()  # the connection went back to the pool usable


def test_bad_dsn_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        PostgresStateStore("host=x password=hunter2 = broken")
    assert "hunter2" not in str(info.value)


def test_survives_a_postgresql_restart(dsn: str) -> None:
    parts = urllib.parse.urlsplit(dsn)
    secret = "sentinel-pw-do-not-print"  # trust auth ignores it; it must never be printed
    with_password = urllib.parse.urlunsplit(
        parts._replace(netloc=f"{parts.username}:{secret}@{parts.hostname}:{parts.port}")
    )
    state = PostgresStateStore(with_password, maxconn=4)
    try:
        state.upgrade()
        state.register(task("before"))
        run_together(4, lambda i: state.get_task("before"))  # several pooled connections, now idle
        assert secret not in repr(state)
        try:
            stop_postgres()
            for call in (
                state.ping,
                lambda: state.get_task("before"),
                lambda: state.register(task("during")),
            ):
                with pytest.raises(BackendUnavailableError) as info:
                    call()
                assert secret not in str(info.value)
                assert secret not in str(info.value.__cause__)
        finally:
            start_postgres()
        wait_until_answers(dsn)  # a pooler retries its server login on its own schedule
        # The same store works at once: no stale pooled connection fails the first call.
        record = state.get_task("before")
        assert record is not None and record.status is TaskStatus.PENDING
        assert state.register(task("after")) is True
        run_together(4, lambda i: state.ping())
    finally:
        state.close()


def wait_until_answers(dsn: str, timeout: float = 30.0) -> None:
    """Poll with fresh connections until ``SELECT 1`` works (PgBouncer backs off after an outage)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = connect(dsn)
        except psycopg2.OperationalError:
            conn = None
        if conn is not None:
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                return
            except psycopg2.OperationalError:
                pass
            finally:
                conn.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dsn} did not answer within {timeout}s")
        time.sleep(0.1)
