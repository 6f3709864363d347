"""Start the dashboard: check the bind, build the app, run uvicorn."""

from __future__ import annotations

import os
from collections.abc import Collection

import click

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.dashboard.security import TOKEN_ENV, check_bind, is_loopback
from kombu_worker_sdk.errors import ConfigError


def run_dashboard(
    config: WorkerConfig, *, host: str, port: int, token: str | None, queues: Collection[str] = ()
) -> None:
    """Serve until interrupted; refuses (one line) a non-loopback bind without a token."""
    token = token or os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)
    try:
        import uvicorn

        from kombu_worker_sdk.dashboard.app import create_app
        from kombu_worker_sdk.dashboard.data import DashboardData
    except ImportError as exc:
        raise ConfigError(
            f"the dashboard needs the 'dashboard' extra (pip install 'kombu-worker-sdk[dashboard]'): {exc}"
        ) from None
    app = create_app(DashboardData(config, queues), token=token, loopback_only=is_loopback(host))
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"dashboard on http://{shown}:{port}/ ({'token required' if token else 'no token: loopback only'})"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False, proxy_headers=False)
