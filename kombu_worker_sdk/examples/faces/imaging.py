"""Pure image functions for the faces pipeline: no SDK, no I/O beyond bytes in and out.

Kept apart from the hooks so they can be tested, profiled and reused alone.
Images are OpenCV's BGR ``uint8`` arrays. Everything here is deterministic.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cache

import cv2
import numpy as np
import numpy.typing as npt
from cv2.data import haarcascades

from kombu_worker_sdk.examples.faces.schemas import Box, CropAnalysis

Image = npt.NDArray[np.uint8]
CASCADE_FILE = "haarcascade_frontalface_default.xml"
INPAINT_RADIUS = 3
# OpenCV does not promise that one CascadeClassifier is safe across threads,
# and a worker with --concurrency N shares one; detection is fast, so serialise it.
_detect_lock = threading.Lock()


def decode_image(data: bytes) -> Image:
    """Decode PNG/JPEG bytes to BGR; ValueError when they are not an image."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ValueError(f"cannot decode {len(data)} bytes as an image")
    return np.asarray(image, dtype=np.uint8)


def encode_png(image: Image) -> bytes:
    """Encode losslessly, so a test can compare pixels after a round trip."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} as PNG")
    return bytes(buf.tobytes())


@cache
def face_cascade() -> cv2.CascadeClassifier:
    """The Haar face cascade shipped inside opencv-python 4.x: loaded once, no download."""
    classifier = cv2.CascadeClassifier(haarcascades + CASCADE_FILE)
    if classifier.empty():
        raise RuntimeError(f"cannot load {CASCADE_FILE}; opencv-python-headless<5 is required")
    return classifier


def detect_faces(
    image: Image,
    classifier: cv2.CascadeClassifier | None = None,
    *,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_size: int = 30,
) -> list[Box]:
    """Frontal faces, sorted top-to-bottom then left-to-right so indices are stable."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    with _detect_lock:
        found = (classifier if classifier is not None else face_cascade()).detectMultiScale(
            gray, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_size, min_size)
        )
    boxes = [Box(x=int(x), y=int(y), w=int(w), h=int(h)) for x, y, w, h in found]
    return sorted(boxes, key=lambda b: (b.y, b.x, b.h, b.w))


def crop(image: Image, box: Box) -> Image:
    """The pixels inside ``box`` (clipped to the image), as a copy."""
    region = image[box.y : box.y + box.h, box.x : box.x + box.w]
    if region.size == 0:
        raise ValueError(f"box {box.model_dump()} lies outside an image of shape {image.shape}")
    return region.copy()


def analyse_crop(image: Image, *, levels: int = 8) -> CropAnalysis:
    """Sharpness, brightness and dominant colour of a crop.

    The dominant colour is the mean of the pixels in the most populated cell of
    a ``levels``³ colour histogram: no k-means, so no randomness.
    """
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    pixels = image.reshape(-1, 3).astype(np.int64)
    step = 256 // levels
    cells = pixels // step
    index = (cells[:, 0] * levels + cells[:, 1]) * levels + cells[:, 2]
    mode = int(np.bincount(index, minlength=levels**3).argmax())  # ties: lowest cell
    b, g, r = (round(float(v)) for v in pixels[index == mode].mean(axis=0))
    return CropAnalysis(
        sharpness=round(sharpness, 4),
        brightness=round(float(gray.mean()), 4),
        dominant_color=f"#{r:02x}{g:02x}{b:02x}",
        rgb=(r, g, b),
        width=int(image.shape[1]),
        height=int(image.shape[0]),
    )


def box_mask(shape: tuple[int, ...], boxes: Sequence[Box]) -> Image:
    """A 0/255 mask of the image's size with every box filled."""
    mask: Image = np.zeros(shape[:2], np.uint8)
    for box in boxes:
        mask[box.y : box.y + box.h, box.x : box.x + box.w] = 255
    return mask


def redact(image: Image, boxes: Sequence[Box], *, radius: int = INPAINT_RADIUS) -> Image:
    """Fill every box from its surroundings (Telea inpainting); pixels outside stay as they were."""
    if not boxes:
        return image.copy()
    filled = cv2.inpaint(image, box_mask(image.shape, boxes), radius, cv2.INPAINT_TELEA)
    return np.asarray(filled, dtype=np.uint8)
