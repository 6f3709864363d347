"""The README's examples run, and its Quick start has exactly two set-up commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from kombu_worker_sdk.pipeline import Stage
from kombu_worker_sdk.stages import default_pipeline

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def example(name: str, language: str = "python") -> str:
    for block in re.findall(rf"```{language}\n(.*?)```", README, flags=re.S):
        if block.startswith(f"# readme-example: {name}\n"):
            return str(block)
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


def test_writing_hooks_example_runs_to_done_with_only_what_the_readme_says(tmp_path: Path) -> None:
    """Save the hooks example as service/hooks.py, then run the README's commands as written.

    A new folder, the venv's bin on PATH (as after activating it), none of the SDK's
    variables and no PYTHONPATH: the README's own text must be enough.
    """
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "hooks.py").write_text(example("hooks"))
    commands = example("run-hooks", "bash")
    expected = commands.strip().splitlines()[-1].split("#", 1)[1].strip()
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTHONPATH" and not k.startswith(("KOMBU_WORKER_", "WORKER_CONFIG"))
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin"
    run = subprocess.run(
        ["bash", "-e", "-c", commands], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert expected.startswith("job j1: DONE")
    assert expected in run.stdout, run.stdout
