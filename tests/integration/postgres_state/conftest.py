"""Fixtures for the PostgresStateStore tests: a fresh database per test, and a store on it.

Every test runs twice: ``direct`` to the cluster, and ``pgbouncer`` through a real PgBouncer in
``pool_mode = transaction`` (as fleets run it), where anything that needs a session state --
``SET``, ``LISTEN``, session advisory locks, prepared statements -- would break.

Run with: ``python scripts/services.py -- python -m pytest tests/integration/postgres_state``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kombu_worker_sdk.state.postgres import PostgresStateStore
from tests.servers import fresh_database, require_postgres, through_pgbouncer


@pytest.fixture(params=["direct", "pgbouncer"])
def dsn(request: pytest.FixtureRequest) -> str:
    require_postgres()
    direct = fresh_database()
    return direct if request.param == "direct" else through_pgbouncer(direct)


@pytest.fixture
def store(dsn: str) -> Iterator[PostgresStateStore]:
    state = PostgresStateStore(dsn)
    state.upgrade()
    yield state
    state.close()
