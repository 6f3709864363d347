"""Validate rendered KEDA objects against KEDA's own CRD schemas, offline.

The CRDs in data/keda-v2.20.2/ are kedacore/keda's, unmodified (see SOURCE.md). The API server
validates a custom resource against the CRD's openAPIV3Schema and, with strict field
validation (kubectl's default since 1.27), rejects unknown fields; jsonschema does the first
part, and closing every object that lists its properties (unless the CRD says
x-kubernetes-preserve-unknown-fields) does the second. CEL rules (x-kubernetes-validations) are
not evaluated here; the chart refuses the one that matters (min > max replicas) itself.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

from tests import servers

CRD_DIR = Path(__file__).resolve().parent / "data" / "keda-v2.20.2"
CRD_FILES = {
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": "keda.sh_triggerauthentications.yaml",
}
SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf")


def crd(kind: str) -> dict[str, Any]:
    """The CRD document for ``kind`` as shipped by KEDA."""
    loaded: dict[str, Any] = yaml.safe_load((CRD_DIR / CRD_FILES[kind]).read_text())
    return loaded


def _close(node: dict[str, Any]) -> None:
    """Make unknown fields an error, as strict field validation does, recursively."""
    props = node.get("properties")
    if isinstance(props, dict):
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for child in props.values():
            _close(child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _close(node[key])
    for key in SUBSCHEMA_LISTS:
        for child in node.get(key, []):
            _close(child)


@functools.cache
def _schema(kind: str) -> dict[str, Any]:
    (version,) = [v for v in crd(kind)["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    _close(schema)
    return schema


def errors(doc: dict[str, Any]) -> list[str]:
    """Every schema violation of one rendered KEDA object, as `path: message` strings."""
    jsonschema = servers.require_module("jsonschema")
    validator = jsonschema.Draft7Validator(_schema(doc["kind"]))
    found = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found]


def validate_keda(docs: list[dict[str, Any]]) -> int:
    """Assert every ScaledObject and TriggerAuthentication in ``docs`` is valid; return how many."""
    checked = 0
    for doc in docs:
        if doc["kind"] in CRD_FILES:
            assert errors(doc) == [], f"{doc['kind']} rejected by KEDA's CRD: {errors(doc)}"
            checked += 1
    return checked
