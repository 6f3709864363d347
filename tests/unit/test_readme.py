"""The README's examples run, and its Quick start has exactly two set-up commands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kombu_worker_sdk.pipeline import Stage
from kombu_worker_sdk.stages import default_pipeline

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def example(name: str) -> str:
    for block in re.findall(r"```python\n(.*?)```", README, flags=re.S):
        if block.startswith(f"# readme-example: {name}\n"):
            return block
    raise AssertionError(f"README has no example {name!r}")


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_second() -> None:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    ci = (Path(__file__).parents[2] / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line and not line.startswith("#")] == [
        "exec bash scripts/test.sh"
    ]


def test_hooks_and_testing_examples_run() -> None:
    namespace: dict[str, Any] = {}
    exec(example("hooks"), namespace)
    exec(example("testing"), namespace)  # its asserts check the hooks' result and fan-out
    assert namespace["result"].read_json("metrics.json")["sdk"]["hooks_version"] == "1.2.0"


def test_stage_example_can_be_added() -> None:
    namespace: dict[str, Any] = {}
    exec(example("stage"), namespace)
    stage_cls = namespace["TimingStage"]
    assert issubclass(stage_cls, Stage)
    pipeline = default_pipeline()
    pipeline.add(stage_cls(), **{stage_cls.placement[0]: stage_cls.placement[1]})
    assert pipeline.names()[-1] == "timing"
