"""The SQLite store's batch claim and completion: the cases of tests/batch_cases.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kombu_worker_sdk.state import SqliteStateStore, StateStore
from tests.batch_cases import CASES


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_batch_matches_one_by_one(tmp_path: Path, case: Callable[[StateStore, StateStore], None]) -> None:
    stores = [SqliteStateStore(tmp_path / f"{name}.db") for name in ("batched", "single")]
    for store in stores:
        store.upgrade()
    try:
        case(*stores)
    finally:
        for store in stores:
            store.close()
