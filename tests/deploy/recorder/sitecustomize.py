"""Test-only: record every botocore operation this process makes, without changing any.

Put this folder first on PYTHONPATH and set KWS_TEST_BOTOCORE_LOG to a file: each API call
(the SDK's and Kombu's, on every boto3 session) appends one JSON line with its service,
operation and the resource parameters. ``before-parameter-build`` is botocore's documented
event for a call's parameters as the caller gave them; the handler only reads them.
"""

from __future__ import annotations

import json
import os
from typing import Any

import botocore.session

_LOG = os.environ.get("KWS_TEST_BOTOCORE_LOG")
_RESOURCE_PARAMS = ("QueueUrl", "Bucket", "Key", "Prefix")
_new_session = botocore.session.get_session


def _record(params: dict[str, Any], model: Any, **_: Any) -> None:
    entry = {"service": model.service_model.service_name, "operation": model.name, "pid": os.getpid()}
    entry.update({name: params[name] for name in _RESOURCE_PARAMS if name in params})
    with open(str(_LOG), "a", encoding="utf-8") as handle:  # O_APPEND: one write per line
        handle.write(json.dumps(entry) + "\n")


def _observed_session(env_vars: Any = None) -> Any:
    session = _new_session(env_vars)
    session.register("before-parameter-build", _record)
    return session


if _LOG:
    # boto3.session.Session() calls botocore.session.get_session() for every new session.
    botocore.session.get_session = _observed_session
