"""Helpers for integration tests that talk to the real servers started by ``scripts/services.py``.

``scripts/services.py`` exports (see its docstring): ``KWS_TEST_MOTO_URL``, ``KWS_TEST_MOTO_PORT``,
``KWS_TEST_MOTO_PIDFILE``, ``KWS_TEST_PG_DSN``, ``KWS_TEST_PG_BIN``, ``KWS_TEST_PG_DATA``,
``KWS_TEST_PG_OPTS``, ``KWS_TEST_PG_LOG`` and ``KWS_TEST_PGBOUNCER_DSN`` (the cluster through
PgBouncer in transaction mode; ``through_pgbouncer(dsn)`` points a fresh database's DSN at it).

Without those variables, ``require_moto()`` / ``require_postgres()`` skip the test locally but
fail it when ``CI=true``, so CI can never silently skip the integration suite.

moto's state is shared by the whole test run: always use fresh, uniquely named queues, buckets and
databases (``fresh_queue``, ``fresh_bucket``, ``fresh_database``). moto allows one PurgeQueue per
queue every 60 s, so do not purge and reuse.

``stop_postgres``/``start_postgres`` and ``restart_moto`` act on the servers shared by the whole
run: any test running concurrently (e.g. under pytest-xdist) sees the outage too.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, NoReturn

import boto3
import psycopg2
import pytest
from botocore.config import Config
from psycopg2 import sql

MOTO_URL_ENV = "KWS_TEST_MOTO_URL"
MOTO_PORT_ENV = "KWS_TEST_MOTO_PORT"
MOTO_PIDFILE_ENV = "KWS_TEST_MOTO_PIDFILE"
PG_DSN_ENV = "KWS_TEST_PG_DSN"
PG_BIN_ENV = "KWS_TEST_PG_BIN"
PG_DATA_ENV = "KWS_TEST_PG_DATA"
PG_OPTS_ENV = "KWS_TEST_PG_OPTS"
PG_LOG_ENV = "KWS_TEST_PG_LOG"
PGBOUNCER_DSN_ENV = "KWS_TEST_PGBOUNCER_DSN"

REGION = "us-east-1"
DUMMY_KEY = "testing"


def _load_services() -> Any:
    """scripts/services.py owns process control for moto; tests reuse it rather than copy it."""
    path = Path(__file__).parents[1] / "scripts" / "services.py"
    spec = importlib.util.spec_from_file_location("kws_services", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up here
    spec.loader.exec_module(module)
    return module


_services = _load_services()

# Processes started by restart_moto(); kept referenced so that Popen does not warn on GC.
_moto_processes: list[subprocess.Popen[bytes]] = []


# --------------------------------------------------------------------------- environment


def in_ci() -> bool:
    """True when the ``CI`` environment variable says we run in CI (``true``/``1``/``yes``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_module(name: str) -> Any:
    """Import an optional test dependency: skip locally when it is missing, fail under CI=true."""
    if in_ci():
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{name} is not installed (scripts/test.sh installs it)")


def moto_url() -> str | None:
    """The moto server URL (``KWS_TEST_MOTO_URL``), or None when the harness is not running."""
    return os.environ.get(MOTO_URL_ENV) or None


def pg_dsn() -> str | None:
    """The cluster's admin DSN (``KWS_TEST_PG_DSN``), or None when the harness is not running."""
    return os.environ.get(PG_DSN_ENV) or None


def _missing(what: str, env: str) -> NoReturn:
    msg = f"{what} not available ({env} unset); run tests via scripts/services.py"
    if in_ci():
        pytest.fail(msg + " -- integration tests must not be skipped in CI", pytrace=False)
    pytest.skip(msg)


def require_moto() -> str:
    """Return the moto URL; skip the test when it is absent (fail when ``CI=true``)."""
    url = moto_url()
    if url is None:
        _missing("moto server", MOTO_URL_ENV)
    return url


def require_postgres() -> str:
    """Return the admin DSN; skip the test when it is absent (fail when ``CI=true``)."""
    dsn = pg_dsn()
    if dsn is None:
        _missing("PostgreSQL", PG_DSN_ENV)
    return dsn


def require_pgbouncer() -> str:
    """PgBouncer's DSN (transaction pooling); skip the test when it is absent (fail when ``CI=true``)."""
    dsn = os.environ.get(PGBOUNCER_DSN_ENV) or None
    if dsn is None:
        _missing("PgBouncer", PGBOUNCER_DSN_ENV)
    return dsn


def through_pgbouncer(dsn: str) -> str:
    """The same database as ``dsn`` (a direct DSN, e.g. from ``fresh_database``), via PgBouncer.

    PgBouncer's wildcard entry routes any database name to the cluster, so only the host and
    port change; user, password and query are kept.
    """
    bouncer = urllib.parse.urlsplit(require_pgbouncer())
    parts = urllib.parse.urlsplit(dsn)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@{bouncer.hostname}:{bouncer.port}" if auth else f"{bouncer.hostname}:{bouncer.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# -------------------------------------------------------------------------------- moto


def boto_client(service: str, **kwargs: Any) -> Any:
    """A boto3 client for ``service`` pointed at moto, with dummy credentials and us-east-1.

    Keyword arguments override the defaults (e.g. ``config=Config(retries=...)``).
    Skips/fails like ``require_moto()`` when moto is not running.
    """
    options: dict[str, Any] = {
        "endpoint_url": require_moto(),
        "region_name": REGION,
        "aws_access_key_id": DUMMY_KEY,
        "aws_secret_access_key": DUMMY_KEY,
        "config": Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}),
    }
    options.update(kwargs)
    return boto3.client(service, **options)


