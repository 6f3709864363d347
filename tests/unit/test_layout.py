"""The tree tells the architecture: no import cycles, small modules, public imports intact."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import kombu_worker_sdk
from tests.importgraph import cycles, import_graph

REPO = Path(__file__).parents[2]
MAX_LINES = 400


def test_the_package_has_no_import_cycles() -> None:
    found = cycles(import_graph(REPO / "kombu_worker_sdk"))
    assert found == [], "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
    )
    (package / "b.py").write_text("def f():\n    from . import a\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b"]]


@pytest.mark.parametrize(
    ("low", "high"),
    [("transport", "worker"), ("transport", "stages"), ("stages", "worker.consumer"), ("state", "worker")],
)
def test_lower_layers_never_import_higher_ones(low: str, high: str) -> None:
    graph = import_graph(REPO / "kombu_worker_sdk")
    bad = sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if m.startswith(f"kombu_worker_sdk.{low}")
        for t in targets
        if t.startswith(f"kombu_worker_sdk.{high}") and t != "kombu_worker_sdk.worker.faults"
    )
    assert bad == []


def test_the_contract_modules_import_no_worker_transport_or_cli() -> None:
    graph = import_graph(REPO / "kombu_worker_sdk")
    contract = ["hooks", "message", "context", "errors", "config", "signals", "logs", "pipeline"]
    bad = sorted(
        f"{m} -> {t}"
        for m in (f"kombu_worker_sdk.{name}" for name in contract)
        for t in graph[m]
        if t.startswith(("kombu_worker_sdk.worker", "kombu_worker_sdk.cli", "kombu_worker_sdk.transport.sqs"))
    )
    assert bad == []


def test_every_sqs_specific_module_lives_in_transport_sqs() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "kombu_worker_sdk").rglob("*.py")
        if "sqs" in p.stem and "transport/sqs" not in p.as_posix()
    ]
    assert offenders == []


def test_no_module_is_over_400_lines() -> None:
    files = [
        *(REPO / "kombu_worker_sdk").rglob("*.py"),
        *(REPO / "tests").rglob("*.py"),
        *(REPO / "scripts").rglob("*.py"),
    ]
    long = {str(p.relative_to(REPO)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


@pytest.mark.parametrize("name", kombu_worker_sdk.__all__)
def test_every_public_name_imports_from_the_package(name: str) -> None:
    assert getattr(kombu_worker_sdk, name) is not None


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("kombu_worker_sdk.testing", ["fake_context", "run_message", "LocalRunner", "load_model"]),
        ("kombu_worker_sdk.runner", ["serve"]),
        ("kombu_worker_sdk.cli", ["main"]),
        ("kombu_worker_sdk.stages", ["default_pipeline"]),
        ("kombu_worker_sdk.observability", ["METRICS", "HealthServer"]),
    ],
)
def test_documented_import_paths_keep_working(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    assert all(hasattr(imported, n) for n in names)


def test_the_stage_entry_point_group_is_read_by_the_runtime() -> None:
    from kombu_worker_sdk.worker.runtime import STAGE_ENTRY_POINT_GROUP

    assert STAGE_ENTRY_POINT_GROUP == "kombu_worker_sdk.stages"
    assert isinstance(list(entry_points(group=STAGE_ENTRY_POINT_GROUP)), list)


def test_the_console_script_points_at_the_cli() -> None:
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "kombu-worker"]
    assert script.load() is importlib.import_module("kombu_worker_sdk.cli.main").main
