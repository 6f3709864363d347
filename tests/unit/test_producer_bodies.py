"""The decoder on bodies captured from the real kombu 5.7 and celery 5.7 producers (issue 10 §3).

``tests/fixtures/real_producer_bodies.json`` holds the SQS MessageBody texts exactly as
the producers sent them to moto. Variants are made by opening a captured envelope,
changing one thing, and closing it again the way Kombu does (base64 body inside a
base64 envelope), so the rest of each body stays what a real producer sends.
"""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path
from typing import Any

import pytest

import kombu_worker_sdk.decoding as decoding
from kombu_worker_sdk.errors import DecodeError, InvalidMessageError
from kombu_worker_sdk.message import decode_body, parse_task
from tests.conftest import fixture_json

CAPTURED = fixture_json("real_producer_bodies.json")
MESSAGE: dict[str, Any] = CAPTURED["message"]
BODIES: dict[str, str] = {name: entry["sqs_body"] for name, entry in CAPTURED["bodies"].items()}


def open_envelope(sqs_body: str) -> tuple[dict[str, Any], Any]:
    """The envelope and its decoded body, as the producer built them."""
    text = sqs_body if sqs_body.startswith("{") else base64.b64decode(sqs_body).decode()
    envelope = json.loads(text)
    return envelope, json.loads(base64.b64decode(envelope["body"]))


def close_envelope(envelope: dict[str, Any], body: Any, *, whole_base64: bool = True) -> str:
    """Kombu's encoding: body_encoding base64, then (sqs_base64_encoding) the whole envelope."""
    text = json.dumps({**envelope, "body": base64.b64encode(json.dumps(body).encode()).decode()})
    return base64.b64encode(text.encode()).decode() if whole_base64 else text


def celery(body: list[Any], **headers: Any) -> str:
    envelope, _ = open_envelope(BODIES["celery_p2_kwargs"])
    envelope["headers"] = {**envelope["headers"], **headers}
    return close_envelope(envelope, body)


@pytest.mark.parametrize("name", ["kombu_default", "kombu_no_b64", "celery_p2_kwargs", "celery_p2_arg"])
def test_real_producer_bodies_decode_to_the_task_message(name: str) -> None:
    assert decode_body(BODIES[name]) == MESSAGE
    assert parse_task(decode_body(BODIES[name])).task_id == "j1-root"


def test_kombu_default_is_base64_of_an_envelope_whose_body_is_base64_again() -> None:
    assert not BODIES["kombu_default"].startswith("{")
    envelope, body = open_envelope(BODIES["kombu_default"])
    assert envelope["properties"]["body_encoding"] == "base64" and body == MESSAGE


def test_celery_task_id_and_headers_never_replace_the_bodys_ids() -> None:
    envelope, body = open_envelope(BODIES["celery_p2_kwargs"])
    assert envelope["headers"]["id"] != MESSAGE["task_id"]  # Celery's own uuid
    assert decode_body(BODIES["celery_p2_kwargs"])["task_id"] == MESSAGE["task_id"]
    kwargs = {k: v for k, v in body[1].items() if k != "task_id"}
    decoded = decode_body(close_envelope(envelope, [body[0], kwargs, body[2]]))
    assert "task_id" not in decoded  # not filled in from headers.id
    with pytest.raises(InvalidMessageError, match="task_id"):
        parse_task(decoded)


