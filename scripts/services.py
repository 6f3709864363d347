#!/usr/bin/env python3
"""Run a command against real, throwaway moto and PostgreSQL servers.

Usage::

    python scripts/services.py [--no-moto] [--no-postgres] -- CMD ARGS...

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
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` = ``testing`` and
``AWS_DEFAULT_REGION`` = ``us-east-1`` unless already set.

``AWS_ENDPOINT_URL`` is deliberately NOT set: tests point each client/worker at moto.

Stdlib only. When running as root, ``initdb``/``pg_ctl`` run as the ``postgres`` user;
when PostgreSQL is missing and we are root, it is installed with apt-get.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

PROG = "services.py"
HOST = "127.0.0.1"
MOTO_START_TIMEOUT = 60.0
PG_START_TIMEOUT = 60
CHILD_GRACE_SECONDS = 15.0


def log(msg: str) -> None:
    print(f"[{PROG}] {msg}", file=sys.stderr, flush=True)


class ServiceError(RuntimeError):
    """A service could not be started."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def is_root() -> bool:
    return os.geteuid() == 0


# ---------------------------------------------------------------------------- moto


def moto_answers(url: str, timeout: float = 1.0) -> bool:
    """True when an HTTP server answers at ``url`` (any status code counts)."""
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists"; treat it as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def cmdline_of(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def kill_moto_pid(pid: int, argv: list[str] | None, timeout: float = 10.0) -> None:
    """SIGTERM (then SIGKILL) the process group of moto server ``pid``.

    Checks ``/proc/PID/cmdline`` against ``argv`` first so that a recycled pid is
    never killed.
    """
    if not pid_alive(pid):
        return
    current = cmdline_of(pid)
    if argv is not None and current is not None and current != argv:
        log(f"pid {pid} is no longer moto ({current!r}); not killing it")
        return
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    # moto is started in its own session, so its pgid is its pid; never signal our own group.
    target_group = pgid == pid and pgid != os.getpgrp()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            if target_group:
                os.killpg(pgid, sig)
            else:
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)


