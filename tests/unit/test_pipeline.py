"""The stage pipeline: fixed order, custom stages three ways, signals at the right moments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kombu_worker_sdk import ConfigError, Stage, TaskRun
from kombu_worker_sdk.config import StageSpec
from kombu_worker_sdk.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    worker_init,
    worker_ready,
    worker_shutdown,
)
from kombu_worker_sdk.stages import HooksStage, StoreStage, default_pipeline
from kombu_worker_sdk.testing import LocalRunner
from kombu_worker_sdk.worker.runtime import add_configured_stages, add_entry_point_stages
from tests.conftest import wait_for
from tests.sample_hooks import StepHooks, split_message

CALLS: list[str] = []


class AuditStage(Stage):
    """Records what it saw; configurable so the YAML path can pass options."""

    name = "audit"
    placement = ("after", "hooks")

    def __init__(self, label: str = "audit") -> None:
        self.label = label

    def process(self, run: TaskRun) -> None:
        CALLS.append(f"{self.label}:process:{run.outputs is not None}")

    def on_success(self, run: TaskRun) -> None:
        CALLS.append(f"{self.label}:success")

    def on_failure(self, run: TaskRun, error: BaseException) -> None:
        CALLS.append(f"{self.label}:failure:{type(error).__name__}")


def test_default_order() -> None:
    assert default_pipeline().names() == [
        "validate",
        "idempotency",
        "claim",
        "prefetch",
        "hooks",
        "store",
        "fanout",
    ]


def test_add_before_and_after_by_name_and_class() -> None:
    pipeline = default_pipeline()
    pipeline.add(AuditStage("a"), before="hooks")
    pipeline.add(AuditStage("b"), after=HooksStage)
    pipeline.add(AuditStage("c"), before=StoreStage)
    pipeline.add(AuditStage("d"), after="fanout")
    names = pipeline.names()
    assert names == [
        "validate",
        "idempotency",
        "claim",
        "prefetch",
        "audit",
        "hooks",
        "audit",
        "audit",
        "store",
        "fanout",
        "audit",
    ]
    labels = [getattr(s, "label", s.name) for s in pipeline.stages]
    assert labels.index("a") < labels.index("hooks") < labels.index("b") < labels.index("c")


@pytest.mark.parametrize(
    ("where", "anchor"),
    [("after", "idempotency"), ("before", "claim"), ("after", "store"), ("before", "fanout")],
)
def test_slots_that_would_break_guarantees_are_refused(where: str, anchor: str) -> None:
    with pytest.raises(ConfigError, match="cannot go"):
        default_pipeline().add(AuditStage(), **{where: anchor})


def test_unknown_anchor_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no stage named 'nope'"):
        default_pipeline().add(AuditStage(), before="nope")


def test_custom_stage_added_in_code_runs_with_after_hooks_in_reverse() -> None:
    CALLS.clear()
    runner = LocalRunner(StepHooks())
    runner.runtime.pipeline.add(AuditStage("first"), before="hooks")
    runner.runtime.pipeline.add(AuditStage("second"), after="fanout")
    result = runner.run(split_message("c1", parts=1))
    assert result.status == "DONE"
    assert CALLS == ["first:process:False", "second:process:True", "second:success", "first:success"]


def test_custom_stage_from_yaml_config(tmp_path: Path) -> None:
    CALLS.clear()
    (tmp_path / "default.yaml").write_text(
        "stages:\n  - class: tests.unit.test_pipeline:AuditStage\n    after: hooks\n"
        "    options: {label: yaml}\n"
    )
    from kombu_worker_sdk.config import load_config

    config = load_config(config_dir=tmp_path, env={})
    pipeline = default_pipeline()
    add_configured_stages(pipeline, config.stages)
    assert pipeline.names()[5] == "audit"
    runner = LocalRunner(StepHooks(), config.model_copy(update={"next_queue": "next"}))
    runner.run(split_message("y1", parts=1))
    assert CALLS[:2] == ["yaml:process:True", "yaml:success"]


def test_yaml_stage_must_be_a_stage() -> None:
    with pytest.raises(ConfigError, match="not a Stage subclass"):
        add_configured_stages(default_pipeline(), [StageSpec.model_validate({"class": "json:loads"})])


def test_custom_stage_from_an_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "audit_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: audit-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[kombu_worker_sdk.stages]\naudit = tests.unit.test_pipeline:AuditStage\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    pipeline = default_pipeline()
    add_entry_point_stages(pipeline)
    assert pipeline.names() == [
        "validate",
        "idempotency",
        "claim",
        "prefetch",
        "hooks",
        "audit",
        "store",
        "fanout",
    ]
    CALLS.clear()
    runner = LocalRunner(StepHooks())  # build_runtime loads entry points too
    assert "audit" in runner.runtime.pipeline.names()
    runner.run(split_message("e1", parts=1))
    assert "audit:process:True" in CALLS


def test_signals_fire_in_order_through_the_consumer(make_worker: Any) -> None:
    events: list[str] = []

    def recorder(name: str) -> Any:
        def receive(sender: Any = None, **kwargs: Any) -> None:
            events.append(f"{name}:{kwargs.get('task_id', '')}")

        return receive

    receivers = {
        sig: recorder(sig.name)
        for sig in (worker_init, worker_ready, task_prerun, task_postrun, task_failure, worker_shutdown)
    }
    for sig, receiver in receivers.items():
        sig.connect(receiver)
    try:
        running = make_worker(max_attempts=1)
        running.send({**split_message("s1"), "params": {"step": "leaf"}})
        wait_for(lambda: running.status("s1-split") == "DONE")
        running.send({**split_message("s2"), "params": {"permanent": True}})
        wait_for(lambda: running.status("s2-split") == "FAILED")
        running.stop()
    finally:
        for sig, receiver in receivers.items():
            sig.disconnect(receiver)
    assert events == [
        "worker_init:",
        "worker_ready:",
        "task_prerun:s1-split",
        "task_postrun:s1-split",
        "task_prerun:s2-split",
        "task_postrun:s2-split",
        "task_failure:s2-split",
        "worker_shutdown:",
    ]
