"""Kombu's SQS transport, told not to interpret message bodies.

Kombu's SQS channel parses every body before a consumer sees it: it guesses at
base64, parses JSON, and treats any object with a ``properties`` key as its own
envelope. A hostile body (deep nesting, bad base64, a ``properties`` string)
then raises inside Kombu's receive loop, where no consumer can dead-letter it,
and the message comes back forever. This channel hands over the raw SQS record
untouched; :func:`kombu_worker_sdk.decoding.decode_body` does all the decoding
(Kombu's base64 envelopes, Celery protocol 2) with JSON-only rules and named errors.
"""

from __future__ import annotations

from typing import Any

from kombu.transport.SQS import Channel, Transport


class RawBodyChannel(Channel):  # type: ignore[misc]
    def _message_to_python(self, message: dict[str, Any], queue_name: str, q_url: str) -> dict[str, Any]:
        return {
            "body": message["Body"],
            "content-type": None,
            "content-encoding": None,
            "headers": {},
            "properties": {
                "delivery_info": {"sqs_message": message, "sqs_queue": q_url},
                "delivery_tag": message["ReceiptHandle"],
            },
        }


class RawBodyTransport(Transport):  # type: ignore[misc]
    Channel = RawBodyChannel
