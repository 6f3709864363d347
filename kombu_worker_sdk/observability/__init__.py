"""Observability: Prometheus metrics, the health server, OpenTelemetry tracing.

The names are loaded on first use: ``pipeline`` imports ``observability.tracing``, and
``metrics`` imports ``pipeline``, so an eager import here would be a cycle at start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"HealthServer": "health", "METRICS": "metrics", "Metrics": "metrics"}

__all__ = ["METRICS", "HealthServer", "Metrics"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
