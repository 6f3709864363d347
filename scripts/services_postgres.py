"""A throwaway PostgreSQL cluster for scripts/services.py: initdb, pg_ctl start and stop.

As root, initdb and pg_ctl run as the ``postgres`` user, and PostgreSQL is installed with
apt-get when it is missing. Stdlib only.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from services_common import HOST, ServiceError, apt_install, free_port, is_root, log, pid_alive

PG_START_TIMEOUT = 60


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
            apt_install("postgresql")
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
