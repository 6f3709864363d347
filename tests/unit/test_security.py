"""Security (issue 4 §7): JSON only; the allowlist and output-prefix guard on every path; no secrets out.

(a) Kombu is told to accept JSON only, and pickle is refused before anyone unpickles it.
(b) The bucket allowlist and the output-prefix guard hold in ScopedStorage, in the validate
    stage, in S3Storage itself (before any request), against LocalStorage symlinks, and for
    children returned by ``publish_next``.
(c) A DSN password and the AWS secret key never appear in logs, errors, ``config show``,
    ``check`` or a worker's output.

"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import boto3
import pytest
from botocore.config import Config
from kombu import Connection, Consumer

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import (
    BackendUnavailableError,
    DecodeError,
    OutputPrefixViolation,
    UnsafeURIError,
    WorkerSDKError,
)
from kombu_worker_sdk.logs import configure_logging
from kombu_worker_sdk.message import decode_body
from kombu_worker_sdk.pipeline import TaskRun
from kombu_worker_sdk.runtime import build_runtime
from kombu_worker_sdk.storage import LocalStorage, MemoryStorage, ScopedStorage
from kombu_worker_sdk.storage.s3 import S3Storage
from tests.conftest import RunningWorker, wait_for
from tests.fixtures.hostile_messages import PickleCanary, envelope
from tests.sample_hooks import StepHooks

REPO = Path(__file__).parents[2]
BUCKET = "bucket"
FOREIGN = "other-bucket"
PREFIX = f"s3://{BUCKET}/jobs/j1/step/"
SECRET_PW = "SECRETPW"
SECRET_KEY = "SECRETKEY"
DSN = f"postgresql://u:{SECRET_PW}@127.0.0.1:1/db"  # nothing listens on port 1

MakeWorker = Callable[..., RunningWorker]


def message(task_id: str = "t1", job_id: str = "j1", **changes: Any) -> dict[str, Any]:
    body = {
        "job_id": job_id,
        "task_id": task_id,
        "input_uri": f"s3://{BUCKET}/in.txt",
        "output_prefix": f"s3://{BUCKET}/jobs/{job_id}/{task_id}/",
        "params": {"step": "leaf"},
    }
    body.update(changes)
    return body


def drain_dead_letters(running: RunningWorker, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    """Wait for ``count`` dead letters; return their headers."""
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        found.extend(headers for _body, headers in running.dead_letters(timeout=0.05))
        return len(found) >= count

    wait_for(enough, timeout=timeout, interval=0.05)
    return found


# ------------------------------------------------------------------ (a) JSON only, never pickle


def test_the_workers_kombu_consumer_accepts_json_only(make_worker: MakeWorker) -> None:
    running = make_worker()
    with Connection("memory://") as conn:
        channel = conn.channel()
        consumers = running.worker.get_consumers(functools.partial(Consumer, channel), channel)
    assert len(consumers) == 1
    assert consumers[0].accept == {"application/json"}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param("pickle", "application/x-python-serialize", id="pickle-content-type"),
        pytest.param(
            "pickle", "APPLICATION/X-PYTHON-SERIALIZE; charset=binary", id="pickle-content-type-cased"
        ),
        pytest.param("pickle", None, id="bare-pickle-bytes"),
        pytest.param("pickle-envelope", None, id="pickle-in-kombu-envelope"),
        pytest.param("pickle-envelope-json-typed", "application/json", id="pickle-envelope-inside-json"),
    ],
)
def test_decode_body_refuses_pickle_without_unpickling_it(
    tmp_path: Path, body: str, content_type: str | None
) -> None:
    canary = tmp_path / "canary"
    pickled = pickle.dumps(PickleCanary(str(canary)))
    raw: bytes | str = {
        "pickle": pickled,
        "pickle-envelope": envelope(pickled, "application/x-python-serialize"),
        "pickle-envelope-json-typed": envelope(pickled, "application/x-python-serialize"),
    }[body]
    with pytest.raises(DecodeError):
        decode_body(raw, content_type)
    assert not canary.exists()
    pickle.loads(pickled)  # the canary works: unpickling really would have created it
    assert canary.is_dir()


@pytest.mark.parametrize("how", ["pickle-bytes", "kombu-pickle-serializer"])
def test_pickle_published_through_kombu_is_dead_lettered_never_unpickled(
    make_worker: MakeWorker, tmp_path: Path, how: str
) -> None:
    running = make_worker()
    canary = tmp_path / "canary"
    if how == "pickle-bytes":
        running.send_raw(
            pickle.dumps(PickleCanary(str(canary))),
            content_type="application/x-python-serialize",
            content_encoding="binary",
        )
    else:
        running.send_raw({"payload": PickleCanary(str(canary))}, serializer="pickle")  # type: ignore[arg-type]
    [headers] = drain_dead_letters(running, 1)
    assert headers["x-error"].startswith("DecodeError: refused content type")
    assert not canary.exists()


# ------------------------------------------------------------ (b) ScopedStorage on every path


class SpyStorage(MemoryStorage):
    """MemoryStorage that records every backend call, to prove the guard ran first."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[tuple[str, str]] = []

    def read(self, uri: str) -> bytes:
        self.calls.append(("read", uri))
        return super().read(uri)

    def open(self, uri: str) -> BinaryIO:
        self.calls.append(("open", uri))
        return super().open(uri)

    def put(self, uri: str, data: bytes, content_type: str) -> None:
        self.calls.append(("put", uri))
        super().put(uri, data, content_type)


