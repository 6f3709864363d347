"""Hooks: all three required, named when missing; the model loads once per process."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kombu_worker_sdk import HooksError, WorkerHooks
from kombu_worker_sdk.hooks import check_hooks_class, load_hooks
from kombu_worker_sdk.signals import models, worker_init
from tests import sample_hooks
from tests.conftest import wait_for
from tests.sample_hooks import split_message


class NoProcess(WorkerHooks):
    def load_pipeline(self, ctx: Any) -> None:
        return None

    def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
        return []


def test_missing_hook_is_named_for_subclass() -> None:
    with pytest.raises(HooksError, match=r"missing required hook\(s\): process$"):
        check_hooks_class(NoProcess)


def test_missing_hook_is_named_for_duck_typed_class() -> None:
    with pytest.raises(HooksError, match="publish_next"):
        load_hooks("tests.sample_hooks:MissingPublishNext")


@pytest.mark.parametrize("path", ["tests.sample_hooks:StepHooks", "tests.sample_hooks.StepHooks"])
def test_both_path_forms_load(path: str) -> None:
    assert isinstance(load_hooks(path), sample_hooks.StepHooks)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no.such.module:Hooks", "cannot import"),
        ("tests.sample_hooks:Nope", "has no class"),
        ("x", "must look"),
    ],
)
def test_bad_hooks_paths(path: str, message: str) -> None:
    with pytest.raises(HooksError, match=message):
        load_hooks(path)


def test_model_loaded_once_before_first_message_and_shared_by_threads(make_worker: Any) -> None:
    seen_before_first: list[bool] = []

    def on_init(sender: Any = None, **kwargs: Any) -> None:
        seen_before_first.append(models.is_loaded("tests.sample_hooks.StepHooks"))

    worker_init.connect(on_init)
    try:
        running = make_worker(concurrency=4)
    finally:
        worker_init.disconnect(on_init)
    assert len(sample_hooks.LOADS) == 1, "the model is loaded at worker_init, before any message"
    assert seen_before_first == [True], "the SDK's receiver runs first and loads the model"
    running.send(split_message("m1", parts=12))
    wait_for(lambda: running.status("m1-join") == "DONE")
    assert len(sample_hooks.LOADS) == 1, "load_pipeline must run exactly once per process"
    results = [
        json.loads(running.storage.read(f"s3://bucket/jobs/m1/part/{i:03d}/result.json")) for i in range(12)
    ]
    assert len({r["model_id"] for r in results}) == 1, "every message and thread sees one model"
