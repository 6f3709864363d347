"""No SQL in the package needs a session: it must run through PgBouncer in transaction mode.

In ``pool_mode = transaction`` (PgBouncer, RDS Proxy) each transaction may run on a different
server connection, so session state silently leaks or vanishes: ``SET`` without ``LOCAL``,
``LISTEN``, ``PREPARE``, session advisory locks, ``WITH HOLD`` cursors, temporary tables kept
across transactions, and psycopg2's named (server-side) cursors and ``set_session``. See
PgBouncer's feature table (https://www.pgbouncer.org/features.html).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "kombu_worker_sdk"

# Statements are upper case by the package's convention, so prose ("set in code") does not match.
SESSION_SQL = re.compile(
    r"^\s*SET\s+(?!LOCAL\b)|^\s*(RESET|DISCARD|LISTEN|UNLISTEN|PREPARE|DEALLOCATE|LOAD)\s|"
    r"\bpg_(try_)?advisory_lock(_shared)?\s*\(|\bWITH\s+HOLD\b|\bTEMP(ORARY)?\s+TABLE\b"
)


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_the_pattern_catches_each_session_feature() -> None:
    for bad in (
        "SET statement_timeout = 5",
        "LISTEN jobs",
        "PREPARE q AS SELECT 1",
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_try_advisory_lock(1)",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "CREATE TEMP TABLE t (x int)",
    ):
        assert SESSION_SQL.search(bad), bad
    for good in ("SET LOCAL lock_timeout = '1s'", "SELECT pg_advisory_xact_lock(1)", "UPDATE t SET x = 1"):
        assert not SESSION_SQL.search(good), good


def test_no_module_uses_session_state() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        offenders += [
            f"{path.name}:{line}: {text[:60]!r}" for line, text in _strings(tree) if SESSION_SQL.search(text)
        ]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                named_cursor = node.func.attr == "cursor" and (
                    node.args or any(k.arg == "name" for k in node.keywords)
                )
                if named_cursor or node.func.attr == "set_session":
                    offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:60]}")
    assert offenders == []
