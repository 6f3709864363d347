"""Cancelling a job in the PostgreSQL store: the cases of tests/cancel_cases.py.

Run with: ``python scripts/services.py -- python -m pytest tests/integration/postgres_state``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kombu_worker_sdk.state import StateStore
from kombu_worker_sdk.state.postgres import PostgresStateStore
from tests.cancel_cases import CASES

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_cancel(store: PostgresStateStore, case: Callable[[StateStore], None]) -> None:
    case(store)
