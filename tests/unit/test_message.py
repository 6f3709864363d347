"""The message contract: raw JSON and Kombu envelopes in, JSON only, named errors out."""

from __future__ import annotations

import base64
import json
import pickle
from typing import Any

import pytest

from kombu_worker_sdk.errors import DecodeError, InvalidMessageError, UnsafeURIError
from kombu_worker_sdk.message import TaskMessage, decode_body, parse_next, parse_task
from tests.conftest import fixture_json

SEED = fixture_json("detection_message.json")


def test_seed_example_validates_and_indexes_like_a_dict() -> None:
    msg = parse_task(decode_body(json.dumps(SEED)))
    assert msg["job_id"] == msg.job_id == "abc123"
    assert msg["params"] == {"threshold": 0.5}
    assert msg.get("missing", 7) == 7
    with pytest.raises(KeyError):
        msg["nope"]


def test_raw_bytes_body_as_any_producer_sends_it() -> None:
    assert decode_body(json.dumps(SEED).encode(), None) == SEED


def test_kombu_envelope_plain_and_base64() -> None:
    plain = {"body": json.dumps(SEED), "content-type": "application/json", "properties": {}, "headers": {}}
    encoded = {
        "body": base64.b64encode(json.dumps(SEED).encode()).decode(),
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "properties": {"body_encoding": "base64"},
        "headers": {},
    }
    assert decode_body(json.dumps(plain)) == SEED
    assert decode_body(json.dumps(encoded)) == SEED


def test_pickle_is_refused_by_content_type_and_inside_an_envelope() -> None:
    with pytest.raises(DecodeError, match="only JSON"):
        decode_body(pickle.dumps(SEED), "application/x-python-serialize")
    envelope = {
        "body": base64.b64encode(pickle.dumps(SEED)).decode(),
        "content-type": "application/x-python-serialize",
        "properties": {"body_encoding": "base64"},
    }
    with pytest.raises(DecodeError, match="only JSON"):
        decode_body(json.dumps(envelope))


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"", b"{" * 100_000])
def test_not_a_json_object(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_body(body)


def test_envelope_with_bad_base64_body() -> None:
    envelope = {"body": "***", "content-type": "application/json", "properties": {"body_encoding": "base64"}}
    with pytest.raises(DecodeError, match="base64"):
        decode_body(json.dumps(envelope))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"job_id": None}, "job_id"),
        ({"params": "x"}, "params"),
        ({"extra": 1}, "extra"),
        ({"output_prefix": "s3://bucket/jobs/../../etc/"}, "output_prefix"),
        ({"output_prefix": "s3://bucket/jobs/%2e%2e/x/"}, "output_prefix"),
        ({"input_uri": "http://example.com/x"}, "input_uri"),
        ({"input_uri": "s3://b/x\x00y"}, "input_uri"),
        ({"task_id": "bad id with spaces"}, "task_id"),
        ({"task_id": "ünïcode"}, "task_id"),
        ({"output_prefix": "s3:///no-bucket/"}, "output_prefix"),
    ],
)
def test_schema_errors_name_the_field_and_keep_readable_ids(change: dict[str, Any], field: str) -> None:
    body = {**SEED, **change}
    with pytest.raises(InvalidMessageError, match=field) as info:
        parse_task(body)
    expected_task_id = SEED["task_id"] if "task_id" not in change else None
    assert info.value.task_id == expected_task_id


def test_output_prefix_gets_a_trailing_slash_and_hash_is_stable() -> None:
    msg = TaskMessage.model_validate({**SEED, "output_prefix": "s3://bucket/jobs/abc123/detection"})
    assert msg.output_prefix.endswith("/")
    assert msg.content_hash() == TaskMessage.model_validate(SEED).content_hash()
    assert msg.content_hash() != TaskMessage.model_validate({**SEED, "params": {}}).content_hash()


def test_children_inherit_trace_id_and_stay_in_the_job() -> None:
    parent = TaskMessage.model_validate({**SEED, "trace_id": "t-1"})
    child = parse_next({**SEED, "task_id": "abc123-a-1", "fan_in": {"group": "g", "size": 2}}, parent=parent)
    assert child.trace_id == "t-1"
    assert child.task().to_body().get("fan_in") is None
    with pytest.raises(UnsafeURIError, match="not its parent's"):
        parse_next({**SEED, "job_id": "other"}, parent=parent)