def unique_name(prefix: str, max_len: int = 63, allowed: str = r"A-Za-z0-9_-") -> str:
    """``prefix`` (sanitised to ``allowed`` characters) plus a random suffix, at most max_len."""
    suffix = uuid.uuid4().hex[:12]
    clean = re.sub(f"[^{allowed}]", "-", prefix)[: max_len - len(suffix) - 1]
    return f"{clean}-{suffix}" if clean else suffix


def fresh_queue(sqs: Any, prefix: str, fifo: bool = False, attributes: dict[str, str] | None = None) -> str:
    """Create a uniquely named SQS queue and return its URL.

    ``fifo=True`` appends ``.fifo`` and sets ``FifoQueue``. ``attributes`` are passed to
    CreateQueue (string values, as SQS wants them).
    """
    suffix = ".fifo" if fifo else ""
    name = unique_name(prefix, max_len=80 - len(suffix)) + suffix
    attrs = dict(attributes or {})
    if fifo:
        attrs.setdefault("FifoQueue", "true")
    response = sqs.create_queue(QueueName=name, Attributes=attrs)
    url: str = response["QueueUrl"]
    return url


def fresh_bucket(s3: Any, prefix: str) -> str:
    """Create a uniquely named S3 bucket (lower-case, valid DNS name) and return its name."""
    name = unique_name(prefix.lower(), max_len=63, allowed=r"a-z0-9-").strip("-")
    region = s3.meta.region_name
    if region and region != "us-east-1":
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    else:
        s3.create_bucket(Bucket=name)
    return name


def moto_answers(url: str | None = None, timeout: float = 1.0) -> bool:
    """True when moto's server answers (any status code counts)."""
    target = url or moto_url()
    return bool(target) and _services.moto_answers(str(target), timeout)


def wait_for_moto(url: str | None = None, timeout: float = 60.0) -> None:
    """Poll until moto answers; raise TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not moto_answers(url, timeout=0.5):
        if time.monotonic() > deadline:
            raise TimeoutError(f"moto did not answer within {timeout}s")
        time.sleep(0.05)


def _kill_moto(pid: int, argv: list[str]) -> None:
    """Stop the old server with the harness's own code, then reap it if it was our child."""
    _services.kill_moto_pid(pid, argv)
    for proc in list(_moto_processes):
        if proc.pid == pid:
            proc.wait(10)
            _moto_processes.remove(proc)


