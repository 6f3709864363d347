"""SQS connection settings: Kombu transport options, the boto3 client, region, error translation.

Queues are predefined from their URLs, so the worker needs no ListQueues or
CreateQueue permission. Endpoint, region and credentials come from the
standard AWS environment (AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL, AWS_REGION /
AWS_DEFAULT_REGION, the credential chain), so one worker runs against AWS or a
local endpoint unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import BackendUnavailableError, ConfigError, PublishError
from kombu_worker_sdk.observability.tracing import ATTRIBUTE_NAMES
from kombu_worker_sdk.transport.names import queue_name


def region_of(config: WorkerConfig) -> str:
    region = config.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError("SQS needs a region: set region in the config, AWS_REGION or AWS_DEFAULT_REGION")
    return region


def queue_urls(config: WorkerConfig) -> dict[str, str]:
    """Every queue this worker touches, by Kombu name → URL; all must be given as URLs."""
    queues = [config.queue, config.next_queue, config.dead_letter_queue]
    urls = {queue_name(q): q for q in queues if q}
    bad = [q for q in urls.values() if not q.startswith(("https://", "http://"))]
    if bad:
        raise ConfigError(f"SQS queues must be given as URLs (QUEUE_URL etc.), got {bad[0]!r}")
    return urls


def sqs_transport_options(config: WorkerConfig) -> dict[str, Any]:
    """Kombu SQS transport options: predefined queues, long polling, receive count."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_SQS") or os.environ.get("AWS_ENDPOINT_URL")
    return {
        "predefined_queues": {name: {"url": url} for name, url in queue_urls(config).items()},
        "region": region_of(config),
        "wait_time_seconds": config.wait_time_seconds,
        "visibility_timeout": config.visibility_timeout,
        # Only used while every prefetch slot is busy: a short nap instead of a spin.
        "polling_interval": 0.05,
        "is_secure": not (endpoint or "https").startswith("http://"),
        # Kombu asks ReceiveMessage for no message attributes unless named here; the
        # traceparent beside each body is one (OpenTelemetry's W3C trace context).
        "fetch_message_attributes": {
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
            "MessageAttributeNames": list(ATTRIBUTE_NAMES),
        },
        "client-config": {"retries": {"mode": "standard", "max_attempts": 3}},
    }


def new_client(config: WorkerConfig) -> Any:
    """A boto3 SQS client honouring the standard AWS environment (thread-safe to share)."""
    return boto3.session.Session().client(
        "sqs",
        region_name=region_of(config),
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30),
    )


def translate(exc: Exception, what: str) -> Exception:
    """Connection trouble → BackendUnavailableError; a refusal → PublishError (no secrets)."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "?")
        if code in {"ThrottlingException", "RequestThrottled", "ServiceUnavailable", "InternalError"}:
            return BackendUnavailableError(f"{what}: {code}")
        return PublishError(f"{what}: {code}: {exc.response.get('Error', {}).get('Message', '')}")
    return BackendUnavailableError(f"{what}: {type(exc).__name__}: {exc}")
