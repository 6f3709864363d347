"""The three pipeline steps: Detection → Analysis (one task per face) → Completion.

Prefix layout of one job (``root`` is whatever precedes ``/detection/``)::

    {root}/detection/       result.json (Detection), crops/000.png ...
    {root}/analysis/000/    result.json (AnalysisResult) ...
    {root}/completion/      result.png (faces inpainted), summary.json

Task ids derive from the job id, so a redelivered message never forks the job.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kombu_worker_sdk import Context, Outputs, PermanentError, TaskMessage, WorkerHooks
from kombu_worker_sdk.examples.faces import imaging
from kombu_worker_sdk.examples.faces.schemas import (
    AnalysisParams,
    AnalysisResult,
    CompletionParams,
    Detection,
)

M = TypeVar("M", bound=BaseModel)


def job_root(output_prefix: str, step: str, *, indexed: bool = False) -> str:
    """The job's base prefix from a step's ``{root}/{step}/`` (or ``{root}/{step}/NNN/``)."""
    tail = rf"/{step}/\d+/" if indexed else rf"/{step}/"
    match = re.fullmatch(rf"([a-z0-9]+://[^/]+(?:/.*)?){tail}", output_prefix)
    if match is None:
        raise PermanentError(f"output_prefix {output_prefix!r} does not end in {tail!r}")
    return match.group(1)


def parse(model: type[M], data: Any, what: str) -> M:
    """Validate ``data`` (JSON bytes or objects); a mismatch cannot heal on retry: fail now."""
    try:
        if isinstance(data, bytes):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        raise PermanentError(f"invalid {what}: {exc}") from None


def read_image(ctx: Context, uri: str) -> imaging.Image:
    try:
        return imaging.decode_image(ctx.storage.read(uri))
    except ValueError as exc:
        raise PermanentError(f"{uri}: {exc}") from None


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


class DetectionHooks(WorkerHooks):
    """Finds faces, writes a crop per face and fans out one analysis task per face."""

    version = "faces-1"

    def load_pipeline(self, ctx: Context) -> Any:
        return imaging.face_cascade()

    def process(self, ctx: Context, msg: TaskMessage) -> Outputs:
        image = read_image(ctx, msg.input_uri)
        start = time.perf_counter()
        boxes = imaging.detect_faces(image, self.model)
        detect_ms = _ms(start)
        crop_uris = [
            ctx.storage.write(msg.output_prefix, f"crops/{i:03d}.png", imaging.encode_png(crop))
            for i, crop in enumerate(imaging.crop(image, box) for box in boxes)
        ]
        height, width = image.shape[:2]
        detection = Detection(
            image_uri=msg.input_uri, width=width, height=height, boxes=boxes, crop_uris=crop_uris
        )
        ctx.logger.info("found %d face(s) in %.1f ms", len(boxes), detect_ms)
        return {
            "result": detection.model_dump(mode="json"),
            "metrics": {"faces": len(boxes), "detect_ms": detect_ms, "pixels": width * height},
        }

    def publish_next(self, ctx: Context, msg: TaskMessage, outputs: Outputs) -> list[dict[str, Any]]:
        """One analysis task per face; none (the job ends DONE here) when there are no faces."""
        detection = parse(Detection, outputs.get("result"), "detection result")
        root = job_root(msg.output_prefix, "detection")
        siblings = len(detection.boxes)
        return [
            {
                "job_id": msg.job_id,
                "task_id": f"{msg.job_id}-analysis-{i:03d}",
                "input_uri": uri,
                "output_prefix": f"{root}/analysis/{i:03d}/",
                "params": {
                    "detection_id": i,
                    "siblings": siblings,
                    "box": box.model_dump(),
                    "image_uri": msg.input_uri,
                },
            }
            for i, (box, uri) in enumerate(zip(detection.boxes, detection.crop_uris, strict=True))
        ]


class AnalysisHooks(WorkerHooks):
    """Measures one face crop; every sibling names the same completion task (fan-in)."""

    version = "faces-1"

    def load_pipeline(self, ctx: Context) -> Any:
        return {"levels": 8}  # colour histogram cells per channel

    def process(self, ctx: Context, msg: TaskMessage) -> Outputs:
        params = parse(AnalysisParams, msg.params, "analysis params")
        start = time.perf_counter()
        analysis = imaging.analyse_crop(read_image(ctx, msg.input_uri), levels=self.model["levels"])
        result = AnalysisResult.model_validate(
            {**analysis.model_dump(), "detection_id": params.detection_id, "box": params.box}
        )
        return {"result": result.model_dump(mode="json"), "metrics": {"analyse_ms": _ms(start)}}

    def publish_next(self, ctx: Context, msg: TaskMessage, outputs: Outputs) -> list[dict[str, Any]]:
        params = parse(AnalysisParams, msg.params, "analysis params")
        root = job_root(msg.output_prefix, "analysis", indexed=True)
        return [
            {
                "job_id": msg.job_id,
                "task_id": f"{msg.job_id}-completion",
                "input_uri": params.image_uri,
                "output_prefix": f"{root}/completion/",
                "params": {"siblings": params.siblings, "analysis_prefix": f"{root}/analysis/"},
                "fan_in": {"group": f"{msg.job_id}-analysis", "size": params.siblings},
            }
        ]


class CompletionHooks(WorkerHooks):
    """Inpaints every analysed face into the original; the SDK stores it as result.png."""

    version = "faces-1"

    def load_pipeline(self, ctx: Context) -> Any:
        return {"radius": imaging.INPAINT_RADIUS}

    def process(self, ctx: Context, msg: TaskMessage) -> Outputs:
        params = parse(CompletionParams, msg.params, "completion params")
        image = read_image(ctx, msg.input_uri)
        analyses = [
            parse(AnalysisResult, ctx.storage.read(uri), uri)
            for uri in (f"{params.analysis_prefix}{i:03d}/result.json" for i in range(params.siblings))
        ]
        boxes = [a.box for a in analyses]
        start = time.perf_counter()
        redacted = imaging.redact(image, boxes, radius=self.model["radius"])
        inpaint_ms = _ms(start)
        masked = int(imaging.box_mask(image.shape, boxes).astype(bool).sum())
        summary = {
            "image_uri": msg.input_uri,
            "faces": len(boxes),
            "redacted_pixels": masked,
            "analyses": [a.model_dump(mode="json") for a in analyses],
        }
        ctx.storage.write(msg.output_prefix, "summary.json", json.dumps(summary, indent=1))
        return {
            "result": imaging.encode_png(redacted),
            "result_ext": "png",
            "metrics": {"faces": len(boxes), "redacted_pixels": masked, "inpaint_ms": inpaint_ms},
        }

    def publish_next(self, ctx: Context, msg: TaskMessage, outputs: Outputs) -> list[dict[str, Any]]:
        return []
