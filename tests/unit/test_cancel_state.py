"""Cancelling a job in the SQLite store: the cases of tests/cancel_cases.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kombu_worker_sdk.state import SqliteStateStore, StateStore
from tests.cancel_cases import CASES


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    state = SqliteStateStore(tmp_path / "state.db")
    state.upgrade()
    yield state
    state.close()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_cancel(store: SqliteStateStore, case: Callable[[StateStore], None]) -> None:
    case(store)
