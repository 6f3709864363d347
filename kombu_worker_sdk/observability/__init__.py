"""Observability: Prometheus metrics and the health server."""

from __future__ import annotations

from kombu_worker_sdk.observability.health import HealthServer
from kombu_worker_sdk.observability.metrics import METRICS, Metrics

__all__ = ["METRICS", "HealthServer", "Metrics"]
