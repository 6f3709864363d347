"""A small IAM evaluator for the policies under test: Allow/Deny statements, wildcards, no conditions.

Enough to answer "does this policy allow action A on resource R" for the identity policies
kombu-worker prints; anything it does not understand (NotAction, Condition, ...) fails loudly.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

UNDERSTOOD = {"Sid", "Effect", "Action", "Resource"}


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    found = [policy["Statement"]] if isinstance(policy["Statement"], dict) else policy["Statement"]
    for statement in found:
        unknown = set(statement) - UNDERSTOOD
        assert not unknown, f"iam_eval does not understand {sorted(unknown)} in {statement}"
    return list(found)


def _matches(statement: dict[str, Any], action: str, resource: str) -> bool:
    actions = _listed(statement["Action"])
    resources = _listed(statement["Resource"])
    return any(fnmatchcase(action.lower(), a.lower()) for a in actions) and any(
        fnmatchcase(resource, r) for r in resources
    )


def allows(policy: dict[str, Any], action: str, resource: str) -> bool:
    """An explicit Deny wins; otherwise any matching Allow allows."""
    found = [s for s in statements(policy) if _matches(s, action, resource)]
    return any(s["Effect"] == "Allow" for s in found) and not any(s["Effect"] == "Deny" for s in found)


def grants(policy: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (action, resource) pair the policy's Allow statements name literally."""
    return {
        (action, resource)
        for s in statements(policy)
        if s["Effect"] == "Allow"
        for action in _listed(s["Action"])
        for resource in _listed(s["Resource"])
    }
