"""The HTTP driver: a declarative mapping onto DPM-style flow managers (``driver = "http"``).

Products like the DPM export a flow as JSON carrying its name and version, and
import it with an optional name/version change and an *Override* switch. Their
REST APIs differ only in paths and field names, so this driver is configured,
not coded. A complete mapping (every key shown; defaults noted)::

    [[environment]]
    name = "production"
    driver = "http"
    url = "https://dpm.example.com/api/v1"   # base URL; http or https, no credentials in it
    drift = "restore"
    prune = true                             # needs [environment.delete]
    identity = { name = "/name", version = "/version" }  # where an export keeps them
    ignore = ["/exportedAt", "/revision"]    # fields the platform sets on export/import
    timeout = 10                             # seconds per request (connect, and each read)
    attempts = 3                             # tries per request on a timeout or a 5xx/429
    backoff = 0.5                            # first delay between tries, doubling
    concurrency = 4                          # flows fetched in parallel on export

    [environment.auth]                       # omit when the API needs no credentials
    env = "DPM_TOKEN"                        # environment variable holding the token
    header = "Authorization"                 # default
    scheme = "Bearer"                        # sent as "Bearer <token>"; "" sends the token alone

    [environment.list]
    path = "/flows"                          # GET; the response holds an array ...
    items = "/items"                         # ... at this JSON pointer ("" = the response is the array)
    full = false                             # items are summaries: each flow is fetched from `export`
    name = "/name"                           # where a summary keeps the name (default: identity.name)
    version = "/version"                     # ... and the version (default: identity.version)
    next = "/next"                           # optional: link to the next page (same host only)

    [environment.export]                     # required unless list.full = true
    path = "/flows/{name}/versions/{version}/export"   # GET
    flow = ""                                # pointer of the flow in the response ("" = all of it)

    [environment.import]
    method = "POST"                          # or PUT
    path = "/flows/import"                   # {name} and {version} allowed here too
    flow = "/flow"                           # where the flow goes in the body ("" = the body is the flow)
    name = "/name"                           # optional body fields carrying the target name ...
    version = "/version"                     # ... and version (the DPM's "change name/version")
    override = { query = "override" }        # ?override=true|false, or { field = "/override" } (JSON boolean)

    [environment.delete]                     # optional; without it prune cannot be on
    method = "DELETE"                        # or POST
    path = "/flows/{name}/versions/{version}"

Paths are appended to ``url``; ``{name}`` and ``{version}`` are percent-encoded
as one path segment each (``/`` becomes ``%2F``, spaces ``%20``, non-ASCII its
UTF-8 bytes; ``.`` and ``..`` are escaped too), so any flow name is safe.

Behaviour:

- **Preconditions.** Before replacing or deleting a flow the driver re-reads it
  (one GET) and compares its canonical blob id with what the plan saw; if it
  changed (an edit in the UI), that flow fails with a clear message and is left
  as it is; the next run sees drift or a conflict. A new flow is imported with
  override *off*, so the platform itself refuses it if someone created it in the
  meantime: a 409 (or a 4xx saying "already exists") is that flow's failure,
  reported once, not retried. The window between the re-read and the write is
  one round trip; closing it needs a revision precondition from the platform,
  which DPM-style APIs do not offer.
- **Transient failures.** Timeouts, refused connections, 5xx and 429 are
  retried ``attempts`` times with exponential backoff, then the run stops with
  a :class:`RetryableError` naming the URL (the service backs off; the CLI
  exits 1). A dead platform therefore costs a bounded number of requests.
- **Refusals.** Other 4xx are not retried: the platform's message (``message``,
  ``error``, ``detail`` or ``title`` of a JSON body, else the text) is that
  flow's failure. 401/403 stop the run with a :class:`StallError` naming the
  environment variable; so does a missing token.
- **Listing safety.** A listed flow that cannot be exported (any 4xx, including
  404) makes the live set incomplete, so its absence is never taken for a
  deletion.
- **Secrets.** The token is read from the environment at each request, never
  from the config file, and never logged or put in a message. Redirects are not
  followed (the token would travel with them); a ``next`` page on another host
  is refused for the same reason.
- **Transport.** Standard library only (``http.client``), with keep-alive
  connections pooled per environment. TLS uses the system's trust store
  (``SSL_CERT_FILE`` points at another bundle); proxies are not supported.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import orjson
import structlog

from reconciler import __version__
from reconciler import pointers
from reconciler.canonical import InvalidJSON, blob_id, parse_json
from reconciler.drivers import Change, LiveCollector, LiveSet, Progress
from reconciler.errors import Problem, RetryableError, StallError
from reconciler.flows import CanonicalFlow, FlowInvalid, FlowKey, Identity, flow_from_doc

from .mapping import HttpMapping
from .settings import (
    SETTINGS,
    AuthSettings,
    DeleteRoute,
    ExportRoute,
    HttpEnvironment,
    ImportRoute,
    ListRoute,
    OverrideFlag,
)

__all__ = [
    "HttpEnvironment",
    "HttpDriver",
    "AuthSettings",
    "ListRoute",
    "ExportRoute",
    "ImportRoute",
    "DeleteRoute",
    "OverrideFlag",
    "SETTINGS",
]

log = structlog.get_logger("reconciler.drivers.http")

# Flow exports are small; a bigger answer is refused rather than read into memory.
MAX_BODY_BYTES = 64 * 1024 * 1024
# A 4xx on an import without override whose message says this is a name clash.
_EXISTS = re.compile(r"already exists?", re.IGNORECASE)


# -- transport ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Response:
    status: int
    reason: str
    body: bytes
    location: str | None = None
    resent: bool = False  # sent a second time on a fresh connection (the first may have landed)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        """``409 Conflict: <the platform's own message>``."""
        said = _platform_message(self.body)
        return f"{self.status} {self.reason}" + (f": {said}" if said else "")


