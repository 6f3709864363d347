"""The built-in stages, in their fixed order."""

from __future__ import annotations

from kombu_worker_sdk.pipeline import Pipeline
from kombu_worker_sdk.stages.claim import ClaimStage
from kombu_worker_sdk.stages.fanout import FanoutStage
from kombu_worker_sdk.stages.hooks import HooksStage
from kombu_worker_sdk.stages.idempotency import IdempotencyStage
from kombu_worker_sdk.stages.prefetch import InputPrefetchStage
from kombu_worker_sdk.stages.store import StoreStage
from kombu_worker_sdk.stages.validate import ValidateStage

__all__ = [
    "ClaimStage",
    "FanoutStage",
    "HooksStage",
    "IdempotencyStage",
    "InputPrefetchStage",
    "StoreStage",
    "ValidateStage",
    "default_pipeline",
]


def default_pipeline() -> Pipeline:
    """validate → idempotency → claim → prefetch → hooks → store → fanout."""
    return Pipeline(
        [
            ValidateStage(),
            IdempotencyStage(),
            ClaimStage(),
            InputPrefetchStage(),
            HooksStage(),
            StoreStage(),
            FanoutStage(),
        ]
    )
