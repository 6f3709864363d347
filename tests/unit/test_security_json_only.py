"""Security (issue 4 §7a): Kombu is told to accept JSON only; pickle is refused before anyone unpickles it."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import pytest
from kombu import Connection, Consumer

from kombu_worker_sdk.errors import DecodeError
from kombu_worker_sdk.message import decode_body
from tests.fixtures.hostile_messages import PickleCanary, envelope
from tests.unit.security_common import MakeWorker, drain_dead_letters

# ------------------------------------------------------------------ (a) JSON only, never pickle


def test_the_workers_kombu_consumer_accepts_json_only(make_worker: MakeWorker) -> None:
    running = make_worker()
    with Connection("memory://") as conn:
        channel = conn.channel()
        consumers = running.worker.get_consumers(functools.partial(Consumer, channel), channel)
    assert len(consumers) == 1
    assert consumers[0].accept == {"application/json"}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param("pickle", "application/x-python-serialize", id="pickle-content-type"),
        pytest.param(
            "pickle", "APPLICATION/X-PYTHON-SERIALIZE; charset=binary", id="pickle-content-type-cased"
        ),
        pytest.param("pickle", None, id="bare-pickle-bytes"),
        pytest.param("pickle-envelope", None, id="pickle-in-kombu-envelope"),
        pytest.param("pickle-envelope-json-typed", "application/json", id="pickle-envelope-inside-json"),
    ],
)
def test_decode_body_refuses_pickle_without_unpickling_it(
    tmp_path: Path, body: str, content_type: str | None
) -> None:
    canary = tmp_path / "canary"
    pickled = pickle.dumps(PickleCanary(str(canary)))
    raw: bytes | str = {
        "pickle": pickled,
        "pickle-envelope": envelope(pickled, "application/x-python-serialize"),
        "pickle-envelope-json-typed": envelope(pickled, "application/x-python-serialize"),
    }[body]
    with pytest.raises(DecodeError):
        decode_body(raw, content_type)
    assert not canary.exists()
    pickle.loads(pickled)  # the canary works: unpickling really would have created it
    assert canary.is_dir()


@pytest.mark.parametrize("how", ["pickle-bytes", "kombu-pickle-serializer"])
def test_pickle_published_through_kombu_is_dead_lettered_never_unpickled(
    make_worker: MakeWorker, tmp_path: Path, how: str
) -> None:
    running = make_worker()
    canary = tmp_path / "canary"
    if how == "pickle-bytes":
        running.send_raw(
            pickle.dumps(PickleCanary(str(canary))),
            content_type="application/x-python-serialize",
            content_encoding="binary",
        )
    else:
        running.send_raw({"payload": PickleCanary(str(canary))}, serializer="pickle")  # type: ignore[arg-type]
    [headers] = drain_dead_letters(running, 1)
    assert headers["x-error"].startswith("DecodeError: refused content type")
    assert not canary.exists()
