"""PostgresStateStore's schema: migrations applied once (concurrently too), and state modules
that never format a value into SQL.

Run with: ``python scripts/services.py -- python -m pytest tests/integration/postgres_state``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from kombu_worker_sdk.state import open_state
from kombu_worker_sdk.state.migrations import LATEST_VERSION, MIGRATIONS
from kombu_worker_sdk.state.postgres import PostgresStateStore
from tests.integration.postgres_state.helpers import query, run_together

pytestmark = pytest.mark.integration

STATE_DIR = Path(__file__).resolve().parents[3] / "kombu_worker_sdk" / "state"
ALL_VERSIONS = [version for version, _ in MIGRATIONS]


# ---------------------------------------------------------------- migrations


def test_open_state_builds_postgres_store(dsn: str) -> None:
    state = open_state(dsn)
    try:
        assert isinstance(state, PostgresStateStore)
        assert state.upgrade() == ALL_VERSIONS
        state.ping()
    finally:
        state.close()


def test_upgrade_twice_applies_nothing_the_second_time(dsn: str) -> None:
    state = PostgresStateStore(dsn)
    try:
        assert state.upgrade() == ALL_VERSIONS
        assert state.upgrade() == []
    finally:
        state.close()
    assert query(dsn, "SELECT version FROM kw_schema_migrations ORDER BY version") == [
        (v,) for v in ALL_VERSIONS
    ]


def test_concurrent_upgrades_on_a_fresh_database_all_succeed(dsn: str) -> None:
    stores = [PostgresStateStore(dsn) for _ in range(4)]
    try:
        results = run_together(4, lambda i: stores[i].upgrade())
    finally:
        for state in stores:
            state.close()
    assert sorted(results, key=len) == [[], [], [], ALL_VERSIONS]
    rows = query(dsn, "SELECT version, count(*) FROM kw_schema_migrations GROUP BY version ORDER BY 1")
    assert rows == [(v, 1) for v in ALL_VERSIONS]
    assert max(ALL_VERSIONS) == LATEST_VERSION


# ---------------------------------------------------------------- SQL hygiene

_SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|WHERE|VALUES)\b")
_ALLOWED_IN_SQL = {
    "TASK_COLUMNS",
    "_JOB_STATUS_SQL",
    "JOB_STATUS_SQL",
    "_BARRIER_UPSERT",
    "TASK_INSERT",
    "_ROW",
}  # column lists, placeholders


def test_state_modules_never_format_values_into_sql() -> None:
    files = sorted(STATE_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"sql.py", "sqlite.py", "postgres.py"}
    for path in files:
        source = path.read_text()
        assert "% (" not in source, f"{path.name}: %-formatting"
        assert ".format(" not in source, f"{path.name}: str.format"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
                assert not (isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)), (
                    f"{path.name}:{node.lineno}: %-formatting"
                )
            if isinstance(node, ast.JoinedStr):
                literal = "".join(
                    part.value
                    for part in node.values
                    if isinstance(part, ast.Constant) and isinstance(part.value, str)
                )
                if not _SQL_WORDS.search(literal):
                    continue  # an error message, not SQL
                for part in node.values:
                    if isinstance(part, ast.FormattedValue):
                        assert isinstance(part.value, ast.Name) and part.value.id in _ALLOWED_IN_SQL, (
                            f"{path.name}:{node.lineno}: f-string SQL interpolates {ast.unparse(part.value)}"
                        )
