"""The HTTP surface of ``reconciler run`` (routes and constants; server below).

The standard library's threading server, hardened rather than replaced: a
whole-request deadline (request line, headers and body within
``REQUEST_TIMEOUT`` seconds, however slowly the bytes trickle in; an idle
keep-alive connection is closed after as long), every error answered as JSON
with a status line (malformed or binary request lines, HTTP/0.9, oversized
headers, unknown methods), and ``Content-Length`` read strictly. A server
library would still need every one of these promises checked here, and
uvicorn (the obvious candidate) has no header deadline and answers malformed
requests in plain text; see ``tests/test_hostile_input.py`` for the requests
each promise is tested with.

The status page (:mod:`reconciler.web`) answers its own paths (``/``,
``/environments/…``, ``/login``, ``/static/…``) through this same server and
its same guards; ``GET /events`` is a server-sent event stream, written here
on the connection's own thread until the client leaves or the server stops.
"""

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
import io
import re
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import orjson

from reconciler import holding
from reconciler.errors import ReconcilerError
from reconciler.httpio import DeadlineReader as _DeadlineReader
from reconciler.logsetup import get_logger
from reconciler.web import EVENTS_PATH, WebUI
from reconciler.webhook import WebhookInvalid, WebhookRefused, authenticate, parse_push

if TYPE_CHECKING:
    from reconciler.service import Service

__all__ = ["HttpServer", "DEFAULT_LISTEN", "HEALTH_PATH", "READY_PATH", "METRICS_PATH"]

log = get_logger("reconciler.server")
_DRAIN_MAX = 16 * 1024 * 1024
REQUEST_TIMEOUT = 10.0  # seconds a client has to send one whole request (headers and body)
_ALLOWED = "GET, HEAD, POST"
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")


_SYNC = re.compile(r"^/api/v1/environments/([A-Za-z0-9][A-Za-z0-9._-]{0,62})/(sync|suspend|resume)$")