@dataclass
class Moto:
    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    argv: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.root / "moto.pid.json"

    @property
    def logfile(self) -> Path:
        return self.root / "moto.log"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _attempt in range(3):  # the free port may be taken before moto binds it
            self.port = free_port()
            self.argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)]
            with open(self.logfile, "ab") as logf:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C on the terminal must not reach it
                )
            self.write_pidfile()
            deadline = time.monotonic() + MOTO_START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last_error = f"moto exited with code {self.proc.returncode}"
                    break
                if moto_answers(self.url, timeout=0.5):
                    return
                time.sleep(0.05)
            else:
                last_error = f"moto did not answer within {MOTO_START_TIMEOUT:.0f}s"
                self.stop()
                break
        tail = self.logfile.read_text(errors="replace")[-2000:]
        raise ServiceError(f"{last_error}; log tail:\n{tail}")

    def write_pidfile(self) -> None:
        assert self.proc is not None
        data = {
            "pid": self.proc.pid,
            "argv": self.argv,
            "port": self.port,
            "log": str(self.logfile),
        }
        tmp = self.pidfile.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.pidfile)

    def stop(self) -> None:
        """Kill whatever moto the pidfile names (tests may have restarted it), then ours."""
        try:
            data = json.loads(self.pidfile.read_text())
            kill_moto_pid(int(data["pid"]), list(data["argv"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if self.proc is not None:
            if self.proc.poll() is None:
                kill_moto_pid(self.proc.pid, None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)

    def env(self) -> dict[str, str]:
        return {
            "KWS_TEST_MOTO_URL": self.url,
            "KWS_TEST_MOTO_PORT": str(self.port),
            "KWS_TEST_MOTO_PIDFILE": str(self.pidfile),
        }


# ---------------------------------------------------------------------- PostgreSQL


def _version_key(path: str) -> tuple[int, ...]:
    name = Path(path).parent.name  # /usr/lib/postgresql/<version>/bin
    return tuple(int(p) for p in name.split(".") if p.isdigit()) or (0,)


def find_pg_bin() -> Path | None:
    """Directory with ``initdb`` and ``pg_ctl``: highest /usr/lib/postgresql/*/bin, else PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for cand in candidates:
        if os.access(Path(cand) / "initdb", os.X_OK) and os.access(Path(cand) / "pg_ctl", os.X_OK):
            return Path(cand)
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        bindir = Path(pg_ctl).resolve().parent
        if os.access(bindir / "initdb", os.X_OK):
            return bindir
    return None


def install_postgres() -> None:
    log("PostgreSQL not found; installing it with apt-get (as root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
    ):
        result = subprocess.run(cmd, env=env, stdout=sys.stderr, stderr=sys.stderr, check=False)
        if result.returncode != 0:
            raise ServiceError(f"{shlex.join(cmd)} failed with code {result.returncode}")


def as_pg_user(cmd: list[str]) -> list[str]:
    """Prefix ``cmd`` so it runs as the ``postgres`` user when we are root."""
    if not is_root():
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]


@dataclass
class Postgres:
    root: Path
    port: int = 0
    bindir: Path | None = None
    started: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    @property
    def opts(self) -> str:
        return f"-p {self.port} -h {HOST} -k {self.root} -F"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def _run(self, cmd: list[str], timeout: float = 120) -> tuple[int, str]:
        """Run ``cmd`` (as the postgres user when root); return (exit code, output).

        It runs in its own session, so that an interruption (signal handler exception or
        timeout) can kill the whole group -- ``runuser`` *and* the initdb/pg_ctl under it --
        before the temporary folder is removed.
        """
        proc = subprocess.Popen(
            as_pg_user(cmd),
            cwd=self.root,  # the postgres user may not be able to read our cwd
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        return proc.returncode, out

    def start(self) -> None:
        self.bindir = find_pg_bin()
        if self.bindir is None:
            if not is_root():
                raise ServiceError("initdb/pg_ctl not found (install postgresql, or pass --no-postgres)")
            install_postgres()
            self.bindir = find_pg_bin()
            if self.bindir is None:
                raise ServiceError("postgresql installed but initdb/pg_ctl still not found")
        self.root.mkdir(parents=True, exist_ok=True)
        if is_root():
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o700)
        init = self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        if init[0] != 0:
            raise ServiceError(f"initdb failed ({init[0]}):\n{init[1]}")
        last_error = ""
        for _attempt in range(3):  # the free port may be taken before postgres binds it
            self.port = free_port()
            started = self._run(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.logfile),
                    "-w",
                    "-t",
                    str(PG_START_TIMEOUT),
                    "-o",
                    self.opts,
                    "start",
                ],
                timeout=PG_START_TIMEOUT + 30,
            )
            if started[0] == 0:
                self.started = True
                return
            last_error = f"pg_ctl start failed ({started[0]}):\n{started[1]}"
            self.stop()
        tail = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
        raise ServiceError(f"{last_error}\nlog tail:\n{tail}")

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Fast-stop the cluster (tests may have stopped/started it); SIGKILL as a last resort."""
        if self.bindir is None or not self.data.exists():
            return
        pid = self._postmaster_pid()
        if pid is None and not self.started:
            # Interrupted during pg_ctl start: the postmaster may still be writing its pid file.
            deadline = time.monotonic() + 2
            while pid is None and time.monotonic() < deadline:
                time.sleep(0.05)
                pid = self._postmaster_pid()
        if pid is None or not pid_alive(pid):
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                timeout=60,
            )
        if pid_alive(pid):
            log(f"pg_ctl stop did not stop postmaster {pid}; sending SIGQUIT then SIGKILL")
            for sig in (signal.SIGQUIT, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                deadline = time.monotonic() + 5
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not pid_alive(pid):
                    break

    def env(self) -> dict[str, str]:
        assert self.bindir is not None
        return {
            "KWS_TEST_PG_DSN": self.dsn,
            "KWS_TEST_PG_BIN": str(self.bindir),
            "KWS_TEST_PG_DATA": str(self.data),
            "KWS_TEST_PG_OPTS": self.opts,
            "KWS_TEST_PG_LOG": str(self.logfile),
        }


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
        usage="%(prog)s [--no-moto] [--no-postgres] -- CMD [ARGS...]",
    )
    parser.add_argument("--no-moto", action="store_true", help="do not start moto's server")
    parser.add_argument("--no-postgres", action="store_true", help="do not start PostgreSQL")
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