@pytest.mark.parametrize("name", ["celery_p1_kwargs", "celery_p1_arg"])
def test_celery_protocol_1_is_refused_by_name_with_the_bodys_ids(name: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_body(BODIES[name])
    assert str(caught.value) == (
        "Celery protocol 1 message (task 'analysis') is not supported: use protocol 2 (the default since Celery 4)"
    )
    assert (caught.value.task_id, caught.value.job_id) == ("j1-root", "j1")


def test_celery_pickle_is_refused_by_name_and_never_opened() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_body(BODIES["celery_pickle"])
    assert str(caught.value) == (
        "refused content type 'application/x-python-serialize' (pickle): only JSON is accepted"
    )
    assert caught.value.task_id is None  # Celery's kwargsrepr header is not trusted either


def test_the_decoder_never_imports_pickle() -> None:
    tree = ast.parse(Path(decoding.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert imported.isdisjoint({"pickle", "yaml", "msgpack", "marshal", "shelve"})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ([[MESSAGE], MESSAGE, {}], "got 1 positional and 5 keyword argument"),
        ([[], {}, {}], "got 0 positional and 0 keyword argument"),
        ([[MESSAGE, MESSAGE], {}, {}], "got 2 positional and 0 keyword argument"),
        ([["not a dict"], {}, {}], "got 1 positional and 0 keyword argument"),
        ([MESSAGE], "not protocol 2's [args, kwargs, embed]"),
        ([[], MESSAGE, {"chain": [{"task": "next"}]}], "carries chain"),
        ([[], MESSAGE, {"callbacks": [{"task": "cb"}], "errbacks": [{"task": "eb"}]}], "callbacks, errbacks"),
    ],
)
def test_celery_protocol_2_shapes_the_worker_cannot_honour_are_refused(body: Any, expected: str) -> None:
    with pytest.raises(DecodeError, match="Celery task 'analysis'") as caught:
        decode_body(celery(body))
    assert expected in str(caught.value)


def test_refusals_keep_the_ids_they_can_read() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_body(celery([[], MESSAGE, {"chord": {"task": "x"}}]))
    assert (caught.value.task_id, caught.value.job_id) == ("j1-root", "j1")


def test_celery_eta_is_refused_rather_than_run_early() -> None:
    with pytest.raises(DecodeError, match="eta/countdown"):
        decode_body(celery([[], MESSAGE, {}], eta="2030-01-01T00:00:00+00:00"))


def test_celery_headers_without_a_task_name_are_a_plain_envelope() -> None:
    envelope, _ = open_envelope(BODIES["kombu_default"])
    envelope["headers"] = {"id": "abc"}  # no headers.task: not Celery's protocol 2
    assert decode_body(close_envelope(envelope, MESSAGE)) == MESSAGE


def test_base64_is_tried_only_on_text_that_is_not_json() -> None:
    with pytest.raises(DecodeError, match="got int"):
        decode_body("1234")  # valid base64 too, but JSON first
    with pytest.raises(DecodeError, match="got str"):
        decode_body(json.dumps(BODIES["kombu_default"]))  # a JSON string is not opened


def test_base64_must_hold_a_json_kombu_envelope() -> None:
    raw_task = base64.b64encode(json.dumps(MESSAGE).encode()).decode()
    with pytest.raises(DecodeError, match="base64 text, but not of a Kombu envelope"):
        decode_body(raw_task)
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode_body(base64.b64encode(b"job_id: j1\n").decode())
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode_body(BODIES["kombu_default"][:-3] + "!!!")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"content-type": "application/x-yaml"}, "'application/x-yaml' (YAML): only JSON"),
        ({"content-type": "application/x-msgpack"}, "'application/x-msgpack' (msgpack): only JSON"),
        ({"content-encoding": "binary"}, "refused content encoding 'binary'"),
        ({"headers": {"compression": "application/x-gzip"}}, "refused compressed body"),
        ({"headers": ["not", "an", "object"]}, "'headers' is not an object"),
    ],
)
def test_envelopes_of_refused_types_name_what_was_received(change: dict[str, Any], expected: str) -> None:
    envelope, body = open_envelope(BODIES["kombu_default"])
    with pytest.raises(DecodeError) as caught:
        decode_body(close_envelope({**envelope, **change}, body))
    assert expected in str(caught.value)


def test_utf8_body_encoding_means_the_body_is_plain_text() -> None:
    envelope, body = open_envelope(BODIES["kombu_no_b64"])
    envelope["properties"]["body_encoding"] = "UTF-8"  # Kombu's encode_body leaves it as is
    assert decode_body(json.dumps({**envelope, "body": json.dumps(body)})) == MESSAGE