class _Handler(BaseHTTPRequestHandler):
    service: "Service"
    web: WebUI
    max_body: int
    request_timeout: float = REQUEST_TIMEOUT
    server_version = "flow-reconciler"
    sys_version = ""
    timeout = REQUEST_TIMEOUT  # a socket timeout too, for writes to a client that stopped reading
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # errors before the version is read still get a status line
    deadline = 0.0
    received = 0

    # -- plumbing ------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self), self.rbufsize if self.rbufsize > 0 else 65536)

    def handle_one_request(self) -> None:
        """The standard library's loop step, with the deadline, JSON errors and 405 for unknown methods."""
        self.deadline = time.monotonic() + self.request_timeout
        self.received = 0
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "request line longer than 65536 bytes")
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            method = getattr(self, "do_" + self.command, None) if self.command.isalpha() else None
            if method is None:
                self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command[:20]!r} not allowed")
                return
            self.connection.settimeout(self.request_timeout)  # writes: as long again (body reads keep the deadline)
            method()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True
            if self.received:  # part of a request came: say why the connection closes
                try:
                    self.send_error(HTTPStatus.REQUEST_TIMEOUT,
                                    f"the whole request must arrive within {self.request_timeout:g} s")
                except OSError:
                    pass
        except (ConnectionError, OSError):
            self.close_connection = True

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok and len(self.requestline.split()) == 2:  # no version: an HTTP/0.9 request
            self.send_error(HTTPStatus.BAD_REQUEST, "HTTP/0.9 requests are not supported")
            return False
        return ok

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every error as JSON with a status line (the standard library sends HTML, and nothing
        but the body to what it takes for an HTTP/0.9 client)."""
        if self.request_version in ("", "HTTP/0.9"):
            self.request_version = "HTTP/1.0"
        if not getattr(self, "command", ""):
            self.command = "GET"
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        text = message if message and message != phrase else phrase
        if explain and code in (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, HTTPStatus.BAD_REQUEST):
            text = f"{text}: {explain}"[:300]
        self._send(code, {"error": text, "status": code}, close=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http", client=self.client_address[0], request=format % args)

    def _send(self, status: int, body: Any, content_type: str = "application/json", *, close: bool = False,
              headers: tuple[tuple[str, str], ...] = ()) -> None:
        if not isinstance(body, bytes):
            body = self.service.redactor.json(body)  # the last guard: no known secret in any answer
        elif self.service.redactor:
            body = self.service.redactor(body.decode("utf-8", "replace")).encode()
        data = body if isinstance(body, bytes) else orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers:
            self.send_header(name, value)
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", _ALLOWED)
        if close or self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message, "status": status})

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self._error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length; chunked bodies are not accepted")
            return None
        given = self.headers.get_all("Content-Length") or ["0"]
        raw = given[0].strip()
        if len(given) != 1 or not _CONTENT_LENGTH.fullmatch(raw):
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST, "bad Content-Length: one header of ASCII digits is expected")
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

    def _query(self) -> str:
        return self.path.split("?", 1)[1] if "?" in self.path else ""

    def _page(self, page) -> None:
        self._send(page.status, page.body, page.content_type, headers=page.headers)

    def _events(self) -> None:
        """``GET /events``: a server-sent event stream until the client leaves or the server stops."""
        hub = self.web.events
        if not self.web.allowed_host(self.headers):
            self._error(HTTPStatus.FORBIDDEN, "this service answers its loopback name only")
            return
        sub = hub.subscribe()
        if sub is None:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"too many open event streams (at most {hub.max_streams})")
            return
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            redact = self.service.redactor
            for chunk in hub.stream(sub):
                self.wfile.write(redact(chunk.decode()).encode() if redact else chunk)
                self.wfile.flush()
        except OSError:  # the client left, or stopped reading for longer than the write timeout
            pass
        finally:
            hub.unsubscribe(sub)

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
        elif path == EVENTS_PATH:
            self._events()
        elif self.web.handles(path):
            self._page(self.web.get(path, self._query(), self.headers))
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {path[:200]}")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802
        path = self._path()
        m = _SYNC.match(path)
        if m and m.group(2) == "sync":
            self._sync(m.group(1))
        elif m:
            self._suspension(m.group(1), suspend=m.group(2) == "suspend")
        elif path == WEBHOOK_PATH:
            self._webhook()
        elif path in (HEALTH_PATH, READY_PATH, METRICS_PATH, STATUS_PATH, EVENTS_PATH):
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use GET")
        elif self.web.handles(path):
            body = self._body()
            if body is not None:
                self._page(self.web.post(path, self.headers, body))
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {path[:200]}")


    # -- state-changing endpoints ---------------------------------------------------------

    def _authorized(self) -> bool:
        """The bearer token of every state-changing API call (401 and False otherwise)."""
        token = self.service.api_token
        given = self.headers.get("Authorization", "")
        if not token:
            self._error(HTTPStatus.UNAUTHORIZED, "no API token is configured; set RECONCILER_API_TOKEN")
            return False
        if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), token.encode())):
            self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")
            return False
        return True

    def _suspension(self, env: str, *, suspend: bool) -> None:
        """``POST …/suspend`` (body, optional: ``{"flows": ["name@1"], "reason": "…", "by": "…"}``) and ``…/resume``."""
        body = self._body()
        if body is None or not self._authorized():
            return
        try:
            doc = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError:
            self._error(HTTPStatus.BAD_REQUEST, "the body is not JSON; send {} or {\"flows\": [...], \"reason\": \"...\"}")
            return
        problem = holding.body_problem(doc)
        if problem:
            self._error(HTTPStatus.BAD_REQUEST, problem)
            return
        who = doc.get("by") or f"api ({self.client_address[0]})"
        try:
            changed = self.service.set_suspension(env, doc.get("flows") or [], suspend=suspend, by=who,
                                                  reason=doc.get("reason") or "")
        except LookupError:
            self._error(HTTPStatus.NOT_FOUND, self.service.why_not(env))
            return
        except ValueError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        except ReconcilerError as exc:  # the repository or the remote failed: nothing is half-written
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
            return
        log.info("suspended" if suspend else "resumed", environment=env, source="api", by=who,
                 flows=doc.get("flows") or [], client=self.client_address[0])
        self._send(HTTPStatus.OK, changed.as_dict())

    def _sync(self, env: str) -> None:
        body = self._body()
        if body is None or not self._authorized():
            return
        if not self.service.trigger(env, "api"):
            self._error(HTTPStatus.NOT_FOUND, self.service.why_not(env))
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

    def __init__(self, service: "Service", host: str, port: int, max_body: int = 1_048_576,
                 request_timeout: float = REQUEST_TIMEOUT, heartbeat: float | None = None):
        self.web = WebUI(service, bound_host=host, **({"heartbeat": heartbeat} if heartbeat else {}))
        handler = type("Handler", (_Handler,), {"service": service, "web": self.web, "max_body": max_body,
                                                "request_timeout": request_timeout, "timeout": request_timeout})
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
        self.web.close()  # ends the event streams, whose threads would otherwise wait for a heartbeat
        self.httpd.shutdown()
        self.httpd.server_close()
