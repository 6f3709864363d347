"""Security (issue 4 §7c): a DSN password and the AWS secret key never appear in logs, errors,
``config show``, ``check`` or a worker's output.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import WorkerSDKError
from kombu_worker_sdk.logs import configure_logging
from kombu_worker_sdk.pipeline import TaskRun
from kombu_worker_sdk.storage import MemoryStorage
from kombu_worker_sdk.worker.runtime import build_runtime
from tests.conftest import wait_for
from tests.sample_hooks import StepHooks
from tests.unit.security_common import BUCKET, DSN, REPO, SECRET_KEY, SECRET_PW, message, refused_endpoint


@pytest.fixture
def dead_endpoint() -> Iterator[str]:
    """A bound socket that never listens: any request to it is refused at once."""
    with refused_endpoint() as url:
        yield url


# ------------------------------------------------------------------------ (c) no secrets out


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging("DEBUG", stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "_kombu_worker", False):
                root.removeHandler(handler)
        root.setLevel(level)


def test_a_pipeline_with_an_unreachable_database_never_logs_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured_logs: io.StringIO
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    config = WorkerConfig(
        broker_url="memory://",
        queue=f"q-{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path,
        db_dsn=DSN,
        max_attempts=1,
        allowed_buckets=[BUCKET],
    )
    runtime = build_runtime(config, StepHooks(), storage=MemoryStorage(allowed_buckets=[BUCKET]))
    errors: list[BaseException] = []
    try:
        runtime.state.upgrade()
    except WorkerSDKError as exc:
        errors.append(exc)
    bodies = [
        json.dumps(message("good")),  # reaches the claim: the database is down
        json.dumps(message("bad", input_uri="file:///etc/passwd")),  # dead-lettered: state.fail fails too
        "not json",
    ]
    runs = [TaskRun(body, None, 1, runtime, runtime.logger.bind(attempt=1)) for body in bodies]
    runtime.pipeline.run(runs)
    runtime.logger.info("state store: %r", runtime.state)
    runtime.close()
    outcomes = [run.outcome for run in runs]
    assert errors and all(o is not None for o in outcomes)
    text = "\n".join(
        [
            captured_logs.getvalue(),
            *(f"{e!s} {e!r} {e.__cause__!s}" for e in errors),
            *(f"{o.reason} {o.error!s}" for o in outcomes if o is not None),
        ]
    )
    assert "127.0.0.1:1/db" in text and "giving up" in text  # the failures were reported...
    assert SECRET_PW not in text and SECRET_KEY not in text  # ...without the secrets


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOMBU_WORKER_", "KWS_"))} | {
        "PYTHONPATH": str(REPO),
        "WORKER_CONFIG_DIR": str(REPO / "config"),
        "KOMBU_WORKER_DATA_DIR": str(tmp_path / "data"),
        "KOMBU_WORKER_LOG_LEVEL": "DEBUG",
        "DB_DSN": DSN,
        "AWS_ACCESS_KEY_ID": "AKIDTEST",
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return env | extra


def kombu_worker(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("kombu-worker")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kombu_worker_sdk.runner"]
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_no_secrets(output: str) -> None:
    assert SECRET_PW not in output
    assert SECRET_KEY not in output


DSN_FORMS = [
    pytest.param(DSN, id="url-userinfo"),
    pytest.param(f"postgresql://u@127.0.0.1:1/db?password={SECRET_PW}", id="url-password-parameter"),
    pytest.param(f"host=127.0.0.1 port=1 dbname=db user=u password={SECRET_PW}", id="keyword-value"),
]


@pytest.mark.parametrize("dsn", DSN_FORMS)
def test_config_show_masks_every_secret(tmp_path: Path, dsn: str) -> None:
    env = cli_env(tmp_path, DB_DSN=dsn, BROKER_URL=f"sqs://AKIDTEST:{SECRET_KEY}@")
    shown = kombu_worker("config", "show", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "db_dsn:" in shown.stdout and "broker_url: sqs://AKIDTEST:***@" in shown.stdout
    assert_no_secrets(shown.stdout + shown.stderr)


@pytest.mark.parametrize("dsn", DSN_FORMS)
def test_check_reports_the_database_down_without_its_password(tmp_path: Path, dsn: str) -> None:
    checked = kombu_worker("check", env=cli_env(tmp_path, DB_DSN=dsn))
    assert checked.returncode == 1
    assert "FAIL database" in checked.stdout
    assert_no_secrets(checked.stdout + checked.stderr)


def test_check_against_dead_aws_endpoints_shows_no_secret(tmp_path: Path, dead_endpoint: str) -> None:
    env = cli_env(
        tmp_path,
        BROKER_URL="sqs://",
        STORAGE_URL="s3://",
        BUCKET=BUCKET,
        QUEUE_URL=f"{dead_endpoint}/123456789012/in",
        AWS_ENDPOINT_URL=dead_endpoint,
    )
    checked = kombu_worker("check", env=env)
    assert checked.returncode == 1
    assert [line.split()[0] for line in checked.stdout.splitlines()] == ["FAIL"] * 4
    assert_no_secrets(checked.stdout + checked.stderr)


def test_a_worker_that_cannot_reach_its_database_exits_with_a_masked_error(tmp_path: Path) -> None:
    ran = kombu_worker("--hooks", "tests.sample_hooks:StepHooks", env=cli_env(tmp_path))
    assert ran.returncode == 1
    assert "127.0.0.1:1/db is unavailable" in ran.stderr
    assert_no_secrets(ran.stdout + ran.stderr)


def test_a_worker_retrying_dead_aws_endpoints_never_logs_the_secret_key(
    tmp_path: Path, dead_endpoint: str
) -> None:
    env = cli_env(
        tmp_path,
        DB_DSN=f"sqlite:///{tmp_path / 'state.db'}",
        BROKER_URL="sqs://",
        STORAGE_URL="s3://",
        BUCKET=BUCKET,
        QUEUE_URL=f"{dead_endpoint}/123456789012/in",
        AWS_ENDPOINT_URL=dead_endpoint,
    )
    script = Path(sys.executable).with_name("kombu-worker")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kombu_worker_sdk.runner"]
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*command, "--hooks", "tests.sample_hooks:StepHooks"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: "Connection to broker lost" in log.read_text(), timeout=30, interval=0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
    output = log.read_text()
    assert code == 0, output[-2000:]
    assert "AKIDTEST" not in output  # not even the key id
    assert_no_secrets(output)


def test_secret_canaries_are_really_in_the_environment_we_pass(tmp_path: Path) -> None:
    """Guard against a vacuous pass: the secrets do reach the process."""
    env = cli_env(tmp_path)
    shown = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ['AWS_SECRET_ACCESS_KEY'], os.environ['DB_DSN'])"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert SECRET_KEY in shown.stdout and SECRET_PW in shown.stdout
