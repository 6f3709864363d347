"""Section b's meter: an HTTP proxy in front of moto that counts SQS requests on the wire.

Counting on the wire sees botocore's calls and Kombu's pycurl long polls (which Celery's
event loop uses) alike, which a botocore event hook would not. With ``delay`` it also adds
that many seconds to every request before forwarding it: section f's network round trip.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class CountingProxy:
    """An HTTP proxy in front of moto that counts SQS requests by operation, on the wire."""

    HOP = {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "content-length",
    }

    def __init__(self, upstream: str, delay: float = 0.0):
        parts = urlsplit(upstream)
        self.delay = delay
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.count(self.command, self.path, self.headers.get("X-Amz-Target"), body)
                if proxy.delay:
                    time.sleep(proxy.delay)  # a round trip to a region, on this request's thread
                headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy.HOP}
                data, status = b"", 502
                reply: list[tuple[str, str]] = []
                for _attempt in range(2):
                    conn = getattr(local, "conn", None)
                    if conn is None:
                        conn = local.conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        resp = conn.getresponse()
                        data, status, reply = resp.read(), resp.status, resp.getheaders()
                        break
                    except (OSError, http.client.HTTPException):
                        conn.close()
                        local.conn = None
                try:
                    self.send_response(status)
                    for key, value in reply:
                        if key.lower() not in proxy.HOP:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client went away (a long poll cut short by a stopping worker)
                    self.close_connection = True

            do_POST = do_GET = do_PUT = do_DELETE = do_HEAD = _forward

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that hangs up mid-request is not the benchmark's business

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="bench-proxy", daemon=True)
        self.thread.start()

    def count(self, method: str, path: str, target: str | None, body: bytes) -> None:
        op = target.rpartition(".")[2] if target else ""
        if not op:
            form = parse_qs(body.decode("utf-8", "replace")) if body else {}
            form.update(parse_qs(urlsplit(path).query))
            op = (form.get("Action") or [f"{method} {urlsplit(path).path}"])[0]
        with self.lock:
            self.counts[op] += 1

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def per_message(counts: Counter[str], processed: int) -> dict[str, Any]:
    total = sum(counts.values())
    return {
        "processed": processed,
        "requests": dict(sorted(counts.items())),
        "total_requests": total,
        "per_message": total / processed if processed else float("nan"),
        "per_message_by_operation": {k: v / processed for k, v in sorted(counts.items())}
        if processed
        else {},
    }
