"""Config: WORKER_CONFIG picks the file, env merges in, errors name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kombu_worker_sdk.config import load_config
from kombu_worker_sdk.errors import ConfigError
from kombu_worker_sdk.masking import mask_url

REPO_CONFIG = Path(__file__).parents[2] / "config"


def test_shipped_configs_all_load() -> None:
    for name in ("default", "vastra", "ytbot", "production"):
        config = load_config(name, config_dir=REPO_CONFIG, env={})
        assert config.queue
    assert load_config("vastra", config_dir=REPO_CONFIG, env={}).batch_size == 8
    assert load_config(None, config_dir=REPO_CONFIG, env={"WORKER_CONFIG": "ytbot"}).concurrency == 16
    assert load_config(None, config_dir=REPO_CONFIG, env={}).effective_broker_url == "filesystem://"


def test_layers_merge_in_order(tmp_path: Path) -> None:
    (tmp_path / "default.yaml").write_text("concurrency: 2\nqueue: from-default\nmax_attempts: 4\n")
    (tmp_path / "gpu.yaml").write_text("concurrency: 3\n")
    (tmp_path / "queues.yaml").write_text("input_queue: from-queues-file\nnext_queue: nxt\n")
    env = {
        "WORKER_CONFIG": "gpu",
        "QUEUE_URL": "from-env",
        "KOMBU_WORKER_MAX_ATTEMPTS": "7",
        "DB_DSN": "postgresql://u:pw@h/db",
        "KOMBU_WORKER_ALLOWED_BUCKETS": "[a, b]",
    }
    config = load_config(config_dir=tmp_path, env=env, overrides={"concurrency": 5, "queue": None})
    assert config.concurrency == 5
    assert config.queue == "from-env"
    assert config.next_queue == "nxt"
    assert config.max_attempts == 7
    assert config.allowed_buckets == ["a", "b"]
    assert config.masked()["db_dsn"] == "postgresql://u:***@h/db"


@pytest.mark.parametrize(
    ("files", "env", "message"),
    [
        ({"default.yaml": "concurency: 2\n"}, {}, r"default.yaml: unknown config key 'concurency'"),
        ({"default.yaml": "concurrency: many\n"}, {}, r"default.yaml: key 'concurrency'"),
        ({"default.yaml": "[1, 2]\n"}, {}, r"default.yaml: top level must be a mapping"),
        ({"default.yaml": "a: [\n"}, {}, r"default.yaml: cannot read YAML"),
        ({"queues.yaml": "inbox: x\n"}, {}, r"queues.yaml: unknown key 'inbox'"),
        ({}, {"WORKER_CONFIG": "nope"}, r"WORKER_CONFIG='nope': no config file"),
        ({}, {"KOMBU_WORKER_CONCURRENCY": "0"}, r"\$KOMBU_WORKER_CONCURRENCY: key 'concurrency'"),
        ({}, {"KOMBU_WORKER_BOGUS": "1"}, r"\$KOMBU_WORKER_BOGUS: unknown config key 'bogus'"),
    ],
)
def test_errors_name_the_file_and_key(
    tmp_path: Path, files: dict[str, str], env: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(config_dir=tmp_path, env=env)


def test_secrets_masked_everywhere() -> None:
    text = "connect postgresql://app:s3cr3t@db:5432/x and redis://:pw@r/0"
    assert "s3cr3t" not in mask_url(text) and ":pw@" not in mask_url(text)
    config = load_config(config_dir="/nonexistent", env={"KOMBU_WORKER_REGION": "eu-west-1"})
    assert config.masked()["region"] == "eu-west-1"


def test_fifo_dead_letter_queue_name() -> None:
    config = load_config(config_dir="/nonexistent", env={"QUEUE_URL": "https://sqs/1/jobs.fifo"})
    assert config.effective_dead_letter_queue == "https://sqs/1/jobs-dlq.fifo"


def test_fault_injection_variables_are_not_config_keys() -> None:
    env = {"KOMBU_WORKER_FAULTS": "after_claim=0.1", "KOMBU_WORKER_FAULTS_LOG": "/tmp/x"}
    assert load_config(config_dir="/nonexistent", env=env).queue == "tasks"
