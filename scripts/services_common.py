"""What scripts/services.py's moto and PostgreSQL controls share: the host, logging, pids.

Stdlib only, like everything scripts/services.py imports.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

PROG = "services.py"
HOST = "127.0.0.1"


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


def apt_install(package: str) -> None:
    """Install a Debian package (as root), for a service the machine does not have yet."""
    log(f"{package} not found; installing it with apt-get (as root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", package],
    ):
        result = subprocess.run(cmd, env=env, stdout=sys.stderr, stderr=sys.stderr, check=False)
        if result.returncode != 0:
            raise ServiceError(f"{shlex.join(cmd)} failed with code {result.returncode}")


def is_root() -> bool:
    return os.geteuid() == 0


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
