"""The SDK through a real PgBouncer in ``pool_mode = transaction``, as a fleet runs it.

The state-store suite (tests/integration/postgres_state) runs through PgBouncer as well; this
module proves the pooler really multiplexes, and runs three end-to-end worker tests through it
(the rest of the integration suite, bound by moto's speed, runs direct only, to keep CI short):
a fan-out/fan-in pipeline, a worker SIGKILLed mid-task (PgBouncer must roll back its server
transaction), and PostgreSQL restarted behind the pooler mid-run.

Run with: ``python scripts/services.py -- python -m pytest tests/integration/test_pgbouncer.py``.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from pathlib import Path

import pytest

from kombu_worker_sdk.state.postgres import PostgresStateStore
from tests.conftest import wait_for
from tests.integration.postgres_state.helpers import query, run_together, task
from tests.integration.stack import Stack
from tests.integration.test_crash_recovery import redrive  # noqa: F401 (a fixture)
from tests.integration.test_crash_recovery import (
    test_sigkilled_workers_task_is_done_by_another_and_never_dead_lettered as _sigkilled_worker,
)
from tests.integration.test_reliability import leaf, markers
from tests.integration.test_sqs_pipeline import (
    test_three_step_pipeline_with_fan_out_and_fan_in_ends_done as _three_step_pipeline,
)
from tests.servers import (
    connect,
    fresh_database,
    require_pgbouncer,
    start_postgres,
    stop_postgres,
    through_pgbouncer,
)

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


def test_sigkilled_worker_through_pgbouncer(redrive: Stack, tmp_path: Path) -> None:  # noqa: F811
    redrive.dsn = through_pgbouncer(redrive.dsn)
    _sigkilled_worker(redrive, tmp_path)


def test_postgres_restart_behind_pgbouncer_loses_and_duplicates_nothing(stack: Stack, tmp_path: Path) -> None:
    """The pooler keeps the workers' client connections through the restart; transactions queued
    in it either wait for the server (an outage shorter than query_wait_timeout) or fail as a
    BackendUnavailableError, so the worker's log wording differs from the direct case: only the
    outcome is asserted."""
    stack.dsn = through_pgbouncer(stack.dsn)
    done_dir = tmp_path / "done"
    done_dir.mkdir()
    for i in range(6):
        stack.send("in", leaf(stack, f"pb1-{i}", sleep=0.3, marker_dir=str(done_dir)))
    stack.start_worker()
    wait_for(lambda: markers(done_dir, "pb1-0") == 1, timeout=60, interval=0.05)
    stop_postgres()
    try:
        time.sleep(3)  # the outage itself: the worker must ride it out
    finally:
        start_postgres()
    wait_for(lambda: all(stack.task_status(f"pb1-{i}") == "DONE" for i in range(6)), timeout=90, interval=0.3)
    assert stack.stop_workers() == [0]
    assert [markers(done_dir, f"pb1-{i}") for i in range(6)] == [1] * 6
    assert stack.depth("in") == 0 and stack.depth("dlq") == 0
