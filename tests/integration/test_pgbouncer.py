"""The SDK through a real PgBouncer in ``pool_mode = transaction``, as a fleet runs it.

The state-store suite (tests/integration/postgres_state) runs through PgBouncer as well; this
module proves the pooler really multiplexes, and runs one whole worker pipeline through it.

Run with: ``python scripts/services.py -- python -m pytest tests/integration/test_pgbouncer.py``.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import pytest

from kombu_worker_sdk.state.postgres import PostgresStateStore
from tests.integration.postgres_state.helpers import query, run_together, task
from tests.integration.stack import Stack
from tests.integration.test_sqs_pipeline import (
    test_three_step_pipeline_with_fan_out_and_fan_in_ends_done as _three_step_pipeline,
)
from tests.servers import connect, fresh_database, require_pgbouncer, through_pgbouncer

pytestmark = pytest.mark.integration


def _backends(direct: str) -> int:
    database = urllib.parse.urlsplit(direct).path.lstrip("/")
    rows = query(
        direct,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    )
    return int(rows[0][0])


def test_the_pooler_runs_in_transaction_mode() -> None:
    admin = urllib.parse.urlsplit(require_pgbouncer())._replace(path="/pgbouncer").geturl()
    conn = connect(admin)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW CONFIG")
            config = {row[0]: row[1] for row in cur.fetchall()}
    finally:
        conn.close()
    assert config["pool_mode"] == "transaction"


def test_many_clients_share_one_server_connection_between_transactions() -> None:
    direct = fresh_database()
    clients = [connect(through_pgbouncer(direct)) for _ in range(12)]
    try:
        for conn in clients:  # one after the other: each transaction returns its server connection
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        assert _backends(direct) == 1  # 12 open clients, one server connection
    finally:
        for conn in clients:
            conn.close()


def test_stores_of_many_pods_stay_within_the_pool() -> None:
    direct = fresh_database()
    pods = [PostgresStateStore(through_pgbouncer(direct), maxconn=4) for _ in range(6)]
    try:
        pods[0].upgrade()
        run_together(24, lambda i: pods[i % 6].register(task(f"t{i}", job_id=f"j{i}")))
        assert len(query(direct, "SELECT task_id FROM kw_tasks")) == 24
        # 6 pods x 4 client connections; PgBouncer's default_pool_size (20) bounds the servers.
        assert _backends(direct) <= 20
    finally:
        for state in pods:
            state.close()


def test_three_step_pipeline_through_pgbouncer(stack: Stack) -> None:
    stack.dsn = through_pgbouncer(stack.dsn)  # the workers and the test's queries go through it
    _three_step_pipeline(stack)
    database = urllib.parse.urlsplit(stack.dsn).path.lstrip("/")
    assert f"login attempt: db={database} " in Path(os.environ["KWS_TEST_PGBOUNCER_LOG"]).read_text()
