"""The PostgreSQL store's batch claim and completion: the cases of tests/batch_cases.py, and
how few statements a batch takes. Runs direct and through PgBouncer (see conftest.py).

Run with: ``python scripts/services.py -- python -m pytest tests/integration/postgres_state``.
"""

from __future__ import annotations

import pytest

from kombu_worker_sdk.state.postgres import PostgresStateStore
from tests.batch_cases import CASES, Case, run_case
from tests.integration.postgres_state.helpers import child, task
from tests.integration.postgres_state.test_round_trips import Recording
from tests.servers import fresh_database, through_pgbouncer

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_batch_matches_one_by_one(dsn: str, request: pytest.FixtureRequest, case: Case) -> None:
    other = fresh_database()
    if "pgbouncer" in request.node.callspec.id:
        other = through_pgbouncer(other)
    run_case(case, PostgresStateStore(dsn), PostgresStateStore(other))


def test_a_batch_of_32_is_claimed_and_completed_in_a_few_statements(dsn: str) -> None:
    rec = Recording(dsn)
    rec.upgrade()
    try:
        batch = [(task(f"t{i:02d}", job_id=f"job-{i % 4}"), f"w/{i}") for i in range(32)]
        statements = rec.count(lambda: rec.claim_many(batch, lease_seconds=60))
        # the new tasks, their four jobs, and (for the known ones: none here) one UPDATE
        assert statements == ["INSERT INTO kw_tasks", "INSERT INTO kw_jobs"], statements
        again = [(msg, f"x/{i}") for i, (msg, _) in enumerate(batch)]
        statements = rec.count(lambda: rec.claim_many(again, lease_seconds=60))
        # all 32 known and held: the one UPDATE takes none, each is then judged on its own
        assert statements[:2] == ["INSERT INTO kw_tasks", "WITH v (task_id,"], statements
        done = [(msg, [child(f"{msg.task_id}-c", job_id=msg.job_id)]) for msg, _ in batch]
        statements = rec.count(lambda: rec.complete_many(done, default_queue="q"))
        # one UPDATE for the batch, one INSERT for every child, one UPDATE per job (4 jobs)
        assert statements.count("UPDATE kw_tasks SET") == 1, statements
        assert statements.count("INSERT INTO kw_tasks") == 1, statements
        assert len(statements) == 6, statements
    finally:
        rec.close()
