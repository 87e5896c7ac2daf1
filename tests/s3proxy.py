"""A pass-through HTTP proxy in front of the real local S3 that can answer ``503 SlowDown``.

Used to test the retry budget and what puts carry: requests are forwarded unchanged (Host
header included, so signatures still verify), except the ones :attr:`ThrottlingProxy.throttle`
selects, which get S3's throttling answer. Every request's method, path and headers are recorded.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import unquote, urlsplit

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class ThrottlingProxy:
    """``with ThrottlingProxy(upstream_endpoint) as p:`` then point clients at ``p.endpoint_url``.

    ``throttle(method, path) -> bool`` decides which requests get ``503 SlowDown``.
    """

    def __init__(self, upstream: str) -> None:
        host_port = upstream.split("://", 1)[-1].rstrip("/")
        self.host, _, port = host_port.partition(":")
        self.port = int(port or 80)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.throttle: Callable[[str, str], bool] = lambda method, path: False
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = unquote(urlsplit(self.path).path)
                with proxy._lock:
                    proxy.requests.append((self.command, path, dict(self.headers.items())))
                if proxy.throttle(self.command, path):
                    self._answer(503, [("Content-Type", "application/xml")], SLOW_DOWN)
                    return
                conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body,
                                 headers=dict(self.headers.items()))
                    resp = conn.getresponse()
                    data = resp.read()
                    keep = [(k, v) for k, v in resp.getheaders()
                            if k.lower() not in ("transfer-encoding", "connection",
                                                 "content-length", "server", "date")]
                    self._answer(resp.status, keep, data)
                finally:
                    conn.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def count(self, method: str, path: str) -> int:
        """Requests seen for ``method`` on ``path`` (``/bucket/key``)."""
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == method and p == path)

    def headers_of(self, method: str, path: str) -> list[dict[str, str]]:
        with self._lock:
            return [{k.lower(): v for k, v in h.items()} for m, p, h in self.requests
                    if m == method and p == path]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