FORBIDDEN_READS = [
    f"s3://{FOREIGN}/secret.txt",
    f"s3://{BUCKET}.evil/secret.txt",
    f"s3://{BUCKET}@{FOREIGN}/secret.txt",
    f"S3://{FOREIGN}/secret.txt",
    "file:///etc/passwd",
    "file://localhost/etc/passwd",
    "FILE:///etc/passwd",
]


@pytest.mark.parametrize("uri", FORBIDDEN_READS)
@pytest.mark.parametrize("method", ["read", "open"])
def test_scoped_storage_refuses_reads_outside_the_allowlist(uri: str, method: str) -> None:
    spy = SpyStorage(allowed_buckets=[BUCKET], allow_local_input=False)
    spy.objects[uri] = b"secret"
    scoped = ScopedStorage(spy, PREFIX)
    with pytest.raises(UnsafeURIError):
        getattr(scoped, method)(uri)
    assert spy.calls == []


@pytest.mark.parametrize(
    ("output_prefix", "prefix", "name", "error"),
    [
        (PREFIX, "", "../x.json", OutputPrefixViolation),
        (PREFIX, "", "%252e%252e/x.json", OutputPrefixViolation),
        (PREFIX, f"s3://{BUCKET}/jobs/j1/", "x.json", OutputPrefixViolation),
        (PREFIX, f"s3://{FOREIGN}/jobs/j1/step/", "x.json", OutputPrefixViolation),
        (PREFIX, "", f"s3://{FOREIGN}/x.json", OutputPrefixViolation),
        (f"s3://{FOREIGN}/jobs/j1/step/", "", "result.json", UnsafeURIError),
    ],
)
def test_scoped_storage_refuses_writes_outside_the_prefix_or_allowlist(
    output_prefix: str, prefix: str, name: str, error: type[Exception]
) -> None:
    spy = SpyStorage(allowed_buckets=[BUCKET])
    with pytest.raises(error):
        ScopedStorage(spy, output_prefix).write(prefix, name, b"x")
    assert spy.calls == []


# ------------------------------------------------------------------------------ validate stage


