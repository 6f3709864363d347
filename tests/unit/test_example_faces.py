"""The faces example end to end on a real photo: Detection → Analysis → Completion.

The three steps run through the real SDK pipeline (LocalRunner), sharing one
in-memory storage, state store and publisher, as three services share S3,
PostgreSQL and SQS.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from kombu_worker_sdk import JobStatus, PermanentError
from kombu_worker_sdk.examples.faces import (
    AnalysisHooks,
    CompletionHooks,
    DetectionHooks,
    imaging,
    sample_image,
)
from kombu_worker_sdk.examples.faces.hooks import job_root
from kombu_worker_sdk.examples.faces.schemas import AnalysisParams, Box, CropAnalysis
from kombu_worker_sdk.testing import LocalRunner

INPUT = "s3://demo/inputs/astronaut.png"
ASTRONAUT_FACE = Box(x=86, y=31, w=53, h=53)


def detection_message(job: str, input_uri: str = INPUT) -> dict[str, Any]:
    return {
        "job_id": job,
        "task_id": f"{job}-detection",
        "input_uri": input_uri,
        "output_prefix": f"s3://demo/jobs/{job}/detection/",
        "params": {},
    }


@pytest.fixture
def runners() -> tuple[LocalRunner, LocalRunner, LocalRunner]:
    """One runner per step over the same storage, state and publisher."""
    detect = LocalRunner(DetectionHooks())

    def chained(hooks: Any) -> LocalRunner:
        return LocalRunner(hooks, storage=detect.storage, state=detect.state, publisher=detect.publisher)

    return detect, chained(AnalysisHooks()), chained(CompletionHooks())


def test_detects_exactly_one_face_on_the_shipped_image() -> None:
    image = imaging.decode_image(sample_image())
    assert image.shape == (256, 256, 3)
    assert imaging.detect_faces(image) == [ASTRONAUT_FACE]


def test_analyse_crop_is_deterministic_and_valid() -> None:
    face = imaging.crop(imaging.decode_image(sample_image()), ASTRONAUT_FACE)
    first, second = imaging.analyse_crop(face), imaging.analyse_crop(face)
    assert first == second
    assert (first.width, first.height) == (53, 53)
    assert first.sharpness > 0 and 0 < first.brightness < 255
    assert first.dominant_color == "#{:02x}{:02x}{:02x}".format(*first.rgb)


def test_pipeline_redacts_the_face_and_finishes_the_job(
    runners: tuple[LocalRunner, LocalRunner, LocalRunner],
) -> None:
    detect, analyse, complete = runners
    original = sample_image()
    detect.storage.put(INPUT, original, "image/png")

    detected = detect.run(detection_message("job-faces"))
    assert detected.status == "DONE"
    result = detected.read_json("result.json")
    assert [Box(**b) for b in result["boxes"]] == [ASTRONAUT_FACE]
    assert result["crop_uris"] == ["s3://demo/jobs/job-faces/detection/crops/000.png"]
    assert imaging.decode_image(detect.storage.read(result["crop_uris"][0])).shape == (53, 53, 3)

    analysis_msgs = detected.published
    assert len(analysis_msgs) == len(result["boxes"]) == 1
    assert analysis_msgs[0]["task_id"] == "job-faces-analysis-000"
    assert analysis_msgs[0]["output_prefix"] == "s3://demo/jobs/job-faces/analysis/000/"
    assert analysis_msgs[0]["params"]["image_uri"] == INPUT

    completion_msgs = [m for msg in analysis_msgs for m in analyse.run(msg).published]
    assert len(completion_msgs) == 1
    completion = completion_msgs[0]
    assert completion["task_id"] == "job-faces-completion"
    assert "fan_in" not in completion  # SDK directive, stripped from the wire
    assert completion["input_uri"] == INPUT

    done = complete.run(completion)
    assert done.status == "DONE" and done.published == []
    job = detect.state.get_job("job-faces")
    assert job is not None and job.status is JobStatus.DONE and job.total == job.done == 3

    before = imaging.decode_image(original)
    after = imaging.decode_image(detect.storage.read("s3://demo/jobs/job-faces/completion/result.png"))
    assert after.shape == before.shape
    inside = imaging.box_mask(before.shape, [ASTRONAUT_FACE]) > 0
    changed = (after != before).any(axis=2)
    assert np.array_equal(after[~inside], before[~inside])  # untouched outside the face
    assert changed[inside].mean() > 0.5  # and really filled in inside it
    summary = json.loads(detect.storage.read("s3://demo/jobs/job-faces/completion/summary.json"))
    assert summary["faces"] == 1 and summary["redacted_pixels"] == 53 * 53
    assert summary["analyses"][0]["box"] == ASTRONAUT_FACE.model_dump()

    # Redelivering every message changes nothing: no new tasks, no new messages.
    sent = len(detect.publisher.all())
    detect.run(detection_message("job-faces"))
    for msg in analysis_msgs:
        analyse.run(msg)
    complete.run(completion)
    assert len(detect.publisher.all()) == sent
    assert detect.state.get_job("job-faces") == job


def test_an_image_without_faces_ends_the_job_at_detection(
    runners: tuple[LocalRunner, LocalRunner, LocalRunner],
) -> None:
    detect = runners[0]
    ramp = np.tile(np.arange(256, dtype=np.uint8), (128, 1))
    blank = imaging.encode_png(np.dstack([ramp, ramp, ramp]))
    detect.storage.put("s3://demo/inputs/ramp.png", blank, "image/png")
    run = detect.run(detection_message("job-empty", "s3://demo/inputs/ramp.png"))
    assert run.status == "DONE" and run.published == []
    assert run.read_json("result.json")["boxes"] == []
    job = detect.state.get_job("job-empty")
    assert job is not None and job.status is JobStatus.DONE and job.total == 1


def test_an_undecodable_input_fails_permanently(
    runners: tuple[LocalRunner, LocalRunner, LocalRunner],
) -> None:
    detect = runners[0]
    detect.storage.put("s3://demo/inputs/bad.png", b"not an image", "image/png")
    run = detect.run(detection_message("job-bad", "s3://demo/inputs/bad.png"))
    assert run.status == "FAILED"
    assert run.published == []


def test_job_root_needs_the_step_segment() -> None:
    assert job_root("s3://b/jobs/j1/detection/", "detection") == "s3://b/jobs/j1"
    assert job_root("s3://b/analysis/007/", "analysis", indexed=True) == "s3://b"
    with pytest.raises(PermanentError):
        job_root("s3://b/jobs/j1/detect/", "detection")


def test_schemas_refuse_bad_values() -> None:
    with pytest.raises(ValidationError):
        Box(x=-1, y=0, w=1, h=1)
    with pytest.raises(ValidationError):
        CropAnalysis(sharpness=1, brightness=300, dominant_color="#ABCDEF", rgb=(1, 2, 3), width=1, height=1)
    with pytest.raises(ValidationError):
        AnalysisParams(detection_id=2, siblings=2, box=ASTRONAUT_FACE, image_uri=INPUT)
