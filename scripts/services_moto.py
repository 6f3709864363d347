"""moto's server for scripts/services.py: start it on a free port, find it again, stop it.

``tests/servers.py`` reuses :func:`moto_answers` and :func:`kill_moto_pid` (through
scripts/services.py) to restart moto mid-test. Stdlib only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from services_common import HOST, ServiceError, free_port, log, pid_alive

MOTO_START_TIMEOUT = 60.0


def moto_answers(url: str, timeout: float = 1.0) -> bool:
    """True when an HTTP server answers at ``url`` (any status code counts)."""
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


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
