"""An in-process DPM-style flow manager, for the HTTP driver's tests.

It implements the semantics of the DPM product page (``../shared/seeds/``):
a flow is exported as JSON carrying its name and version; an import may change
the name and version, and replaces an existing name+version only with
*Override* on (otherwise 409 "already exists"). The REST surface is one
plausible shape of such a product::

    GET    /api/v1/flows[?page=N]                          {"items": [summaries or flows], "next": link|null}
    GET    /api/v1/flows/{name}/versions/{version}/export  the flow, with exportedAt and revision
    POST   /api/v1/flows/import[?override=true|false]      {"name", "version", "flow", ["override"]}
    DELETE /api/v1/flows/{name}/versions/{version}         204, or 404

``Authorization: Bearer <token>`` is required everywhere (401 otherwise). Names
are percent-decoded per path segment, so ``a%2Fb`` is the flow named ``a/b``.
Every stored flow carries a server-assigned ``revision``, bumped on each write,
and every export a fresh ``exportedAt``: volatile fields, as on real platforms.

Fault switches (thread-safe, set from the test):

- ``fail_next(n, status)``: the next n requests get that 5xx;
- ``slow_next(n, seconds)``: the next n requests answer only after that long;
- ``edit_after_read(name, version, mutate)``: right after the flow is next
  served (export or full listing), it is changed as by a person in the UI;
- ``create_after_list(doc)``: right after the next listing, the flow appears;
- ``break_export(name, version)``: the flow is listed but its export answers 404;
- flows without a ``steps`` array are refused with 400 and a message.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

PREFIX = ("api", "v1", "flows")


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str  # raw, still percent-encoded
    query: dict[str, list[str]]
    body: Any
    authorization: str | None


@dataclass
class _Faults:
    fail: int = 0
    fail_status: int = 500
    slow: int = 0
    slow_seconds: float = 0.0
    edits: dict[tuple[str, str], Callable[[dict], None]] = field(default_factory=dict)
    create_after_list: list[dict] = field(default_factory=list)
    broken: set[tuple[str, str]] = field(default_factory=set)


class DpmServer:
    """A ThreadingHTTPServer on 127.0.0.1 (port chosen by the OS), holding flows in memory."""

    def __init__(
        self,
        token: str = "dpm-t0ken",
        *,
        list_full: bool = False,
        override_in: Literal["query", "body"] = "query",
        page_size: int | None = None,
    ):
        self.token = token
        self.list_full, self.override_in, self.page_size = list_full, override_in, page_size
        self.flows: dict[tuple[str, str], dict] = {}
        self.polls: dict[tuple[str, str], int] = {}  # status reads since the flow was last written
        self.seen: list[Seen] = []
        self.faults = _Faults()
        self.lock = threading.RLock()
        self._revision = 0
        self._stop = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "DpmServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the platform's state, as a person in the UI would change it --------------------

    def put(self, doc: dict) -> None:
        """Create or replace a flow (an import with override, or an edit in the UI)."""
        with self.lock:
            self._store(json.loads(json.dumps(doc)))

    def edit(self, name: str, version: str, mutate: Callable[[dict], None]) -> None:
        with self.lock:
            doc = self.flows[(name, version)]
            mutate(doc)
            self._bump(doc)

    def get(self, name: str, version: str) -> dict | None:
        with self.lock:
            doc = self.flows.get((name, version))
            return json.loads(json.dumps(doc)) if doc is not None else None

    def keys(self) -> set[tuple[str, str]]:
        with self.lock:
            return set(self.flows)

    def count(self, method: str, contains: str = "") -> int:
        """Requests seen with this method whose raw path contains ``contains``."""
        with self.lock:
            return sum(1 for s in self.seen if s.method == method and contains in s.path)

    # -- faults ------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500) -> None:
        with self.lock:
            self.faults.fail, self.faults.fail_status = n, status

    def slow_next(self, n: int, seconds: float) -> None:
        with self.lock:
            self.faults.slow, self.faults.slow_seconds = n, seconds

    def edit_after_read(self, name: str, version: str, mutate: Callable[[dict], None]) -> None:
        with self.lock:
            self.faults.edits[(name, version)] = mutate

    def create_after_list(self, doc: dict) -> None:
        with self.lock:
            self.faults.create_after_list.append(doc)

    def break_export(self, name: str, version: str) -> None:
        with self.lock:
            self.faults.broken.add((name, version))

    # -- internals -----------------------------------------------------------------

    def _store(self, doc: dict) -> None:
        self._bump(doc)
        self.flows[(str(doc["name"]), str(doc["version"]))] = doc
        self.polls[(str(doc["name"]), str(doc["version"]))] = 0

    def _bump(self, doc: dict) -> None:
        self._revision += 1
        doc["revision"] = self._revision

    def _after_read(self, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            mutate = self.faults.edits.pop(key, None)
            if mutate is not None and key in self.flows:
                self.edit(*key, mutate)

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any, float]:
        """(status, JSON answer, seconds to wait before answering)."""
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = "<not JSON>"
        with self.lock:
            self.seen.append(Seen(method, parts.path, query, parsed, headers.get("Authorization")))
            delay = 0.0
            if self.faults.slow:
                self.faults.slow -= 1
                delay = self.faults.slow_seconds
            if self.faults.fail:
                self.faults.fail -= 1
                return self.faults.fail_status, {"message": "internal error: the database is restarting"}, delay
            if headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {"message": "Unauthorized: invalid or missing token"}, delay
            segs = [unquote(s) for s in parts.path.strip("/").split("/")]
            if tuple(segs[:3]) != PREFIX:
                return 404, {"message": f"no route {parts.path}"}, delay
            rest = segs[3:]
            if method == "GET" and rest == []:
                return (*self._list(query), delay)
            if method == "GET" and len(rest) == 4 and rest[1] == "versions" and rest[3] == "export":
                return (*self._export(rest[0], rest[2]), delay)
            if method == "GET" and len(rest) == 4 and rest[1] == "versions" and rest[3] == "status":
                return (*self._status(rest[0], rest[2]), delay)
            if method == "POST" and rest == ["import"]:
                return (*self._import(query, parsed), delay)
            if method == "DELETE" and len(rest) == 3 and rest[1] == "versions":
                return (*self._delete(rest[0], rest[2]), delay)
            return 404, {"message": f"no route {method} {parts.path}"}, delay

    def _list(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        keys = sorted(self.flows)
        page = int(query.get("page", ["1"])[0])
        nxt = None
        if self.page_size:
            start = (page - 1) * self.page_size
            if start + self.page_size < len(keys):
                nxt = f"/api/v1/flows?page={page + 1}"
            keys = keys[start:start + self.page_size]
        if self.list_full:
            items = [self._exported(k) for k in keys]
        else:
            items = [{"name": k[0], "version": k[1], "revision": self.flows[k]["revision"]} for k in keys]
        answer = {"items": items, "total": len(self.flows), "next": nxt}
        if self.list_full:
            self._after_read(keys)
        for doc in self.faults.create_after_list:
            self._store(json.loads(json.dumps(doc)))
        self.faults.create_after_list.clear()
        return 200, answer

    def _exported(self, key: tuple[str, str]) -> dict:
        doc = json.loads(json.dumps(self.flows[key]))
        doc["exportedAt"] = datetime.now(timezone.utc).isoformat()
        return doc

    def _export(self, name: str, version: str) -> tuple[int, Any]:
        if (name, version) not in self.flows or (name, version) in self.faults.broken:
            return 404, {"message": f"Flow '{name}' version '{version}' not found"}
        answer = self._exported((name, version))
        self._after_read([(name, version)])
        return 200, answer

    def _import(self, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("flow"), dict):
            return 400, {"message": "the request must be a JSON object with a 'flow' object"}
        if self.override_in == "query":
            override = query.get("override", ["false"])[0] == "true"
        else:
            override = body.get("override") is True
        doc = body["flow"]
        name, version = str(body.get("name", doc.get("name"))), str(body.get("version", doc.get("version")))
        if not isinstance(doc.get("steps"), list) or not doc["steps"]:
            return 400, {"message": f"Flow '{name}' is invalid: 'steps' must be a non-empty list"}
        if (name, version) in self.flows and not override:
            return 409, {"message": f"Flow '{name}' version '{version}' already exists; turn Override on to replace it"}
        doc["name"], doc["version"] = name, version  # the import dialog's "change name and version"
        doc.pop("exportedAt", None)
        self._store(doc)
        return 201, {"name": name, "version": version, "revision": doc["revision"]}

    def _status(self, name: str, version: str) -> tuple[int, Any]:
        """A deployed flow's run state, as the platform's monitor shows it: "starting" on the first read
        after a write, then "running"; a flow whose doc says ``"start": "fails"`` fails to start, and
        ``"start": "hangs"`` never leaves "starting"."""
        key = (name, version)
        if key not in self.flows:
            return 404, {"message": f"Flow '{name}' version '{version}' not found"}
        self.polls[key] = self.polls.get(key, 0) + 1
        start = self.flows[key].get("start")
        if self.polls[key] == 1 or start == "hangs":
            return 200, {"status": {"state": "starting"}}
        if start == "fails":
            return 200, {"status": {"state": "failed", "error": "step 'load' could not start: connection refused"}}
        return 200, {"status": {"state": "running"}}

    def _delete(self, name: str, version: str) -> tuple[int, Any]:
        if self.flows.pop((name, version), None) is None:
            return 404, {"message": f"Flow '{name}' version '{version}' not found"}
        return 204, None


def _handler(server: DpmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the HTTP client's pool (reconciler.drivers._http) expects

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, answer, delay = server.handle(self.command, self.path, self.headers, body)
            if delay and server._stop.wait(delay):
                return
            data = b"" if answer is None else json.dumps(answer).encode()
            try:
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (timed out)

        do_GET = do_POST = do_DELETE = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    return Handler
