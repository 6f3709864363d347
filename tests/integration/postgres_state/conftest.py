"""Fixtures for the PostgresStateStore tests: a fresh database per test, and a store on it.

Run with: ``python scripts/services.py -- python -m pytest tests/integration/postgres_state``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kombu_worker_sdk.state.postgres import PostgresStateStore
from tests.servers import fresh_database, require_postgres


@pytest.fixture
def dsn() -> str:
    require_postgres()
    return fresh_database()


@pytest.fixture
def store(dsn: str) -> Iterator[PostgresStateStore]:
    state = PostgresStateStore(dsn)
    state.upgrade()
    yield state
    state.close()
