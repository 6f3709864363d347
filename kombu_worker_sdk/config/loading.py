"""Loading: merge the YAML files, the seed's variables, KOMBU_WORKER_* and flags, layer by layer.

Every layer is checked key by key, so an error names the file (or variable) and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kombu_worker_sdk.config.model import WorkerConfig
from kombu_worker_sdk.errors import ConfigError

SEED_ENV = {
    "QUEUE_URL": "queue",
    "NEXT_QUEUE_URL": "next_queue",
    "DLQ_URL": "dead_letter_queue",
    "BUCKET": "bucket",
    "DB_DSN": "db_dsn",
    "BROKER_URL": "broker_url",
    "STORAGE_URL": "storage_url",
}
ENV_PREFIX = "KOMBU_WORKER_"
#: Variables under the prefix that are not config keys (fault injection, see faults.py).
NOT_CONFIG_ENV = frozenset({"KOMBU_WORKER_FAULTS", "KOMBU_WORKER_FAULTS_LOG"})
#: Keys that were removed, with what to set instead: refused, never silently ignored.
RETIRED_KEYS = {
    "lease_seconds": "a claim's lease is now one visibility_timeout, extended by the heartbeat "
    "while the task runs; remove lease_seconds and set visibility_timeout instead",
    # The old boolean let any message read any local file (true was the default).
    "allow_local_input": "file:// inputs are read only under local_input_root; set local_input_root "
    "to a directory, or leave it unset to read no local files",
}
QUEUES_FILE_KEYS = {"input_queue": "queue", "next_queue": "next_queue", "dlq": "dead_letter_queue"}


def load_config(
    name: str | None = None,
    *,
    config_dir: str | Path | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> WorkerConfig:
    """Build the merged, validated config. ``name`` defaults to $WORKER_CONFIG."""
    environ = dict(os.environ if env is None else env)
    directory = Path(config_dir or environ.get("WORKER_CONFIG_DIR") or "config")
    layers = _file_layers(name or environ.get("WORKER_CONFIG") or "default", directory)
    layers.extend(_env_layers(environ))
    layers.append(("command line", {k: v for k, v in (overrides or {}).items() if v is not None}))
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, data in layers:
        for key, value in data.items():
            if key in RETIRED_KEYS:
                raise ConfigError(f"{source}: key {key!r} is no longer supported: {RETIRED_KEYS[key]}")
            if key not in WorkerConfig.model_fields:
                raise ConfigError(f"{source}: unknown config key {key!r}")
            merged[key] = value
            origin[key] = source
    try:
        return WorkerConfig.model_validate(merged, context={"sources": origin})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        raise ConfigError(f"{origin.get(key, 'config')}: key {key!r}: {err['msg']}") from None


def _file_layers(name: str, directory: Path) -> list[tuple[str, dict[str, Any]]]:
    layers: list[tuple[str, dict[str, Any]]] = []
    default = directory / "default.yaml"
    if default.is_file():
        layers.append((str(default), _read_yaml(default)))
    named = _named_file(name, directory)
    if named is not None and named != default:
        layers.append((str(named), _read_yaml(named)))
    queues = directory / "queues.yaml"
    if queues.is_file():
        raw = _read_yaml(queues)
        unknown = set(raw) - set(QUEUES_FILE_KEYS)
        if unknown:
            raise ConfigError(f"{queues}: unknown key {sorted(unknown)[0]!r}")
        layers.append((str(queues), {QUEUES_FILE_KEYS[k]: v for k, v in raw.items() if v}))
    return layers


def _named_file(name: str, directory: Path) -> Path | None:
    is_path = name.endswith((".yaml", ".yml")) or os.sep in name
    path = Path(name) if is_path else directory / f"{name}.yaml"
    if path.is_file():
        return path
    if name == "default":
        return None
    raise ConfigError(f"WORKER_CONFIG={name!r}: no config file at {path}")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _env_layers(environ: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """One layer per variable, so an error names the variable that caused it."""
    layers = [(f"${var}", {key: environ[var]}) for var, key in SEED_ENV.items() if environ.get(var)]
    for var, value in sorted(environ.items()):
        if var.startswith(ENV_PREFIX) and var not in NOT_CONFIG_ENV:
            key = var[len(ENV_PREFIX) :].lower()
            layers.append((f"${var}", {key: yaml.safe_load(value) if key in _STRUCTURED_KEYS else value}))
    return layers


_STRUCTURED_KEYS = {"allowed_buckets", "stages"}
