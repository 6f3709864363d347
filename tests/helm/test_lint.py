"""`helm lint` and `helm template` on the chart's ci/ value sets; the schema and the install script."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.chart import (
    CHART,
    CI_VALUES,
    ROOT,
    SEED_ARGS,
    check_keda,
    check_labels,
    render,
    run_helm,
    validate_core,
)

# ----------------------------------------------------------------------------- lint


def test_ci_values_files_exist() -> None:
    names = {p.name for p in CI_VALUES}
    assert {"default-values.yaml", "gpu-values.yaml", "scaledjob-values.yaml"} <= names


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_lint_ci_values(helm: str, values: Path) -> None:
    proc = run_helm(helm, "lint", "--strict", str(CHART), "--values", str(values))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lint_seed_command(helm: str) -> None:
    proc = run_helm(helm, "lint", "--strict", str(CHART), *SEED_ARGS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_ci_values_render_valid_objects(helm: str, values: Path) -> None:
    rendered = render(helm, "--values", str(values))
    check_labels(rendered)
    validate_core(rendered)
    settings = yaml.safe_load(values.read_text())
    if settings.get("keda", {}).get("enabled", True):
        check_keda(rendered, queue_url=settings["queues"]["input"])
    else:
        assert not rendered.kinds() & {"ScaledObject", "ScaledJob", "TriggerAuthentication"}


def test_install_script_is_idempotent(helm: str) -> None:
    """With helm in place, the script only reports the version (no download)."""
    if Path(helm) != ROOT / ".cache" / "bin" / "helm":
        pytest.skip("helm comes from KWS_HELM, not .cache/bin")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install_helm.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "already installed" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("v")


def _iter_values_keys(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict) and value:
            yield from _iter_values_keys(value, f"{path}.")


def test_schema_covers_every_default_value() -> None:
    """Every key in values.yaml is described by values.schema.json (no silent typos)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path in _iter_values_keys(values):
        node = schema
        for part in path.split("."):
            props = node.get("properties", {})
            if part in props:
                node = props[part]
            else:
                assert node.get("additionalProperties", True) is not False, path
                break
