"""The worker's HTTP server: /metrics, /healthz, /readyz, the preview page, its MJPEG stream and status.

Binds 127.0.0.1 by default. Bound elsewhere, everything but /metrics and /healthz needs the token
(`Authorization: Bearer TOKEN` or `?token=TOKEN`).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)
OPEN_PATHS = ("/metrics", "/healthz")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class TokenRequired(ValueError):
    """Binding beyond loopback without a token."""


class HttpBindError(RuntimeError):
    """The HTTP address cannot be bound (in use, or not an address of this machine)."""


def parse_bind(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--http expects HOST:PORT, got {spec!r}")
    return host or "127.0.0.1", int(port)


class WorkerHTTP:
    def __init__(self, bind: str, worker, token: str = ""):
        self.host, self.port = parse_bind(bind)
        self.worker = worker
        self.token = token
        self.needs_token = self.host not in LOOPBACK
        if self.needs_token and not token:
            raise TokenRequired(f"binding {self.host} beyond loopback needs a token (set FER_HTTP_TOKEN)")
        self.page = resources.files("serving").joinpath("static/preview.html").read_text()
        handler = self._handler()
        try:
            self.server = ThreadingHTTPServer((self.host, self.port), handler)
        except OSError as exc:
            raise HttpBindError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}; choose another "
                                "--http HOST:PORT or stop what holds it") from exc
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="fer-http", daemon=True)

    def start(self) -> WorkerHTTP:
        self._thread.start()
        log.info("HTTP on http://%s:%d (preview /, metrics /metrics)", self.host, self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):  # quiet: the worker logs what matters
                log.debug("http: " + fmt, *args)

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self, query: dict) -> bool:
                if not outer.needs_token:
                    return True
                given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                given = given or (query.get("token") or [""])[0]
                return hmac.compare_digest(given.encode(), outer.token.encode())

            def do_GET(self):  # noqa: N802 - http.server's naming
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if url.path not in OPEN_PATHS and not self._authorised(query):
                    self._send(401, b'{"error": "token required"}', "application/json")
                    return
                w = outer.worker
                if url.path == "/metrics":
                    self._send(200, generate_latest(w.metrics.registry), CONTENT_TYPE_LATEST)
                elif url.path == "/healthz":
                    self._send(200, b'{"status": "alive"}', "application/json")
                elif url.path == "/readyz":
                    ready = w.ready
                    body = json.dumps({"ready": ready, "model_loaded": w.model.ready, "source_open": w.source_open})
                    self._send(200 if ready else 503, body.encode(), "application/json")
                elif url.path == "/api/status":
                    self._send(200, json.dumps(w.status()).encode(), "application/json")
                elif url.path in ("/", "/index.html"):
                    self._send(200, outer.page.encode(), "text/html; charset=utf-8")
                elif url.path == "/stream.mjpg":
                    self._stream()
                elif url.path == "/frame.jpg":
                    _, jpeg = w.preview.next_jpeg(-1, 0)
                    if jpeg is None:
                        self._send(404, b"no frame yet", "text/plain")
                    else:
                        self._send(200, jpeg, "image/jpeg")
                else:
                    self._send(404, b"not found", "text/plain")

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seq = -1
                try:
                    while not outer.worker.stopped:
                        seq, jpeg = outer.worker.preview.next_jpeg(seq, 1.0)
                        if jpeg is None:
                            continue
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return

        return Handler
