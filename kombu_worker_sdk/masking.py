"""Secrets out of sight: every password in a URL or DSN, and every secret-named key, masked.

Used wherever configuration reaches a log line, a page or ``config show``.
"""

from __future__ import annotations

import re
from typing import Any

_SECRET_IN_URL = re.compile(r"(?P<scheme>[a-z0-9+]+://)(?P<user>[^:/@]*):(?P<pw>[^@/]*)@", re.I)
_PASSWORD_PARAM = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.I)
SECRET_KEYS = ("password", "secret", "token")


def mask_secrets(value: Any) -> Any:
    """Replace passwords in URLs and secret-named keys with '***', recursively."""
    if isinstance(value, dict):
        return {
            k: "***" if any(s in k.lower() for s in SECRET_KEYS) and v else mask_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str):
        return mask_url(value)
    return value


def mask_url(text: str) -> str:
    """Hide every password in ``text``: ``scheme://user:pw@``, ``?password=pw``, libpq's ``password=pw``."""
    text = _SECRET_IN_URL.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _PASSWORD_PARAM.sub(r"\1***", text)


__all__ = ["SECRET_KEYS", "mask_secrets", "mask_url"]
