#!/usr/bin/env python3
"""Run a command against real, throwaway moto and PostgreSQL servers.

Usage::

    python scripts/services.py [--no-moto] [--no-postgres] [--no-pgbouncer] -- CMD ARGS...

Starts moto's server (``python -m moto.server``, with this same interpreter) and a
temporary PostgreSQL cluster, each on a free 127.0.0.1 port, runs CMD with the
connection details in its environment, then stops both servers and removes their
temporary files -- also when CMD fails or this script gets SIGINT/SIGTERM/SIGHUP.
Exits with CMD's exit code (128 + N when CMD died of signal N).

Environment exported to CMD (see ``tests/servers.py`` for helpers that read it):

``KWS_TEST_MOTO_URL``      ``http://127.0.0.1:PORT``
``KWS_TEST_MOTO_PORT``     moto's port
``KWS_TEST_MOTO_PIDFILE``  JSON file ``{"pid", "argv", "port", "log"}`` describing the
                           running moto server; ``tests.servers.restart_moto`` rewrites it
                           and this script kills whatever pid it names at the end
``KWS_TEST_PG_DSN``        ``postgresql://postgres@127.0.0.1:PORT/postgres``
``KWS_TEST_PG_BIN``        directory holding ``pg_ctl``
``KWS_TEST_PG_DATA``       the cluster's data directory
``KWS_TEST_PG_OPTS``       the server options used with ``pg_ctl -o`` (port, host, socket dir)
``KWS_TEST_PG_LOG``        the server's log file
``KWS_TEST_PGBOUNCER_DSN`` the same cluster through PgBouncer in ``pool_mode = transaction``
                           (``services_pgbouncer.py``; ``--no-pgbouncer`` skips it)
``KWS_TEST_PGBOUNCER_LOG`` PgBouncer's log file
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` = ``testing`` and
``AWS_DEFAULT_REGION`` = ``us-east-1`` unless already set.

``AWS_ENDPOINT_URL`` is deliberately NOT set: tests point each client/worker at moto.

Stdlib only. When running as root, ``initdb``/``pg_ctl`` run as the ``postgres`` user;
when PostgreSQL is missing and we are root, it is installed with apt-get.

The servers' controls live beside this file: ``services_moto.py``, ``services_postgres.py``
and ``services_common.py``; this file runs CMD between their start and stop.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

# tests/servers.py loads this file by path, so the folder is not on sys.path there; appended,
# not prepended, so that nothing here can shadow an installed module.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)

from services_common import HOST, PROG, ServiceError, log  # noqa: E402
from services_moto import Moto, kill_moto_pid, moto_answers  # noqa: E402
from services_pgbouncer import PgBouncer, PgBouncerMissing  # noqa: E402
from services_postgres import Postgres  # noqa: E402

__all__ = ["Moto", "Postgres", "ServiceError", "kill_moto_pid", "main", "moto_answers"]

CHILD_GRACE_SECONDS = 15.0


# ------------------------------------------------------------------------- runner


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Runner:
    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.signals_seen = 0
        self.first_signal: int | None = None
        self.cleaning_up = False

    def handle_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals_seen += 1
        if self.first_signal is None:
            self.first_signal = signum
        child = self.child
        if child is not None and child.poll() is None:
            # Forward the first signal; escalate on a repeat.
            sig = signum if self.signals_seen == 1 else signal.SIGKILL
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(sig)
            return
        if self.signals_seen == 1 and not self.cleaning_up:
            # Interrupt start-up (or waiting): unwind through the finally blocks.
            raise Interrupted(signum)

    def run_child(self, cmd: list[str], env: dict[str, str]) -> int:
        try:
            self.child = subprocess.Popen(cmd, env=env)
        except OSError as exc:
            log(f"cannot run {shlex.join(cmd)}: {exc}")
            return 127
        while True:
            try:
                code = self.child.wait()
                break
            except Interrupted:  # pragma: no cover - handler does not raise with a live child
                continue
        return 128 - code if code < 0 else code


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run CMD against throwaway moto and PostgreSQL servers.",
        usage="%(prog)s [--no-moto] [--no-postgres] [--no-pgbouncer] -- CMD [ARGS...]",
    )
    parser.add_argument("--no-moto", action="store_true", help="do not start moto's server")
    parser.add_argument("--no-postgres", action="store_true", help="do not start PostgreSQL")
    parser.add_argument("--no-pgbouncer", action="store_true", help="do not start PgBouncer")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="the command to run")
    args = parser.parse_args(argv)
    if args.cmd and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    if not args.cmd:
        parser.error("missing CMD (put it after --)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    runner = Runner()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, runner.handle_signal)

    moto: Moto | None = None
    pg: Postgres | None = None
    bouncer: PgBouncer | None = None
    tmp = Path(tempfile.mkdtemp(prefix="kws-services-"))
    os.chmod(tmp, 0o755)  # the postgres user must be able to reach tmp/pg
    code = 1
    try:
        env = dict(os.environ)
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        began = time.monotonic()
        if not args.no_moto:
            moto = Moto(tmp / "moto")
            t0 = time.monotonic()
            moto.start()
            env.update(moto.env())
            log(
                f"moto server on {moto.url} (pid {moto.proc.pid if moto.proc else '?'}, "
                f"{time.monotonic() - t0:.1f}s)"
            )
        if not args.no_postgres:
            pg = Postgres(tmp / "pg")
            t0 = time.monotonic()
            pg.start()
            env.update(pg.env())
            log(
                f"PostgreSQL {pg.bindir.parent.name if pg.bindir else ''} on "
                f"{HOST}:{pg.port} ({pg.dsn}, {time.monotonic() - t0:.1f}s)"
            )
            if not args.no_pgbouncer:
                bouncer = PgBouncer(tmp / "pgbouncer", pg.port)
                try:
                    bouncer.start()
                    env.update(bouncer.env())
                    log(f"PgBouncer (pool_mode = transaction) on {HOST}:{bouncer.port}")
                except PgBouncerMissing as exc:  # its tests skip locally, fail under CI=true
                    log(f"{exc}; the tests through PgBouncer will skip")
        log(f"services ready in {time.monotonic() - began:.1f}s; running {shlex.join(args.cmd)}")
        code = runner.run_child(args.cmd, env)
    except ServiceError as exc:
        log(f"error: {exc}")
        code = 1
    except Interrupted as exc:
        log(f"interrupted by {exc} during start-up")
        code = 128 + exc.signum
    finally:
        # From here on, signals only get forwarded/escalated to the child, never raise.
        runner.cleaning_up = True
        child = runner.child
        if child is not None and child.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=CHILD_GRACE_SECONDS)
            if child.poll() is None:
                child.kill()
                child.wait()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if bouncer is not None:
            bouncer.stop()
        if pg is not None:
            pg.stop()
        if moto is not None:
            moto.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        log("services stopped")
    if runner.first_signal is not None and code == 0:
        code = 128 + runner.first_signal
    return code


if __name__ == "__main__":
    sys.exit(main())
