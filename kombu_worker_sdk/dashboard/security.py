"""The dashboard's safety rules, learnt from Flower's CVE-2022-30034.

Flower listened on every interface with no auth, sent ``Access-Control-Allow-Origin: *``
and had no CSRF protection. Here:

* it binds to loopback by default; any other bind needs a token (refused at start otherwise);
* with a token, every page needs it: ``Authorization: Bearer <token>`` or the session
  cookie the login form sets (an HMAC of the token, never the token itself);
* on loopback without a token, only loopback Host headers are served (DNS rebinding: a
  page on evil.example that resolves to 127.0.0.1 sends ``Host: evil.example``);
* every state-changing request is a POST with a double-submit CSRF token (cookie + form
  field), and must come from the same origin (``Sec-Fetch-Site``/``Origin``, as Sidekiq 8.1);
* a strict Content-Security-Policy, no CORS headers, no framing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from kombu_worker_sdk.errors import ConfigError

TOKEN_ENV = "KOMBU_WORKER_DASHBOARD_TOKEN"
SESSION_COOKIE = "kwd_session"
CSRF_COOKIE = "kwd_csrf"
CSRF_FIELD = "csrf_token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Paths served without the token: the health check (for probes) and the login form itself.
OPEN_PATHS = ("/healthz", "/login", "/static/")


def is_loopback(host: str) -> bool:
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse, in one line, to listen beyond loopback without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"dashboard --host {host} is reachable from other machines: set ${TOKEN_ENV} "
            "(or --token) so that every request must carry it, or bind 127.0.0.1"
        )


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Guard:
    """Pure decisions about one request, so the rules are unit-testable without a server."""

    token: str | None

    @property
    def session_value(self) -> str:
        """The session cookie's value: derived from the token, useless without it."""
        assert self.token
        return hmac.new(self.token.encode(), b"kombu-worker-dashboard-session", hashlib.sha256).hexdigest()

    def authenticated(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
        if not self.token:
            return True
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return True
        session = cookies.get(SESSION_COOKIE, "")
        return bool(session) and hmac.compare_digest(session.encode(), self.session_value.encode())

    def token_matches(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.encode(), str(self.token).encode())

    @staticmethod
    def same_origin(method: str, headers: Mapping[str, str], host: str) -> bool:
        """A state change must come from our own pages (browsers send these headers)."""
        if method in SAFE_METHODS:
            return True
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = headers.get("origin")
        if origin is None:
            return True  # not a browser, or an old one: the CSRF token still applies
        return origin != "null" and urlsplit(origin).netloc == host

    @staticmethod
    def csrf_ok(form_token: str | None, cookie_token: str | None) -> bool:
        if not form_token or not cookie_token:
            return False
        return hmac.compare_digest(form_token.encode(), cookie_token.encode())


def security_headers(img_sources: str) -> dict[str, str]:
    """Headers on every response: no inline script, no framing, no sniffing, no referrer."""
    return {
        "content-security-policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            f"img-src 'self' {img_sources}".rstrip()
            + "; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on form POSTs.
        "referrer-policy": "same-origin",
        "cache-control": "no-store",
    }
