"""What a new user meets first (issue 10, section 7), run as they run it.

Each test drives the installed ``kombu-worker`` console script (not ``python -m``) in a
fresh temporary folder with no ``config/``, no PYTHONPATH and none of the SDK's variables:
the state of a service folder on its first day.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import click
import pytest

from kombu_worker_sdk.cli.main import send
from kombu_worker_sdk.hooks import WorkerHooks
from kombu_worker_sdk.testing import fake_context, load_model
from tests.servers import require_module

REPO = Path(__file__).parents[2]
SCRIPT = Path(sys.executable).parent / "kombu-worker"
CLEARED = ("PYTHONPATH", "VIRTUAL_ENV", "DB_DSN", "QUEUE_URL", "NEXT_QUEUE_URL", "BROKER_URL", "STORAGE_URL")

LEAF_HOOKS = """\
from kombu_worker_sdk import WorkerHooks


class LeafHooks(WorkerHooks):
    def load_pipeline(self, ctx):
        return None

    def process(self, ctx, msg):
        return {"result": {"ok": True}}

    def publish_next(self, ctx, msg, outputs):
        return []
"""


def user_env() -> dict[str, str]:
    """The environment of a user's shell: no SDK variables, the venv not activated."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CLEARED and not k.startswith(("KOMBU_WORKER_", "WORKER_CONFIG"))
    }
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env["KOMBU_WORKER_LOG_LEVEL"] = "WARNING"
    return env


def kw(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=120
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def send_leaf(cwd: Path, *global_args: str, job: str = "j1") -> None:
    sent = kw(
        cwd, *global_args, "send", "--job-id", job, "--input-uri", "s3://b/in", "--output-prefix", "s3://b/o/"
    )
    assert sent.returncode == 0, sent.stderr


@pytest.fixture
def service(tmp_path: Path) -> Path:
    folder = tmp_path / "svc"
    (folder / "service").mkdir(parents=True)
    (folder / "service" / "hooks.py").write_text(LEAF_HOOKS)
    return folder


def test_console_script_imports_hooks_from_the_current_folder(service: Path) -> None:
    send_leaf(service)
    run = kw(service, "--hooks", "service.hooks:LeafHooks", "--max-messages", "1")
    assert run.returncode == 0, run.stderr
    assert "job j1: DONE (1/1 done, 0 failed)" in kw(service, "status", "j1").stdout


def test_global_config_and_data_dir_reach_every_subcommand(tmp_path: Path) -> None:
    (tmp_path / "my.yaml").write_text("queue: from-my-yaml\ndata_dir: my-data\n")
    (tmp_path / "other.yaml").write_text("queue: from-other-yaml\n")
    shown = kw(tmp_path, "--config", "my.yaml", "config", "show").stdout.splitlines()
    assert any(line.startswith("queue:") and "from-my-yaml" in line for line in shown), shown
    own = kw(tmp_path, "--config", "my.yaml", "config", "show", "--config", "other.yaml").stdout
    assert "from-other-yaml" in own, "a subcommand's own --config wins over the global one"
    send_leaf(tmp_path, "--config", "my.yaml")
    assert (tmp_path / "my-data" / "state.db").is_file() and not (tmp_path / ".kombu-worker").exists()
    assert "job j1: RUNNING" in kw(tmp_path, "--config", "my.yaml", "status", "j1").stdout
    send_leaf(tmp_path, "--data-dir", "flag-data", job="j2")
    assert "job j2: RUNNING" in kw(tmp_path, "--data-dir", "flag-data", "status", "j2").stdout
    line = one_error_line(kw(tmp_path, "--hooks", "service.hooks:LeafHooks", "status", "j2"))
    assert "--hooks" in line and "status" in line, "a worker flag given to a subcommand is not ignored"


def test_status_elsewhere_names_where_it_looked_and_creates_nothing(tmp_path: Path) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    send_leaf(work)
    line = one_error_line(kw(elsewhere, "status", "j1"))
    assert f"no SQLite state database at {elsewhere / '.kombu-worker' / 'state.db'}" in line
    assert "--data-dir" in line
    assert list(elsewhere.iterdir()) == [], "status must not create a folder or a state.db"
    found = kw(elsewhere, "--data-dir", str(work / ".kombu-worker"), "status", "j1")
    assert found.returncode == 0 and "job j1: RUNNING" in found.stdout
    unknown = one_error_line(kw(work, "status", "nope"))
    assert unknown == f"error: no job 'nope' in sqlite:///{work / '.kombu-worker' / 'state.db'}"


def test_status_on_an_empty_state_file_says_it_has_no_tables_and_leaves_it_empty(tmp_path: Path) -> None:
    (tmp_path / ".kombu-worker").mkdir()
    empty = tmp_path / ".kombu-worker" / "state.db"
    empty.touch()
    line = one_error_line(kw(tmp_path, "status", "j1"))
    assert "has no tables" in line and str(empty) in line
    assert empty.stat().st_size == 0, "no schema is created by a read command"


def test_send_with_a_missing_file_is_one_line(tmp_path: Path) -> None:
    line = one_error_line(kw(tmp_path, "send", "missing.json"))
    assert line == "error: cannot read missing.json: No such file or directory"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os\n\ndef broken(:\n    pass\n", ["syntax error", "hooks.py:3"]),
        ("import os\n\nSETTINGS = undefined_name\n", ["hooks.py:3", "NameError"]),
    ],
)
def test_a_hooks_module_that_does_not_import_is_one_line_with_file_and_line(
    service: Path, source: str, expected: list[str]
) -> None:
    (service / "service" / "hooks.py").write_text(source)
    line = one_error_line(kw(service, "--hooks", "service.hooks:LeafHooks"))
    assert str(service / "service" / "hooks.py") in line
    for text in expected:
        assert text in line


