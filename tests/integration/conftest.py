"""Integration fixtures: a fresh stack per test, its workers always stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.stack import Stack, new_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    built = new_stack(tmp_path, "in", "next", "last")
    yield built
    built.kill_workers()
