"""Face redaction: Detection → Analysis (fan-out, one task per face) → Completion (fan-in).

Needs the ``demo`` extra (opencv-python-headless 4.x, numpy). Run a step with
``kombu-worker --hooks kombu_worker_sdk.examples.faces.hooks:DetectionHooks``
(likewise ``AnalysisHooks`` and ``CompletionHooks``), one queue per step.
"""

from __future__ import annotations

from importlib.resources import files

from kombu_worker_sdk.examples.faces.hooks import AnalysisHooks, CompletionHooks, DetectionHooks

__all__ = ["AnalysisHooks", "CompletionHooks", "DetectionHooks", "sample_image"]


def sample_image() -> bytes:
    """The shipped 256 px PNG of astronaut Eileen Collins (public domain, see data/SOURCES.md)."""
    return (files("kombu_worker_sdk.examples") / "data" / "astronaut.png").read_bytes()
