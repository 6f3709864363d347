"""Tracing is off, and free, unless the standard OTEL variables ask for it (issue 12 §3).

Each worker here is a real process in a fresh folder, on the embedded defaults: without
OTEL_* it never imports OpenTelemetry; with ``OTEL_TRACES_EXPORTER=console`` it prints its
spans; with an endpoint set but no ``[otel]`` extra it stops at start-up with one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kombu_worker_sdk.observability.tracing_env import MISSING_EXTRA, wanted
from tests.unit.test_cli_first_use import LEAF_HOOKS, SCRIPT

#: Runs one message through ``kombu-worker``'s own entry point, then reports what was imported.
RUN_AND_REPORT = """\
import json, sys
from kombu_worker_sdk.cli.main import main
sys.argv = ["kombu-worker", "--hooks", "hooks:LeafHooks", "--max-messages", "1"]
try:
    main()
except SystemExit as stop:
    code = stop.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
print(json.dumps({"code": code, "otel": loaded}), file=sys.stderr)
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KOMBU_WORKER_", "PYTHONPATH"))}
    env["KOMBU_WORKER_LOG_LEVEL"] = "WARNING"
    return {**env, **extra}


def service(tmp_path: Path) -> Path:
    (tmp_path / "hooks.py").write_text(LEAF_HOOKS)
    sent = subprocess.run(
        [str(SCRIPT), "send", "--job-id", "j1", "--input-uri", "s3://b/in", "--output-prefix", "s3://b/o/"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sent.returncode == 0, sent.stderr
    return tmp_path


def run_one(folder: Path, **env: str) -> tuple[dict[str, object], str]:
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT],
        cwd=folder,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report, done.stdout


def test_without_otel_variables_a_worker_never_imports_opentelemetry(tmp_path: Path) -> None:
    report, _ = run_one(service(tmp_path))
    assert report == {"code": 0, "otel": []}


def test_otel_traces_exporter_turns_tracing_on(tmp_path: Path) -> None:
    report, stdout = run_one(service(tmp_path), OTEL_TRACES_EXPORTER="console", OTEL_BSP_SCHEDULE_DELAY="50")
    assert report["code"] == 0 and "opentelemetry.sdk.trace" in report["otel"]  # type: ignore[operator]
    assert '"kind": "SpanKind.CONSUMER"' in stdout and '"kombu_worker.task_id": "j1-' in stdout


def test_otel_variables_without_the_extra_fail_at_start_up_in_one_line(tmp_path: Path) -> None:
    folder = service(tmp_path)
    missing = tmp_path / "no-otel"  # what an install without the [otel] extra finds
    (missing / "opentelemetry").mkdir(parents=True)
    (missing / "opentelemetry" / "__init__.py").write_text("raise ImportError('not installed')\n")
    done = subprocess.run(
        [str(SCRIPT), "--hooks", "hooks:LeafHooks", "--max-messages", "1"],
        cwd=folder,
        env=clean_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", PYTHONPATH=str(missing)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: " + MISSING_EXTRA.format(var="OTEL_EXPORTER_OTLP_ENDPOINT")
    ]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1/traces"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, None),
    ],
)
def test_the_standard_variables_decide(environ: dict[str, str], expected: str | None) -> None:
    assert wanted(environ) == expected
