"""Security (issue 10 §2): a message cannot make the worker read local files.

``file://`` inputs are read only under ``local_input_root``; a worker on SQS or with S3
storage has none unless one is configured, and the embedded mode's is ``data_dir``. One
gate in storage/ (``resolve_local_input``) serves every backend's ``read`` and ``open``,
``ctx.storage`` and the validate stage, and resolves symlinks before the containment check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from kombu_worker_sdk.config import WorkerConfig, load_config
from kombu_worker_sdk.errors import ConfigError, LocalInputViolation, ObjectNotFoundError, UnsafeURIError
from kombu_worker_sdk.hooks import WorkerHooks
from kombu_worker_sdk.pipeline import Disposition, TaskRun
from kombu_worker_sdk.storage import LocalStorage, MemoryStorage, ScopedStorage, Storage
from kombu_worker_sdk.storage.s3 import S3Storage
from kombu_worker_sdk.worker.runtime import build_runtime
from tests.unit.security_common import BUCKET, PREFIX, REPO, refused_endpoint

SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``root/`` (allowed) holding a good file and symlinks out; ``outside/`` holding a secret."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "inputs").mkdir(parents=True)
    outside.mkdir()
    (root / "inputs" / "good.txt").write_bytes(b"good bytes")
    (outside / "secret.txt").write_bytes(b"secret")
    os.symlink(outside / "secret.txt", root / "inputs" / "link-to-secret.txt")
    os.symlink(outside, root / "inputs" / "link-to-outside")
    os.symlink(root / "inputs" / "good.txt", root / "inputs" / "link-inside.txt")
    return tmp_path


def hostile_uris(base: Path) -> list[str]:
    """Local URIs that must be refused even when ``base/root`` is the local root."""
    root, outside = base / "root", base / "outside"
    return [
        "file:///etc/passwd",
        f"file://{SA_TOKEN}",
        f"file://{outside}/secret.txt",
        f"file://{root}/inputs/link-to-secret.txt",  # a symlink out of the root
        f"file://{root}/inputs/link-to-outside/secret.txt",  # a symlinked folder out of the root
        f"file://{root}-sibling/inputs/good.txt",  # a prefix of the root is not the root
        f"file://host{root}/inputs/good.txt",  # file:// with a host, even over an allowed path
        f"file://localhost{root}/inputs/good.txt",
        "file://localhost/etc/passwd",
        "FILE:///etc/passwd",
        f"file://{root}/inputs/%2e%2e/%2e%2e/outside/secret.txt",
        f"file://{root}/inputs/%2E%2E/%2E%2E/outside/secret.txt",
        f"file://{root}%2Finputs%2F..%2F..%2Foutside%2Fsecret.txt",
        "file:///etc%2Fpasswd",
        f"file://{root}/inputs/%252e%252e/%252e%252e/outside/secret.txt",  # double encoding
        f"file://{root}/inputs/good%252Etxt",
        f"file://{root}/inputs/../../outside/secret.txt",
        f"file://{root}/inputs/./good.txt",
        f"file://{root}/inputs/good.txt%00.png",
        f"file://{root}/inputs\\..\\..\\outside\\secret.txt",
        f"file:{str(root).lstrip('/')}/inputs/good.txt",  # no leading slash: a relative path
    ]


@pytest.fixture
def dead_s3() -> Iterator[Any]:
    """An S3 client for an endpoint that refuses connections: any request would fail loudly."""
    with refused_endpoint() as url:
        yield boto3.session.Session().client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="AKIDTEST",
            aws_secret_access_key="not-a-secret",
            config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2),
        )


Backend = Callable[[Path | None], Storage]


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, dead_s3: Any) -> Backend:
    """The backends that read disk: LocalStorage and S3Storage (file:// inputs)."""
    if request.param == "local":
        return lambda root: LocalStorage(
            tmp_path / "storage", allowed_buckets=[BUCKET], local_input_root=root
        )
    return lambda root: S3Storage([BUCKET], local_input_root=root, client=dead_s3)


def read_via(storage: Storage, how: str, uri: str) -> bytes:
    """Every read path: the backend's read/open and ctx.storage's read/open."""
    scoped = ScopedStorage(storage, PREFIX)
    if how in {"read", "open"}:
        target: Any = storage
    else:
        target, how = scoped, how.removeprefix("scoped-")
    if how == "read":
        data: bytes = target.read(uri)
        return data
    with target.open(uri) as handle:
        opened: bytes = handle.read()
        return opened


READ_PATHS = ["read", "open", "scoped-read", "scoped-open"]


@pytest.mark.parametrize("how", READ_PATHS)
def test_without_a_root_no_local_path_is_read(backend: Backend, tree: Path, how: str) -> None:
    storage = backend(None)
    for uri in [*hostile_uris(tree), f"file://{tree}/root/inputs/good.txt"]:
        with pytest.raises(LocalInputViolation):
            read_via(storage, how, uri)
    with pytest.raises(LocalInputViolation, match="set local_input_root"):
        storage.check_readable("file:///etc/passwd")  # what the validate stage calls


@pytest.mark.parametrize("how", READ_PATHS)
def test_with_a_root_only_files_really_under_it_are_read(backend: Backend, tree: Path, how: str) -> None:
    storage = backend(tree / "root")
    for uri in hostile_uris(tree):
        with pytest.raises(LocalInputViolation):
            read_via(storage, how, uri)
    assert read_via(storage, how, f"file://{tree}/root/inputs/good.txt") == b"good bytes"
    assert read_via(storage, how, f"file://{tree}/root/inputs/link-inside.txt") == b"good bytes"
    with pytest.raises(ObjectNotFoundError):
        read_via(storage, how, f"file://{tree}/root/inputs/missing.txt")


def test_the_refusal_is_an_unsafe_uri_error_so_it_is_never_retried(tree: Path) -> None:
    storage = MemoryStorage(local_input_root=tree / "root")
    with pytest.raises(UnsafeURIError):
        storage.check_readable(f"file://{tree}/root/inputs/link-to-secret.txt")
    assert issubclass(LocalInputViolation, UnsafeURIError)


def test_memory_storage_is_held_to_the_same_gate(tree: Path) -> None:
    """No disk behind it, yet unit tests of hooks must see the refusals production sees."""
    storage = MemoryStorage(local_input_root=tree / "root")
    good = f"file://{tree}/root/inputs/good.txt"
    storage.objects[good] = b"kept in memory"
    for uri in hostile_uris(tree):
        storage.objects[uri] = b"secret"
        with pytest.raises(LocalInputViolation):
            storage.read(uri)
    assert storage.read(good) == b"kept in memory"
    with pytest.raises(LocalInputViolation):
        MemoryStorage().read(good)


def test_a_symlinked_root_still_contains_its_own_files(tree: Path) -> None:
    os.symlink(tree / "root", tree / "root-link")
    storage = LocalStorage(tree / "storage", local_input_root=tree / "root-link")
    assert storage.read(f"file://{tree}/root-link/inputs/good.txt") == b"good bytes"
    assert storage.read(f"file://{tree}/root/inputs/good.txt") == b"good bytes"  # the same real folder
    with pytest.raises(LocalInputViolation):
        storage.read(f"file://{tree}/root-link/inputs/link-to-secret.txt")


def test_s3_keys_are_not_local_paths(tree: Path) -> None:
    """On the embedded file storage, s3:// URIs map into the storage root, never elsewhere."""
    storage = LocalStorage(tree / "storage", local_input_root=tree / "root")
    with pytest.raises(UnsafeURIError):
        storage.read(f"s3://{BUCKET}/../outside/secret.txt")


# ---------------------------------------------------------------------------- configuration


def config_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"KOMBU_WORKER_DATA_DIR": str(tmp_path / "data"), **extra}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, "data", id="embedded-default-reads-under-data-dir"),
        pytest.param({"BROKER_URL": "sqs://"}, None, id="sqs-reads-nothing-local"),
        pytest.param({"STORAGE_URL": "s3://"}, None, id="s3-storage-reads-nothing-local"),
        pytest.param({"BROKER_URL": "sqs://", "STORAGE_URL": "s3://"}, None, id="production-pair"),
        pytest.param({"STORAGE_URL": "memory://", "BROKER_URL": "memory://"}, None, id="memory"),
        pytest.param({"BROKER_URL": "sqs://", "KOMBU_WORKER_LOCAL_INPUT_ROOT": "ROOT"}, "root", id="named"),
        pytest.param({"KOMBU_WORKER_LOCAL_INPUT_ROOT": "ROOT"}, "root", id="named-replaces-data-dir"),
    ],
)
def test_the_local_root_in_effect(tree: Path, env: dict[str, str], expected: str | None) -> None:
    env = {k: v.replace("ROOT", str(tree / "root")) for k, v in env.items()}
    config = load_config(config_dir=REPO / "config", env=config_env(tree, **env))
    assert config.effective_local_input_root == (None if expected is None else tree / expected)


