"""The HTTP surface of ``reconciler run`` (routes and constants; server below)."""

from __future__ import annotations

DEFAULT_LISTEN = "127.0.0.1:9420"
DEFAULT_PORT = 9420
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
STATUS_PATH = "/api/v1/status"
SYNC_PATH = "/api/v1/environments/{env}/sync"
WEBHOOK_PATH = "/hooks/git"

import hmac
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from reconciler.webhook import WebhookInvalid, WebhookRefused, authenticate, parse_push

if TYPE_CHECKING:
    from reconciler.service import Service

__all__ = ["HttpServer", "DEFAULT_LISTEN", "HEALTH_PATH", "READY_PATH", "METRICS_PATH"]

log = structlog.get_logger("reconciler.http")
_DRAIN_MAX = 16 * 1024 * 1024
_SYNC = re.compile(r"^/api/v1/environments/([A-Za-z0-9][A-Za-z0-9._-]{0,62})/sync$")


class _Handler(BaseHTTPRequestHandler):
    service: "Service"
    max_body: int
    server_version = "flow-reconciler"
    sys_version = ""
    timeout = 10  # seconds a client may take to send a request: no slowloris
    protocol_version = "HTTP/1.1"

    # -- plumbing ------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http", client=self.client_address[0], request=format % args)

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message, "status": status})

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self._error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length; chunked bodies are not accepted")
            return None
        raw = self.headers.get("Content-Length", "0")
        if not raw.isdigit():
            self._error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return None
        length = int(raw)
        if length > self.max_body:
            self.close_connection = True
            # Read (and drop) a bounded amount so the client sees the 413 instead of
            # a reset connection; never more than _DRAIN_MAX, never into memory.
            left = min(length, _DRAIN_MAX)
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body larger than {self.max_body} bytes")
            return None
        return self.rfile.read(length) if length else b""

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    # -- methods -----------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path, svc = self._path(), self.service
        if path == HEALTH_PATH:
            self._send(200, {"status": "ok"})
        elif path == READY_PATH:
            ok, reasons = svc.ready()
            self._send(200 if ok else 503, {"ready": ok, "reasons": reasons})
        elif path == METRICS_PATH:
            self._send(200, svc.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == STATUS_PATH:
            self._send(200, svc.status())
        elif path in (WEBHOOK_PATH,) or _SYNC.match(path):
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use POST")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {path[:200]}")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802
        path = self._path()
        m = _SYNC.match(path)
        if m:
            self._sync(m.group(1))
        elif path == WEBHOOK_PATH:
            self._webhook()
        elif path in (HEALTH_PATH, READY_PATH, METRICS_PATH, STATUS_PATH):
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use GET")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {path[:200]}")

    def _other(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} not allowed")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other  # noqa: N815

    # -- state-changing endpoints ---------------------------------------------------------

    def _sync(self, env: str) -> None:
        body = self._body()
        if body is None:
            return
        token = self.service.api_token
        given = self.headers.get("Authorization", "")
        if not token:
            self._error(HTTPStatus.UNAUTHORIZED, "no API token is configured; set RECONCILER_API_TOKEN")
            return
        if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), token.encode())):
            self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")
            return
        if not self.service.trigger(env, "api"):
            self._error(HTTPStatus.NOT_FOUND, f"environment {env!r} is not handled by this replica (shard {self.service.shard})")
            return
        log.info("sync requested", environment=env, source="api", client=self.client_address[0])
        self._send(HTTPStatus.ACCEPTED, {"queued": [env]})

    def _webhook(self) -> None:
        body = self._body()
        if body is None:
            return
        try:
            provider = authenticate(dict(self.headers.items()), body, self.service.webhook_secret)
        except WebhookRefused as exc:
            log.warning("webhook refused", reason=str(exc), client=self.client_address[0])
            self._error(HTTPStatus.UNAUTHORIZED, str(exc))
            return
        try:
            event = parse_push(provider, dict(self.headers.items()), body)
        except WebhookInvalid as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        if event.ping:
            self._send(200, {"pong": True})
            return
        svc = self.service
        envs = [e.name for e in svc.owned_envs() if e.branch_name in event.branches]
        if envs:
            # Fetching may take a while; answer the git server now.
            threading.Thread(
                target=svc.fetch_and_trigger, args=(f"webhook:{provider}", event.branches), daemon=True
            ).start()
        log.info("webhook", provider=provider, refs=list(event.refs), environments=envs)
        self._send(HTTPStatus.ACCEPTED, {"environments": envs})


class HttpServer:
    """The service's HTTP endpoints on one address (127.0.0.1:9420 by default)."""

    def __init__(self, service: "Service", host: str, port: int, max_body: int = 1_048_576):
        handler = type("Handler", (_Handler,), {"service": service, "max_body": max_body})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