class RecordingHooks(StepHooks):
    """StepHooks that remember which tasks reached ``process``."""

    def __init__(self) -> None:
        self.processed: list[str] = []

    def process(self, ctx: Any, msg: Any) -> Any:
        self.processed.append(msg.task_id)
        return super().process(ctx, msg)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"input_uri": f"s3://{FOREIGN}/secret.txt"}, "UnsafeURIError"),
        ({"input_uri": "file:///etc/passwd"}, "UnsafeURIError"),
        ({"output_prefix": f"s3://{FOREIGN}/jobs/j1/t1/"}, "UnsafeURIError"),
        ({"output_prefix": f"s3://{BUCKET}@{FOREIGN}/jobs/j1/t1/"}, "UnsafeURIError"),
        ({"output_prefix": f"s3://{BUCKET}/jobs/j1/%2e%2e/%2e%2e/x/"}, "InvalidMessageError"),
        ({"input_uri": f"s3://{BUCKET}/jobs/%252e%252e/secret"}, "InvalidMessageError"),
    ],
)
def test_validate_stage_refuses_foreign_buckets_local_paths_and_traversal(
    make_worker: MakeWorker, changes: dict[str, Any], error: str
) -> None:
    hooks = RecordingHooks()
    storage = MemoryStorage(allowed_buckets=[BUCKET], allow_local_input=False)
    running = make_worker(hooks, storage=storage)
    running.send_raw(
        json.dumps(message(**changes)), content_type="application/json", content_encoding="utf-8"
    )
    [headers] = drain_dead_letters(running, 1)
    assert headers["x-error"].startswith(error + ":")
    assert running.status("t1") == "FAILED"
    assert hooks.processed == [] and storage.puts == []


# --------------------------------------------------------------- S3Storage, before any request


