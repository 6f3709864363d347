"""Backends follow the configuration's form; contradictions are refused naming both sources;
``sources`` says where every value came from."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from pydantic import ValidationError

from kombu_worker_sdk.config import WorkerConfig, load_config
from kombu_worker_sdk.errors import ConfigError
from kombu_worker_sdk.worker.runner import log_started

REPO_CONFIG = Path(__file__).parents[2] / "config"
SQS_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/detection"
NEXT_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/analysis"
DSN = "postgresql://app:s3cr3t@db:5432/pipeline"
SEED = {"QUEUE_URL": SQS_URL, "NEXT_QUEUE_URL": NEXT_URL, "BUCKET": "results", "DB_DSN": DSN}


def load(env: dict[str, str], config_dir: Path | str = "/nonexistent", **overrides: object) -> WorkerConfig:
    return load_config(config_dir=config_dir, env=env, overrides=overrides)


def test_the_seed_variables_alone_choose_sqs_s3_and_postgresql() -> None:
    config = load(SEED)
    assert config.backend_urls == {"broker_url": "sqs://", "storage_url": "s3://", "db_dsn": DSN}
    assert config.is_sqs_broker and not config.is_embedded_broker


def test_nothing_named_means_the_embedded_defaults_under_data_dir(tmp_path: Path) -> None:
    config = load({"KOMBU_WORKER_DATA_DIR": str(tmp_path)})
    assert config.backend_urls == {
        "broker_url": "filesystem://",
        "storage_url": f"file://{tmp_path.resolve() / 'storage'}",
        "db_dsn": f"sqlite:///{tmp_path.resolve() / 'state.db'}",
    }
    assert load({}, REPO_CONFIG).effective_broker_url == "filesystem://"  # the shipped default.yaml


@pytest.mark.parametrize(
    ("env", "broker"),
    [
        ({"QUEUE_URL": "http://localhost:4566/000000000000/q"}, "sqs://"),  # a local endpoint
        ({"NEXT_QUEUE_URL": NEXT_URL}, "sqs://"),  # any queue given as a URL names SQS
        ({"DLQ_URL": SQS_URL + "-dlq"}, "sqs://"),
        ({"QUEUE_URL": "detection"}, "filesystem://"),  # a bare name is an embedded queue
        ({"QUEUE_URL": "detection", "BROKER_URL": "sqs://"}, "sqs://"),  # sqs:// with a name is fine
        ({"QUEUE_URL": SQS_URL, "BROKER_URL": "sqs://AKID:secret@"}, "sqs://AKID:secret@"),
    ],
)
def test_the_broker_follows_the_queue_form(env: dict[str, str], broker: str) -> None:
    assert load(env).effective_broker_url == broker


@pytest.mark.parametrize(
    ("env", "storage"),
    [
        ({"BUCKET": "results"}, "s3://"),
        ({"BUCKET": "results", "STORAGE_URL": "s3://"}, "s3://"),
        ({"STORAGE_URL": "memory://"}, "memory://"),
    ],
)
def test_storage_follows_the_bucket(env: dict[str, str], storage: str) -> None:
    assert load(env).effective_storage_url == storage


def test_a_queue_url_against_a_filesystem_broker_in_a_file_names_both(tmp_path: Path) -> None:
    (tmp_path / "default.yaml").write_text("broker_url: filesystem://\n")
    with pytest.raises(ConfigError) as caught:
        load({"QUEUE_URL": SQS_URL}, tmp_path)
    message = str(caught.value)
    assert message.startswith(
        f"$QUEUE_URL is an SQS queue URL ({SQS_URL}) but {tmp_path / 'default.yaml'} sets broker_url: filesystem://"
    )
    assert "\n" not in message and "unset broker_url" in message


def test_a_queue_url_in_queues_yaml_against_a_command_line_broker(tmp_path: Path) -> None:
    (tmp_path / "queues.yaml").write_text(f"input_queue: {SQS_URL}\n")
    with pytest.raises(
        ConfigError,
        match=r"queues.yaml sets queue to an SQS queue URL .* but command line sets broker_url: memory://",
    ):
        load({}, tmp_path, broker_url="memory://")


@pytest.mark.parametrize("storage", ["file:///srv/outputs", "memory://"])
def test_a_bucket_against_local_storage_names_both(storage: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({"BUCKET": "results", "KOMBU_WORKER_STORAGE_URL": storage})
    assert str(caught.value).startswith(
        f"$BUCKET is an S3 bucket (results) but $KOMBU_WORKER_STORAGE_URL sets storage_url: {storage}"
    )


def test_a_contradiction_masks_the_broker_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"QUEUE_URL": SQS_URL, "BROKER_URL": "filesystem://u:hunter2@"})
    assert "hunter2" not in str(caught.value) and "u:***@" in str(caught.value)


def test_built_in_code_gets_the_same_rules() -> None:
    """The check lives in the model, so a config built in code (tests, the demo) is held to it."""
    assert WorkerConfig(queue=SQS_URL).effective_broker_url == "sqs://"
    with pytest.raises(ConfigError, match=r"^queue is an SQS queue URL .* but broker_url is filesystem://"):
        WorkerConfig(queue=SQS_URL, broker_url="filesystem://")
    config = WorkerConfig(queue=SQS_URL)
    with pytest.raises(ConfigError, match="broker_url is memory://"):
        config.broker_url = "memory://"


def test_sources_name_the_file_the_variable_the_command_line_and_the_derivation(tmp_path: Path) -> None:
    (tmp_path / "default.yaml").write_text("concurrency: 2\n")
    config = load(SEED, tmp_path, max_attempts=9)
    sources = config.sources
    assert sources["concurrency"] == str(tmp_path / "default.yaml")
    assert sources["queue"] == "$QUEUE_URL" and sources["db_dsn"] == "$DB_DSN"
    assert sources["max_attempts"] == "command line"
    assert sources["broker_url"] == "derived from $QUEUE_URL"
    assert sources["storage_url"] == "derived from $BUCKET"
    assert sources["visibility_timeout"] == "built-in default"
    assert set(sources) == set(WorkerConfig.model_fields)


def test_a_backend_derived_from_a_file_names_the_key_and_the_file(tmp_path: Path) -> None:
    (tmp_path / "queues.yaml").write_text(f"input_queue: {SQS_URL}\n")
    assert load({}, tmp_path).sources["broker_url"] == f"derived from queue ({tmp_path / 'queues.yaml'})"
    assert load({"BROKER_URL": "sqs://"}, tmp_path).sources["broker_url"] == "$BROKER_URL"


def test_sources_are_not_a_setting() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'sources'"):
        load({"KOMBU_WORKER_SOURCES": "x"})
    with pytest.raises(ValidationError):
        WorkerConfig.model_validate({"sources": {"queue": "forged"}})


def test_show_is_yaml_of_the_values_in_use_each_with_its_source() -> None:
    config = load(SEED)
    text = config.show()
    shown = yaml.safe_load(text)
    assert shown["broker_url"] == "sqs://" and shown["storage_url"] == "s3://"
    assert shown["db_dsn"] == "postgresql://app:***@db:5432/pipeline" and "s3cr3t" not in text
    assert shown["queue"] == SQS_URL
    assert "broker_url: sqs://  # derived from $QUEUE_URL" in text.splitlines()
    assert set(shown) == set(WorkerConfig.model_fields)


class RecordingLogger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, fmt: str, *args: object) -> None:
        self.lines.append(("info", fmt % args))

    def warning(self, fmt: str, *args: object) -> None:
        self.lines.append(("warning", fmt % args))


def started(config: WorkerConfig) -> list[tuple[str, str]]:
    logger = RecordingLogger()
    log_started(SimpleNamespace(config=config, worker_id="w1", hooks_path="svc:Hooks", logger=logger))
    return logger.lines


def test_the_start_up_line_names_the_backends_in_use_with_passwords_masked() -> None:
    [(level, line)] = started(load(SEED))
    assert level == "info"
    assert line == (
        f"worker w1 started: hooks=svc:Hooks queue={SQS_URL} broker=sqs:// storage=s3:// "
        "state=postgresql://app:***@db:5432/pipeline"
    )


def test_an_sqs_broker_with_local_state_is_warned_about(tmp_path: Path) -> None:
    lines = started(load({"QUEUE_URL": SQS_URL, "BUCKET": "results", "KOMBU_WORKER_DATA_DIR": str(tmp_path)}))
    assert lines[1][0] == "warning"
    assert f"local state sqlite:///{tmp_path.resolve() / 'state.db'}" in lines[1][1]
    assert "set BUCKET and DB_DSN" in lines[1][1]
    assert len(started(load({"KOMBU_WORKER_DATA_DIR": str(tmp_path)}))) == 1  # all embedded: no warning
