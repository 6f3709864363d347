"""The SQLite store's batch claim and completion: the cases of tests/batch_cases.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from kombu_worker_sdk.state import SqliteStateStore
from tests.batch_cases import CASES, Case, run_case


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_batch_matches_one_by_one(tmp_path: Path, case: Case) -> None:
    run_case(case, SqliteStateStore(tmp_path / "batched.db"), SqliteStateStore(tmp_path / "single.db"))
