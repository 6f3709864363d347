"""The `helm` fixture shared by the chart test modules."""

from __future__ import annotations

import os

import pytest

from tests.helm.chart import find_helm


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_helm()
    if path is None:
        msg = "helm not found: run scripts/install_helm.sh or set KWS_HELM"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path