@pytest.mark.parametrize("name", ["production", "vastra", "ytbot"])
def test_shipped_production_configs_read_no_local_file(tmp_path: Path, name: str) -> None:
    config = load_config(name, config_dir=REPO / "config", env=config_env(tmp_path))
    assert config.effective_local_input_root is None


def test_no_shipped_config_sets_the_removed_key() -> None:
    for path in [*(REPO / "config").glob("*.yaml"), *(REPO / "helm").rglob("*.yaml")]:
        assert "allow_local_input" not in path.read_text(encoding="utf-8"), path


@pytest.mark.parametrize("value", ["true", "false"])
def test_the_removed_boolean_is_refused_and_says_what_to_set(tmp_path: Path, value: str) -> None:
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(f"allow_local_input: {value}\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml: key 'allow_local_input'.*set local_input_root"):
        load_config(str(cfg), config_dir=REPO / "config", env=config_env(tmp_path))
    env = config_env(tmp_path, KOMBU_WORKER_ALLOW_LOCAL_INPUT=value)
    with pytest.raises(ConfigError, match=r"\$KOMBU_WORKER_ALLOW_LOCAL_INPUT.*local_input_root"):
        load_config(config_dir=REPO / "config", env=env)


def test_a_local_root_that_is_not_a_directory_is_refused_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    for missing in [tmp_path / "nope", tmp_path / "file.txt"]:
        env = config_env(tmp_path, KOMBU_WORKER_LOCAL_INPUT_ROOT=str(missing))
        with pytest.raises(
            ConfigError, match=r"KOMBU_WORKER_LOCAL_INPUT_ROOT.*local_input_root.*not a directory"
        ):
            load_config(config_dir=REPO / "config", env=env)


