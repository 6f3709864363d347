"""A throwaway PgBouncer in ``pool_mode = transaction`` in front of scripts/services.py's PostgreSQL.

Production fleets put PgBouncer (or RDS Proxy) between many worker pods and one PostgreSQL, in
transaction-pooling mode, where anything that needs a session (``SET``, ``LISTEN``, session
advisory locks, ``PREPARE``, temporary tables kept across transactions) breaks quietly. The tests
run the PostgreSQL suite through this pooler too, so such a dependency fails a test instead.

Debian's ``pgbouncer`` package is used; when it is missing and we are root it is installed with
apt-get, exactly as PostgreSQL is. PgBouncer refuses to run as root, so as root it runs as the
``postgres`` user. A wildcard ``[databases]`` entry routes every database name (the tests create a
fresh database per test) to the cluster. Stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from services_common import HOST, ServiceError, apt_install, free_port, is_root
from services_postgres import as_pg_user

START_TIMEOUT = 30.0
#: Server connections per (database, user) pair: small, as a pod's share of a real pooler is.
DEFAULT_POOL_SIZE = 20


class PgBouncerMissing(ServiceError):
    """pgbouncer is not installed and we cannot install it (not root)."""


def find_pgbouncer() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False


@dataclass
class PgBouncer:
    root: Path
    pg_port: int
    pool_size: int = DEFAULT_POOL_SIZE
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def logfile(self) -> Path:
        return self.root / "pgbouncer.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def config(self) -> str:
        # query_wait_timeout: a client waiting for a server connection (the cluster stopped by a
        # recovery test) gets an error in seconds, not PgBouncer's default two minutes.
        return "\n".join(
            [
                "[databases]",
                f"* = host={HOST} port={self.pg_port} user=postgres",
                "[pgbouncer]",
                f"listen_addr = {HOST}",
                f"listen_port = {self.port}",
                f"unix_socket_dir = {self.root}",
                "auth_type = trust",
                f"auth_file = {self.root / 'users.txt'}",
                "admin_users = postgres",
                "pool_mode = transaction",
                f"default_pool_size = {self.pool_size}",
                "max_client_conn = 2000",
                "max_db_connections = 0",
                "server_login_retry = 1",
                "query_wait_timeout = 5",
                f"logfile = {self.logfile}",
                "",
            ]
        )

    def start(self) -> None:
        binary = find_pgbouncer()
        if binary is None:
            if not is_root():
                raise PgBouncerMissing("pgbouncer not found (apt-get install pgbouncer, or run as root)")
            apt_install("pgbouncer")
            binary = find_pgbouncer()
            if binary is None:
                raise ServiceError("pgbouncer installed but not found on PATH")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "users.txt").write_text('"postgres" ""\n')
        if is_root():
            for path in (self.root, self.root / "users.txt"):
                shutil.chown(path, "postgres", "postgres")
        last = ""
        for _attempt in range(3):  # the free port may be taken before pgbouncer binds it
            self.port = free_port()
            ini = self.root / "pgbouncer.ini"
            ini.write_text(self.config())
            self.proc = subprocess.Popen(
                as_pg_user([binary, str(ini)]),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _answers(self.port):
                    return
                time.sleep(0.05)
            last = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            self.stop()
        raise ServiceError(f"pgbouncer did not start on {HOST}:{self.port}; log tail:\n{last}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)  # the group: runuser and pgbouncer under it
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()

    def env(self) -> dict[str, str]:
        return {"KWS_TEST_PGBOUNCER_DSN": self.dsn, "KWS_TEST_PGBOUNCER_LOG": str(self.logfile)}