@pytest.fixture
def dead_endpoint() -> Iterator[str]:
    """A bound socket that never listens: any request to it is refused at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture
def s3(dead_endpoint: str) -> S3Storage:
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=dead_endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="not-a-secret",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2, read_timeout=2),
    )
    return S3Storage([BUCKET], allow_local_input=False, client=client)


def test_s3_storage_would_really_hit_the_network_for_an_allowed_bucket(s3: S3Storage) -> None:
    with pytest.raises(BackendUnavailableError):
        s3.read(f"s3://{BUCKET}/in.txt")
    with pytest.raises(BackendUnavailableError):
        s3.put(f"s3://{BUCKET}/jobs/x.json", b"{}", "application/json")


@pytest.mark.parametrize("uri", FORBIDDEN_READS)
def test_s3_storage_refuses_reads_outside_the_allowlist_before_any_request(s3: S3Storage, uri: str) -> None:
    with pytest.raises(UnsafeURIError):
        s3.read(uri)
    with pytest.raises(UnsafeURIError):
        s3.open(uri)


@pytest.mark.parametrize(
    "uri",
    [
        f"s3://{FOREIGN}/jobs/x.json",
        f"s3://{BUCKET}@{FOREIGN}/jobs/x.json",
        "file:///tmp/kombu-worker-security/x.json",
        f"S3://{BUCKET}/jobs/x.json",
        f"s3://{BUCKET}/",
        f"s3://{BUCKET}",
    ],
)
def test_s3_storage_refuses_writes_outside_the_allowlist_before_any_request(s3: S3Storage, uri: str) -> None:
    with pytest.raises(UnsafeURIError):
        s3.put(uri, b"{}", "application/json")


@pytest.mark.parametrize(
    "prefix",
    [f"s3://{FOREIGN}/jobs/j1/", "file:///tmp/kombu-worker-security/", f"s3://{BUCKET}@{FOREIGN}/j/"],
)
def test_s3_storage_refuses_foreign_output_prefixes(s3: S3Storage, prefix: str) -> None:
    with pytest.raises(UnsafeURIError):
        s3.check_writable_prefix(prefix)


# ----------------------------------------------------------------------- LocalStorage symlinks


@pytest.fixture
def local_root(tmp_path: Path) -> tuple[LocalStorage, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    storage = LocalStorage(tmp_path / "root", allowed_buckets=[BUCKET], allow_local_input=False)
    (storage.root / BUCKET / "jobs").mkdir(parents=True)
    return storage, outside


def test_a_symlinked_output_prefix_is_refused_at_validation_and_on_write(
    local_root: tuple[LocalStorage, Path],
) -> None:
    storage, outside = local_root
    os.symlink(outside, storage.root / BUCKET / "jobs" / "j1")
    with pytest.raises(OutputPrefixViolation):
        storage.check_writable_prefix(PREFIX)  # what the validate stage calls
    with pytest.raises(OutputPrefixViolation):
        ScopedStorage(storage, PREFIX).write("", "result.json", b"{}")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_a_symlinked_result_file_cannot_carry_a_write_outside_the_root(
    local_root: tuple[LocalStorage, Path],
) -> None:
    storage, outside = local_root
    folder = storage.root / BUCKET / "jobs" / "j1" / "step"
    folder.mkdir(parents=True)
    os.symlink(outside / "secret.txt", folder / "result.json")
    with pytest.raises(OutputPrefixViolation):
        ScopedStorage(storage, PREFIX).write("", "result.json", b"{}")
    assert (outside / "secret.txt").read_bytes() == b"secret"


@pytest.mark.parametrize("path", ["../../outside/secret.txt", "%2e%2e/%2e%2e/outside/secret.txt"])
def test_local_storage_reads_cannot_climb_out_of_the_bucket(
    local_root: tuple[LocalStorage, Path], path: str
) -> None:
    storage, _outside = local_root
    # root/bucket/../../outside == tmp_path/outside
    with pytest.raises((UnsafeURIError, OutputPrefixViolation)):
        ScopedStorage(storage, PREFIX).read(f"s3://{BUCKET}/{path}")


# ------------------------------------------------------------- children returned by publish_next


class RogueChildHooks(StepHooks):
    """publish_next returns ``params.child`` as it is: a child built by a careless hook."""

    def publish_next(self, ctx: Any, msg: Any, outputs: Any) -> list[dict[str, Any]]:
        child = msg["params"].get("child")
        return [child] if child else []


class RecordingRogueHooks(RecordingHooks, RogueChildHooks):
    pass


def child(**changes: Any) -> dict[str, Any]:
    return message(task_id="rogue-child", **changes)


@pytest.mark.parametrize(
    ("rogue", "error"),
    [
        (child(job_id="someone-elses-job"), "UnsafeURIError"),
        (child(output_prefix=f"s3://{BUCKET}/jobs/j1/../../other/"), "InvalidMessageError"),
        (child(output_prefix=f"s3://{BUCKET}/jobs/j1/%252e%252e/x/"), "InvalidMessageError"),
        (child(input_uri="file:///etc/passwd\x00"), "InvalidMessageError"),
    ],
)
def test_a_child_outside_its_parents_job_or_with_traversal_is_never_published(
    make_worker: MakeWorker, rogue: dict[str, Any], error: str
) -> None:
    storage = MemoryStorage(allowed_buckets=[BUCKET], allow_local_input=False)
    running = make_worker(RogueChildHooks(), storage=storage)  # next_queue is the input queue
    running.send(message(params={"step": "leaf", "child": rogue}))
    [headers] = drain_dead_letters(running, 1)
    assert headers["x-error"].startswith(error + ":")
    assert headers["x-task-id"] == "t1"
    assert running.status("t1") == "FAILED"
    assert running.runtime.state.get_task("rogue-child") is None
    assert running.dead_letters(timeout=0.3) == []


@pytest.mark.parametrize(
    "rogue",
    [
        child(job_id="j1", output_prefix=f"s3://{FOREIGN}/jobs/j1/child/"),
        child(job_id="j1", input_uri=f"s3://{FOREIGN}/secret.txt"),
        child(job_id="j1", input_uri="file:///etc/passwd"),
    ],
)
def test_a_child_in_a_foreign_bucket_never_runs(make_worker: MakeWorker, rogue: dict[str, Any]) -> None:
    hooks = RecordingRogueHooks()
    storage = MemoryStorage(allowed_buckets=[BUCKET], allow_local_input=False)
    running = make_worker(hooks, storage=storage)
    running.send(message(params={"step": "leaf", "child": rogue}))
    [headers] = drain_dead_letters(running, 1)
    assert headers["x-error"].startswith("UnsafeURIError:")
    assert hooks.processed == ["t1"]  # the child was refused before its hooks
    assert running.status("rogue-child") == "FAILED"
    assert not any(FOREIGN in uri or uri.startswith("file:") for uri in storage.puts)


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
        allow_local_input=False,
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
