"""The data each step writes and reads, validated so a bad upstream output fails loudly.

Results travel between steps as ``result.json`` files and message ``params``;
validating both ends turns a schema drift into a clear PermanentError instead
of a wrong redaction.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

HEX_COLOR = r"^#[0-9a-f]{6}$"
Channel = Annotated[int, Field(ge=0, le=255)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Box(_Model):
    """A face rectangle in pixels: top-left corner, width and height."""

    x: int = Field(ge=0)
    y: int = Field(ge=0)
    w: int = Field(ge=1)
    h: int = Field(ge=1)


class Detection(_Model):
    """The detection step's result.json: the image size, each face and its crop."""

    image_uri: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    boxes: list[Box]
    crop_uris: list[str]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(self.boxes) != len(self.crop_uris):
            raise ValueError("boxes and crop_uris must have the same length")
        for box in self.boxes:
            if box.x + box.w > self.width or box.y + box.h > self.height:
                raise ValueError(f"box {box.model_dump()} lies outside the image")
        return self


class CropAnalysis(_Model):
    """Cheap, deterministic measurements of one face crop."""

    sharpness: float = Field(ge=0, description="variance of the Laplacian; low = blurred")
    brightness: float = Field(ge=0, le=255, description="mean grey level")
    dominant_color: str = Field(pattern=HEX_COLOR)
    rgb: tuple[Channel, Channel, Channel]
    width: int = Field(ge=1)
    height: int = Field(ge=1)


class AnalysisResult(CropAnalysis):
    """The analysis step's result.json; carries its box so Completion needs nothing else."""

    detection_id: int = Field(ge=0)
    box: Box


class AnalysisParams(_Model):
    """``params`` of an analysis message, as Detection's publish_next builds them."""

    detection_id: int = Field(ge=0)
    siblings: int = Field(ge=1)
    box: Box
    image_uri: str

    @model_validator(mode="after")
    def _in_range(self) -> Self:
        if self.detection_id >= self.siblings:
            raise ValueError("detection_id must be below siblings")
        return self


class CompletionParams(_Model):
    """``params`` of the completion message, as Analysis's publish_next builds them."""

    siblings: int = Field(ge=1)
    analysis_prefix: str = Field(pattern=r"^(s3|file)://.+/$")
