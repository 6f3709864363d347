"""The built-in stages, in their fixed order."""

from __future__ import annotations

from ..pipeline import Pipeline
from .claim import ClaimStage
from .fanout import FanoutStage
from .hooks import HooksStage
from .idempotency import IdempotencyStage
from .store import StoreStage
from .validate import ValidateStage

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
