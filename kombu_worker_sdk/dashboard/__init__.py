"""``kombu-worker dashboard``: jobs, their task trees, queues, dead letters and workers, in a browser.

It reads the same backends as the workers (the same config), so it works on the embedded
defaults and on SQS + S3 + PostgreSQL. Install it with ``pip install 'kombu-worker-sdk[dashboard]'``.
"""

from __future__ import annotations

from kombu_worker_sdk.dashboard.command import run_dashboard

__all__ = ["run_dashboard"]
