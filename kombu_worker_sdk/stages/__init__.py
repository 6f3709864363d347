"""The built-in stages, in their fixed order."""

from __future__ import annotations

from kombu_worker_sdk.pipeline import Pipeline
from kombu_worker_sdk.stages.claim import ClaimStage
from kombu_worker_sdk.stages.fanout import FanoutStage
from kombu_worker_sdk.stages.hooks import HooksStage
from kombu_worker_sdk.stages.idempotency import IdempotencyStage
from kombu_worker_sdk.stages.store import StoreStage
from kombu_worker_sdk.stages.validate import ValidateStage

__all__ = [
    "ClaimStage",
    "FanoutStage",
    "HooksStage",
    "IdempotencyStage",
    "StoreStage",
    "ValidateStage",
    "default_pipeline",
]


def default_pipeline() -> Pipeline:
    """validate → idempotency → claim → hooks → store → fanout."""
    return Pipeline(
        [
            ValidateStage(),
            IdempotencyStage(),
            ClaimStage(),
            HooksStage(),
            StoreStage(),
            FanoutStage(),
        ]
    )