def test_send_help_documents_every_flag_and_the_defaults(tmp_path: Path) -> None:
    undocumented = [p.name for p in send.params if isinstance(p, click.Option) and not p.help]
    assert undocumented == []
    text = " ".join(kw(tmp_path, "send", "--help").stdout.split())
    for default in ("tasks", ".kombu-worker", "<job>-root"):
        assert default in text, default


def test_the_command_the_demo_prints_runs_as_printed(tmp_path: Path) -> None:
    require_module("cv2")
    demo = kw(tmp_path, "demo")
    assert demo.returncode == 0, demo.stderr
    printed = [line.split("task tree:", 1)[1] for line in demo.stdout.splitlines() if "task tree:" in line]
    assert len(printed) == 1
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shown = subprocess.run(
        shlex.split(printed[0]), cwd=elsewhere, env=user_env(), capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert ": DONE (3/3 done, 0 failed)" in shown.stdout


def test_building_the_package_prints_no_package_data_warnings(tmp_path: Path) -> None:
    """The same setuptools build_py that ``pip install -e .`` runs, on a copy of the sources."""
    source = tmp_path / "src"
    shutil.copytree(
        REPO / "kombu_worker_sdk", source / "kombu_worker_sdk", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "out"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    output = build.stdout + build.stderr
    assert "is absent from the `packages` configuration" not in output
    assert "Package would be ignored" not in output
    (wheel,) = (tmp_path / "out").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "kombu_worker_sdk/examples/data/astronaut.png" in names, "the demo's photo must still ship"
    assert "kombu_worker_sdk/py.typed" in names
    assert not [n for n in names if "__pycache__" in n]


class ModelHooks(WorkerHooks):
    def load_pipeline(self, ctx: object) -> dict[str, int]:
        return {"scale": 2}

    def process(self, ctx: object, msg: object) -> dict[str, object]:
        return {"result": self.model["scale"]}

    def publish_next(self, ctx: object, msg: object, outputs: object) -> list[dict[str, object]]:
        return []


def test_load_model_gives_hooks_called_directly_their_model() -> None:
    hooks = ModelHooks()
    with pytest.raises(AttributeError):
        hooks.model = {"scale": 3}
    assert load_model(hooks) is hooks
    ctx = fake_context()
    assert hooks.process(ctx, None) == {"result": 2}
    load_model(hooks, model={"scale": 5})
    assert hooks.process(ctx, None) == {"result": 5}, "a fake replaces the loaded model"
    assert load_model(ModelHooks(), ctx).model == {"scale": 2}, "load_pipeline runs again on request"
