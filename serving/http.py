"""The worker's HTTP server (FastAPI on uvicorn): metrics, health, the preview page, its MJPEG stream, status.

Binds 127.0.0.1 by default, where nothing needs a token. Bound elsewhere, a token is required
(`Authorization: Bearer TOKEN`) for everything but `/healthz` and the preview page's static shell, and for
`/metrics` too unless `serve.open_metrics` (it exposes per-emotion counts of the people on camera). The
`?token=` query form is accepted only over TLS (`serve.tls_cert`/`serve.tls_key`): in a URL over plain
HTTP it would travel and be logged in the clear. Connections are limited and idle ones time out.
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
from collections.abc import Iterator
from importlib import resources

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ALWAYS_OPEN = ("/healthz", "/", "/index.html")  # liveness, and the page shell (it holds no data)
MAX_CONNECTIONS = 32  # beyond this uvicorn answers 503
KEEP_ALIVE_S = 5


class TokenRequired(ValueError):
    """Binding beyond loopback without a token."""


class HttpBindError(RuntimeError):
    """The HTTP address cannot be bound (in use, or not an address of this machine)."""


def parse_bind(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--http expects HOST:PORT, got {spec!r}")
    return host or "127.0.0.1", int(port)


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port, or an HttpBindError that says what to do."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise HttpBindError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another "
                            "--http HOST:PORT or stop what holds it") from exc
    return sock


def check_bindable(spec: str) -> None:
    """Fail now when --http cannot be bound: `fer serve` checks before it fetches a model."""
    bind_socket(*parse_bind(spec)).close()


def build_app(worker, token: str = "", needs_token: bool = False, tls: bool = False,
              open_metrics: bool = False) -> FastAPI:
    """The routes; `worker` provides metrics, model, ready, source_open, stopped, status() and preview."""
    app = FastAPI(title="FER worker", docs_url=None, redoc_url=None, openapi_url=None)
    page = resources.files("serving").joinpath("static/preview.html").read_text()
    open_paths = (*ALWAYS_OPEN, "/metrics") if open_metrics else ALWAYS_OPEN

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if needs_token and request.url.path not in open_paths:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not given and tls:
                given = request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "token required (Authorization: Bearer TOKEN)"}, status_code=401)
        response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(worker.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "alive"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        ready = bool(worker.ready)
        body = {"ready": ready, "model_loaded": bool(worker.model.ready), "source_open": bool(worker.source_open)}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/api/status")
    def status() -> dict:
        return worker.status()

    @app.get("/", response_class=HTMLResponse)
    @app.get("/index.html", response_class=HTMLResponse)
    def preview_page() -> str:
        return page

    @app.get("/frame.jpg")
    def frame() -> Response:
        _, jpeg = worker.preview.next_jpeg(-1, 0)
        if jpeg is None:
            return Response(b"no frame yet", status_code=404, media_type="text/plain")
        return Response(jpeg, media_type="image/jpeg")

    @app.get("/stream.mjpg")
    def stream() -> StreamingResponse:
        def frames() -> Iterator[bytes]:
            seq = -1
            while not worker.stopped:
                seq, jpeg = worker.preview.next_jpeg(seq, 1.0)
                if jpeg is not None:
                    yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode()
                           + b"\r\n\r\n" + jpeg + b"\r\n")

        return StreamingResponse(frames(), media_type="multipart/x-mixed-replace; boundary=frame")

    return app


class WorkerHTTP:
    """The app on uvicorn in a background thread, on a socket bound up front (so a taken port is a clear
    error at start-up, not a log line from a thread)."""

    def __init__(self, bind: str, worker, token: str = "", *, open_metrics: bool = False, tls_cert: str = "",
                 tls_key: str = ""):
        self.host, self.port = parse_bind(bind)
        self.needs_token = self.host not in LOOPBACK
        if self.needs_token and not token:
            raise TokenRequired(f"binding {self.host} beyond loopback needs a token (set FER_HTTP_TOKEN)")
        self.tls = bool(tls_cert and tls_key)
        app = build_app(worker, token, self.needs_token, self.tls, open_metrics)
        self.sock = bind_socket(self.host, self.port)
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, limit_concurrency=MAX_CONNECTIONS,
                                timeout_keep_alive=KEEP_ALIVE_S, timeout_graceful_shutdown=2,
                                ssl_certfile=tls_cert or None, ssl_keyfile=tls_key or None, lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="fer-http",
                                        daemon=True)

    def start(self) -> WorkerHTTP:
        self._thread.start()
        scheme = "https" if self.tls else "http"
        log.info("HTTP on %s://%s:%d (preview /, metrics /metrics)", scheme, self.host, self.port)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(10)
        self.sock.close()
