"""Brokers, chosen by URL: the one place that maps a scheme to its transport.

``filesystem://`` and ``memory://`` are embedded (no server); ``sqs://`` is Amazon SQS.
The consumer and the stages know only :class:`~.delivery.Delivery` and
:class:`~.publish.Publisher`, so a second broker is one new folder here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kombu import Connection
from kombu.message import Message

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.errors import ConfigError
from kombu_worker_sdk.transport.delivery import Delivery
from kombu_worker_sdk.transport.embedded import AtomicFilesystemTransport, filesystem_options
from kombu_worker_sdk.transport.publish import KombuPublisher, Publisher


def broker_connection(config: WorkerConfig) -> Connection:
    """A Kombu connection for the broker in use; embedded queues live under data_dir."""
    url = config.effective_broker_url
    scheme = url.split("://", 1)[0]
    if scheme == "filesystem":
        return Connection(
            url, transport=AtomicFilesystemTransport, transport_options=filesystem_options(config)
        )
    if scheme == "memory":
        return Connection(url, transport_options={"polling_interval": 0.01})
    if scheme == "sqs":
        from kombu_worker_sdk.transport.sqs.channel import RawBodyTransport
        from kombu_worker_sdk.transport.sqs.options import sqs_transport_options

        return Connection(url, transport=RawBodyTransport, transport_options=sqs_transport_options(config))
    raise ConfigError(f"broker_url {url!r}: use filesystem://, memory:// or sqs://")


def default_publisher(config: WorkerConfig) -> Publisher:
    if config.is_sqs_broker:
        from kombu_worker_sdk.transport.sqs.publisher import SqsPublisher

        return SqsPublisher(config)
    return KombuPublisher(broker_connection(config), config.max_message_bytes)


def delivery_factory(runtime: Any) -> Callable[[Message], Delivery] | None:
    """SQS needs its own delivery (visibility, receive count); embedded uses the default."""
    if runtime.config.is_sqs_broker:
        from kombu_worker_sdk.transport.sqs.delivery import sqs_delivery_factory

        return sqs_delivery_factory(runtime)
    return None


__all__ = ["broker_connection", "default_publisher", "delivery_factory"]