def restart_moto(down_seconds: float = 0.0, timeout: float = 60.0) -> str:
    """Kill moto's server, keep it down for ``down_seconds``, restart it on the SAME port.

    Returns the (unchanged) moto URL once the new server answers. Uses the pidfile named by
    ``KWS_TEST_MOTO_PIDFILE`` (written by ``scripts/services.py``) to find the running server and
    its command line, and rewrites it with the new pid so services.py stops the new server at
    the end of the run. The new server runs detached (own session), logging to moto's log.

    NOTE: a restarted moto server starts EMPTY -- every queue, message, bucket and object is
    gone. Tests of outages must recreate their queues/buckets (same names are fine) after this
    returns, and must not assume that anything sent before the outage survives it.
    """
    url = require_moto()
    pidfile_env = os.environ.get(MOTO_PIDFILE_ENV)
    if not pidfile_env:
        _missing("moto pidfile", MOTO_PIDFILE_ENV)
    pidfile = Path(pidfile_env)
    info = json.loads(pidfile.read_text())
    argv: list[str] = list(info["argv"])
    _kill_moto(int(info["pid"]), argv)
    if down_seconds > 0:
        time.sleep(down_seconds)
    log_path = Path(info.get("log") or os.devnull)
    last_error = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # the port can linger briefly after the old server died
        with open(log_path, "ab") as logf:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _moto_processes.append(proc)
        info["pid"] = proc.pid
        tmp = pidfile.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(pidfile)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_error = f"moto exited with code {proc.returncode}"
                _moto_processes.remove(proc)
                time.sleep(0.2)
                break
            if moto_answers(url, timeout=0.5):
                return url
            time.sleep(0.05)
    raise RuntimeError(f"restarted moto did not answer within {timeout}s ({last_error})")


# -------------------------------------------------------------------------- PostgreSQL


def connect(dsn: str | None = None, **kwargs: Any) -> Any:
    """A psycopg2 connection (autocommit) to ``dsn`` (default: the admin DSN)."""
    conn = psycopg2.connect(dsn or require_postgres(), connect_timeout=5, **kwargs)
    conn.autocommit = True
    return conn


def fresh_database(dsn: str | None = None, prefix: str = "kws_test") -> str:
    """CREATE a uniquely named database on the cluster and return a DSN pointing at it.

    ``dsn`` defaults to ``KWS_TEST_PG_DSN`` (skips/fails like ``require_postgres()``).
    Databases are not dropped; the whole cluster is thrown away at the end of the run.
    """
    base = dsn or require_postgres()
    name = unique_name(prefix.lower(), max_len=63, allowed=r"a-z0-9_").replace("-", "_")
    conn = connect(base)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def _pg_env() -> tuple[Path, Path, str, str]:
    require_postgres()
    values = [os.environ.get(k) for k in (PG_BIN_ENV, PG_DATA_ENV, PG_OPTS_ENV)]
    if not all(values):
        _missing("PostgreSQL control variables", f"{PG_BIN_ENV}/{PG_DATA_ENV}/{PG_OPTS_ENV}")
    bindir, data, opts = (str(v) for v in values)
    log = os.environ.get(PG_LOG_ENV) or str(Path(data).parent / "postgres.log")
    return Path(bindir), Path(data), opts, log


def _run_pg_ctl(args: list[str], timeout: float = 90) -> None:
    bindir, data, _opts, _log = _pg_env()
    cmd = [str(bindir / "pg_ctl"), "-D", str(data), *args]
    if os.geteuid() == 0:
        if shutil.which("runuser"):
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        else:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]
    result = subprocess.run(
        cmd,
        cwd=data.parent,  # our cwd may not be readable by the postgres user
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def postgres_running() -> bool:
    """True when the cluster's postmaster is running (``pg_ctl status``)."""
    try:
        _run_pg_ctl(["status"], timeout=30)
    except RuntimeError:
        return False
    return True


def stop_postgres() -> None:
    """Fast-stop the cluster (``pg_ctl -m fast -w stop``); no-op when it is already down.

    Connections are cut. Always pair with ``start_postgres()`` (in a ``finally``) so later
    tests find the cluster running.
    """
    if postgres_running():
        _run_pg_ctl(["-m", "fast", "-w", "stop"])


def start_postgres() -> None:
    """Start the cluster again with services.py's options (same port); waits until it accepts
    connections. No-op when it is already running."""
    if postgres_running():
        return
    _bindir, _data, opts, log = _pg_env()
    _run_pg_ctl(["-l", log, "-w", "-t", "60", "-o", opts, "start"])