# ------------------------------------------------------------------- through the pipeline


class ReadInputHooks(WorkerHooks):
    """Reads its input through ctx.storage, as the seed README's hooks do."""

    def load_pipeline(self, ctx: Any) -> None:
        return None

    def process(self, ctx: Any, msg: Any) -> Any:
        return {"result": {"text": ctx.storage.read(msg.input_uri).decode()}}

    def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
        return []


def run_bodies(config: WorkerConfig, inputs: dict[str, str]) -> dict[str, tuple[Disposition, str, str]]:
    """Each task id -> (disposition, error class, task status), on a runtime built from ``config``."""
    runtime = build_runtime(config, ReadInputHooks())
    runtime.state.upgrade()
    runtime.start()
    try:
        bodies = {
            task: json.dumps(
                {
                    "job_id": f"{task}-job",
                    "task_id": task,
                    "input_uri": uri,
                    "output_prefix": f"s3://{BUCKET}/jobs/{task}/",
                }
            )
            for task, uri in inputs.items()
        }
        runs = {t: TaskRun(b, None, 1, runtime, runtime.logger.bind(attempt=1)) for t, b in bodies.items()}
        runtime.pipeline.run(list(runs.values()))
        results = {}
        for task, run in runs.items():
            assert run.outcome is not None
            record = runtime.state.get_task(task)
            status = record.status.value if record else "-"
            results[task] = (run.outcome.disposition, type(run.outcome.error).__name__, status)
        return results
    finally:
        runtime.close()


def test_the_embedded_worker_reads_under_its_data_folder_only(tree: Path) -> None:
    data = tree / "data"
    (data / "inputs").mkdir(parents=True)
    (data / "inputs" / "in.txt").write_text("from the data folder")
    config = WorkerConfig(broker_url="memory://", queue="q", data_dir=data, worker_id="t")
    results = run_bodies(
        config,
        {
            "inside": f"file://{data}/inputs/in.txt",
            "passwd": "file:///etc/passwd",
            "root-but-not-data": f"file://{tree}/root/inputs/good.txt",
            "dotdot": f"file://{data}/inputs/%2e%2e/%2e%2e/outside/secret.txt",
        },
    )
    assert results["inside"] == (Disposition.ACK, "NoneType", "DONE")
    refused = (Disposition.DEAD_LETTER, "LocalInputViolation", "FAILED")
    assert results["passwd"] == results["root-but-not-data"] == results["dotdot"] == refused
    storage = LocalStorage(data / "storage")
    assert json.loads(storage.read(f"s3://{BUCKET}/jobs/inside/result.json")) == {
        "text": "from the data folder"
    }
    assert storage.find_result(f"s3://{BUCKET}/jobs/passwd/") is None


def test_a_named_root_is_the_only_local_folder_read(tree: Path) -> None:
    data = tree / "data"
    config = WorkerConfig(
        broker_url="memory://", queue="q", data_dir=data, worker_id="t", local_input_root=tree / "root"
    )
    (data / "inputs").mkdir(parents=True)
    (data / "inputs" / "in.txt").write_text("x")
    results = run_bodies(
        config,
        {
            "good": f"file://{tree}/root/inputs/good.txt",
            "symlink-out": f"file://{tree}/root/inputs/link-to-secret.txt",
            "data-dir": f"file://{data}/inputs/in.txt",
        },
    )
    assert results["good"] == (Disposition.ACK, "NoneType", "DONE")
    refused = (Disposition.DEAD_LETTER, "LocalInputViolation", "FAILED")
    assert results["symlink-out"] == results["data-dir"] == refused