class _Pool:
    """Keep-alive HTTP/1.1 connections to one origin, shared by threads."""

    def __init__(self, url: str, timeout: float):
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "", parts.port
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.timeout = timeout
        self._tls = ssl.create_default_context() if self.https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _new(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def send(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> _Response:
        with self._lock:
            conn, reused = (self._idle.pop(), True) if self._idle else (self._new(), False)
        try:
            try:
                return self._exchange(conn, method, target, body, headers)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # The server closed an idle keep-alive connection: almost always
                # before reading the request, so it is sent again once. Marked
                # `resent`, so an import that then meets 409 checks whether the
                # first one landed after all.
                conn.close()
                conn = self._new()
                return replace(self._exchange(conn, method, target, body, headers), resent=True)
        except BaseException:
            conn.close()
            raise

    def _exchange(self, conn, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> _Response:
        conn.request(method, target, body=body, headers=dict(headers))
        resp = conn.getresponse()
        length = resp.getheader("Content-Length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise _TooBig(f"the answer is {length} bytes, more than the {MAX_BODY_BYTES}-byte limit")
        data = resp.read(MAX_BODY_BYTES + 1)
        if len(data) > MAX_BODY_BYTES:
            raise _TooBig(f"the answer is larger than the {MAX_BODY_BYTES}-byte limit")
        out = _Response(resp.status, resp.reason or "", data, resp.getheader("Location"))
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        return out

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _TooBig(Exception):
    pass


class _Refused(Exception):
    """One flow could not be written; the message says why and what happens next."""


# -- the driver ----------------------------------------------------------------------


class HttpDriver:
    """Talks to one environment's flow manager through its :class:`HttpEnvironment` mapping."""

    def __init__(
        self,
        env: HttpEnvironment,
        *,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.env = env
        self.identity, self.rules = env.flow_identity, env.rules
        self.location = env.url
        self.mapping = HttpMapping(env)
        self._base_path = urlsplit(env.url).path.rstrip("/")
        self._pool = _Pool(env.url, env.timeout)
        self._environ = os.environ if environ is None else environ
        self._sleep = sleep

    def close(self) -> None:
        self._pool.close()

    # -- export ------------------------------------------------------------------

    def export(self, progress: Progress | None = None) -> LiveSet:
        collect = LiveCollector(self.identity, self.rules)
        items = self._list()
        total = len(items)
        if self.env.list_.full:
            for i, (item, where) in enumerate(items, 1):
                collect.add(item, where)
                _tick(progress, i, total)
            return collect.result()
        keys: list[tuple[FlowKey, str]] = []
        for item, where in items:
            try:
                keys.append((self.mapping.summary_key(item), where))
            except FlowInvalid as exc:
                collect.problem(Problem(where, f"a listed flow cannot be identified: {exc}", exc.pointer))
        for i, ((key, listed), got) in enumerate(zip(keys, self._fetch_all([k for k, _ in keys])), 1):
            if got is None:
                collect.problem(Problem(
                    listed, "listed, but its export answered 404 (deleted meanwhile, or is export.path wrong?); "
                    "skipped, and its absence is not taken for a deletion", flow=str(key)
                ))
            elif isinstance(got, Problem):
                collect.problem(got)
            else:
                doc, where = got
                if self._matches(doc, key, where, collect):
                    collect.add(doc, where)
            _tick(progress, i, total)
        return collect.result()

    def _matches(self, doc: Any, key: FlowKey, where: str, collect: LiveCollector) -> bool:
        try:
            found = self.identity.key_of(doc)
        except FlowInvalid as exc:
            collect.problem(Problem(where, str(exc), exc.pointer, str(key)))
            return False
        if found != key:
            collect.problem(Problem(where, f"listed as {key} but the export says it is {found}; skipped", flow=str(key)))
            return False
        return True

    def _list(self) -> list[tuple[Any, str]]:
        """Every item of every page of the listing, with where it was found."""
        target: str | None = self._target(self.mapping.listing())
        seen: set[str] = set()
        out: list[tuple[Any, str]] = []
        while target is not None:
            if target in seen:
                raise StallError(f"GET {self._url(target)}: the listing links back to a page already read (list.next)")
            seen.add(target)
            url = self._url(target)
            resp, _ = self._request("GET", target)
            if not resp.ok:
                raise StallError(f"GET {url}: {resp.message}; check url and list.path")
            page = self.mapping.page(self._json(resp, f"GET {url}"), url, self._pool.origin)
            out.extend(page.items)
            target = page.next
        return out

    def _fetch_all(self, keys: Sequence[FlowKey]) -> Iterator[tuple[Any, str] | Problem | None]:
        if self.env.concurrency == 1 or len(keys) < 2:
            yield from map(self._fetch, keys)
            return
        pool = ThreadPoolExecutor(max_workers=min(self.env.concurrency, len(keys)), thread_name_prefix="http-export")
        try:
            yield from pool.map(self._fetch, keys)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _fetch(self, key: FlowKey) -> tuple[Any, str] | Problem | None:
        """One flow's export: (document, url), None when the platform says 404, or a Problem."""
        target = self._target(self.mapping.export_path(key))
        url = self._url(target)
        resp, _ = self._request("GET", target)
        if resp.status == 404:
            return None
        if not resp.ok:
            return Problem(url, f"cannot export: {resp.message}; skipped", flow=str(key))
        try:
            doc = parse_json(resp.body)
        except InvalidJSON as exc:
            return Problem(url, f"the export is not usable JSON: {exc}; skipped", exc.pointer, str(key))
        flow = self.mapping.flow_of(doc)
        if flow is pointers.MISSING:
            assert self.env.export is not None
            return Problem(url, f"no flow at {self.env.export.flow} of the export; check export.flow", flow=str(key))
        return flow, url

    # -- apply -----------------------------------------------------------------

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> dict[FlowKey, str]:
        """Import or delete each flow under its precondition; per-flow refusals are returned.

        A platform that is down (RetryableError) or refuses the credentials
        (StallError) stops the batch: every further request would fail the same way.
        """
        failed: dict[FlowKey, str] = {}
        total = len(changes)
        for i, change in enumerate(changes, 1):
            try:
                if change.data is None:
                    self._delete(change)
                else:
                    self._import(change)
            except _Refused as exc:
                failed[change.key] = str(exc)
            _tick(progress, i, total)
        return failed

    def _import(self, change: Change) -> None:
        assert change.data is not None
        override = change.expect is not None
        if override:
            if not self.env.override:
                raise _Refused("override is off for this environment, so the existing flow stays")
            self._check_unchanged(change)
        req = self.mapping.import_request(change.key, change.data, override)
        resp, retried = self._request(req.method, self._target(req.path), req.body)
        if resp.ok:
            return
        if not override and 400 <= resp.status < 500 and (resp.status == 409 or _EXISTS.search(resp.message)):
            if retried and self._current(change.key) == blob_id(change.data):
                return  # an earlier try that timed out did land: the platform holds exactly this flow
            raise _Refused(
                f"already exists in the platform ({resp.message}): it was created there after the flows were "
                "read; left as it is, the next run compares it with git"
            )
        raise _Refused(f"the platform refused the import: {resp.message}")

    def _delete(self, change: Change) -> None:
        req = self.mapping.delete_request(change.key)
        if req is None:
            raise _Refused("the environment's mapping has no delete endpoint ([environment.delete]); left as it is")
        if self._check_unchanged(change) is None:
            return  # already gone, as the plan saw it
        resp, _ = self._request(req.method, self._target(req.path))
        if not resp.ok and resp.status != 404:  # 404: gone already (an earlier try that timed out)
            raise _Refused(f"the platform refused the delete: {resp.message}")

    def _check_unchanged(self, change: Change) -> str | None:
        current = self._current(change.key)
        if current != change.expect:
            raise _Refused(
                f"changed in the platform since it was read (expected {_short(change.expect)}, found "
                f"{_short(current)}); left as it is, the next run re-checks it"
            )
        return current

    def _current(self, key: FlowKey) -> str | None:
        """Canonical blob id of the flow the platform holds now (None if absent, "invalid" if unusable)."""
        if self.env.export is None:
            return self._oids_from_listing([key])[key]
        got = self._fetch(key)
        if isinstance(got, Problem):
            raise _Refused(f"cannot re-read it to check for changes: {got.message}")
        return self._oid(key, got)

    def reread(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        """Canonical blob ids of just these flows, for the engine's read-after-write check.

        One GET per flow (in parallel) instead of a listing plus every export.
        """
        if self.env.export is None:
            return self._oids_from_listing(keys)
        return {
            key: "unreadable" if isinstance(got, Problem) else self._oid(key, got)
            for key, got in zip(keys, self._fetch_all(keys))
        }

    def _oid(self, key: FlowKey, got: tuple[Any, str] | None) -> str | None:
        if got is None:
            return None
        doc, where = got
        flow = flow_from_doc(doc, self.identity, self.rules, where=where, expect=key)
        return flow.oid if isinstance(flow, CanonicalFlow) else "invalid"

    def _oids_from_listing(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        """With list.full and no export route, one listing answers for every key."""
        found: dict[FlowKey, list[tuple[Any, str]]] = {key: [] for key in keys}
        for doc, where in self._list():
            key = _key_or_none(self.identity, doc)
            if key in found:
                found[key].append((doc, where))
        return {
            key: "invalid" if len(docs) > 1 else self._oid(key, docs[0] if docs else None)
            for key, docs in found.items()
        }

    # -- requests ----------------------------------------------------------------

    def _target(self, path: str) -> str:
        return self._base_path + path

    def _url(self, target: str) -> str:
        return self._pool.origin + target

    def _headers(self, with_body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"flow-reconciler/{__version__}"}
        if with_body:
            headers["Content-Type"] = "application/json"
        auth = self.env.auth
        if auth is not None:
            token = (self._environ.get(auth.env) or "").strip()
            if not token:
                raise StallError(
                    f"environment {self.env.name}: ${auth.env} is not set; it must hold the token for "
                    f"{self.env.url} (auth.env)"
                )
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
                raise StallError(f"environment {self.env.name}: ${auth.env} holds a control character (a line break?)")
            headers[auth.header] = f"{auth.scheme} {token}" if auth.scheme else token
        return headers

    def _request(self, method: str, target: str, body: bytes | None = None) -> tuple[_Response, bool]:
        """Send with bounded retries; returns (response, retried) for anything but 5xx/429/401/403/3xx."""
        url = self._url(target)
        headers = self._headers(body is not None)
        attempts = self.env.attempts
        for attempt in range(1, attempts + 1):
            cause: BaseException | None = None
            try:
                resp = self._pool.send(method, target, body, headers)
            except ssl.SSLCertVerificationError as exc:
                raise StallError(
                    f"{method} {url}: the TLS certificate is not trusted ({exc.verify_message}); "
                    "point SSL_CERT_FILE at your CA bundle"
                ) from exc
            except _TooBig as exc:
                raise StallError(f"{method} {url}: {exc}") from exc
            except TimeoutError as exc:
                why, cause = f"no answer within {self.env.timeout:g} s", exc
            except (OSError, http.client.HTTPException) as exc:
                why, cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, exc
            else:
                if resp.status < 500 and resp.status != 429:
                    self._refuse_unusable(method, url, resp)
                    return resp, attempt > 1 or resp.resent
                why = resp.message
            if attempt == attempts:
                raise RetryableError(
                    f"{method} {url}: {why} ({attempts} attempt{'s' * (attempts > 1)}); "
                    "the platform seems unavailable, retry later"
                ) from cause
            delay = self.env.backoff * 2 ** (attempt - 1)
            log.warning("platform request failed, retrying", environment=self.env.name, method=method, url=url,
                        error=why, attempt=attempt, retry_in=delay)
            self._sleep(delay)
        raise AssertionError("unreachable")

    def _refuse_unusable(self, method: str, url: str, resp: _Response) -> None:
        """Answers no flow can get past: wrong credentials, and redirects (not followed)."""
        if resp.status in (401, 403):
            auth = self.env.auth
            if auth is None:
                raise StallError(f"{method} {url}: {resp.message}; the platform wants credentials: configure auth "
                                 "(a token in an environment variable)")
            raise StallError(f"{method} {url}: {resp.message}; the platform refused the token in ${auth.env} "
                             f"(auth.env of environment {self.env.name}): check it")
        if 300 <= resp.status < 400:
            to = f" to {resp.location}" if resp.location else ""
            raise StallError(f"{method} {url}: redirected ({resp.status}){to}; redirects are not followed "
                             "(the token would travel with them): set url to the final address")

    @staticmethod
    def _json(resp: _Response, what: str) -> Any:
        try:
            return parse_json(resp.body)
        except InvalidJSON as exc:
            raise StallError(f"{what}: the answer is not usable JSON ({exc}); check url and the paths") from exc


# -- helpers -------------------------------------------------------------------------

def _tick(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None and (done % 200 == 0 or done == total):
        progress(done, total)


def _key_or_none(identity: Identity, doc: Any) -> FlowKey | None:
    try:
        return identity.key_of(doc)
    except FlowInvalid:
        return None


def _short(oid: str | None) -> str:
    return "nothing" if oid is None else oid[:12]


def _platform_message(body: bytes) -> str:
    """The platform's own words from an error answer, kept short."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:1000].decode("utf-8", "replace").strip()
        return " ".join(text.split())[:300]
    if isinstance(doc, dict):
        for key in ("message", "error", "detail", "title", "errorMessage", "error_description"):
            value = doc.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value.strip():
                return value.strip()[:300]
    return orjson.dumps(doc).decode()[:300] if doc not in (None, "", {}, []) else ""
