"""One HTTP client for every driver that talks to a platform over HTTP (standard library only).

What it promises, the same for every platform:

- **keep-alive** connections to one origin, pooled and shared by threads; an idle
  connection the server closed is re-sent once on a fresh one (the answer says
  ``resent``, so a caller that meets "already exists" can check whether the first
  try landed);
- **retries with backoff** for what is transient (timeouts, refused connections,
  5xx, 408, 429): ``attempts`` tries, waiting ``backoff``, 2x, 4x…; then a
  :class:`RetryableError` naming the URL (the service backs off in turn);
- **status to error**: 401/403 are a :class:`StallError` that names the environment
  variable to check (after one ``refresh`` of the credentials, for a login that
  may have expired); redirects are never followed (a token would travel with
  them) and are a :class:`StallError` naming the target; other answers return to
  the caller, with the platform's own words in :attr:`Response.message`;
- **size limits**: an answer larger than ``max_body`` is refused before it is read
  into memory;
- **TLS** with the system trust store (``SSL_CERT_FILE`` selects another bundle); an
  untrusted certificate is a :class:`StallError` saying so. Proxies are not supported.

Credentials come from an :class:`Auth` (a token from an environment variable,
or a driver's own login) and never appear in messages or logs.
"""

from __future__ import annotations

import http.client
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol
from urllib.parse import urlsplit

import orjson

from reconciler import __version__
from reconciler.errors import RetryableError, StallError

from reconciler.logsetup import get_logger
from ._common import secret_from

__all__ = ["HttpClient", "Response", "Auth", "TokenAuth", "platform_message", "MAX_BODY_BYTES"]

log = get_logger("reconciler.drivers.http")

#: the default limit of an answer's size (a flow export is small; a whole instance's flows fit too)
MAX_BODY_BYTES = 64 * 1024 * 1024
_RETRY_STATUSES = frozenset({408, 429})


def platform_message(body: bytes) -> str:
    """The platform's own words from an error answer, kept short: a JSON body's ``message``,
    ``error``, ``detail``, ``title``… (or the text without markup)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:1000].decode("utf-8", "replace")
        return " ".join(re.sub(r"<[^>]+>", " ", text).split())[:300]
    if isinstance(doc, dict):
        for key in ("message", "error", "detail", "title", "errorMessage", "error_description", "code"):
            value = doc.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value.strip():
                return value.strip()[:300]
    return orjson.dumps(doc).decode()[:300] if doc not in (None, "", {}, []) else ""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    body: bytes
    location: str | None = None
    resent: bool = False  # sent a second time on a fresh connection (the first may have landed)
    retried: bool = False  # some earlier try failed (it may have landed all the same)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        """``409 Conflict: <the platform's own message>``."""
        said = platform_message(self.body)
        return f"{self.status} {self.reason}" + (f": {said}" if said else "")


class Auth(Protocol):
    """Credentials for one platform."""

    def headers(self) -> dict[str, str]:
        """Headers to send; raises StallError when a credential is missing."""
        ...

    def refresh(self) -> bool:
        """After a 401: get fresh credentials (a login that expired) and say whether to try once more."""
        ...

    def refused(self, status: int, what: str) -> StallError:
        """The error for a 401/403 that stays: what to check (a variable name, never its value)."""
        ...


@dataclass(frozen=True)
class TokenAuth:
    """A token from an environment variable, in a header (``Authorization: Bearer <token>``)."""

    env: str
    header: str = "Authorization"
    scheme: str = "Bearer"
    environ: Mapping[str, str] | None = None
    where: str = "the platform"  # for messages: the environment and its URL

    def headers(self) -> dict[str, str]:
        import os

        token = secret_from(os.environ if self.environ is None else self.environ, self.env, where=self.where)
        return {self.header: f"{self.scheme} {token}" if self.scheme else token}

    def refresh(self) -> bool:
        return False

    def refused(self, status: int, what: str) -> StallError:
        return StallError(f"{what}; the platform refused the token in ${self.env} ({self.where}): check it")


class _TooBig(Exception):
    pass


class _Pool:
    """Keep-alive HTTP/1.1 connections to one origin, shared by threads."""

    def __init__(self, url: str, timeout: float, max_body: int):
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "", parts.port
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.timeout, self.max_body = timeout, max_body
        self._tls = ssl.create_default_context() if self.https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _new(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def send(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        with self._lock:
            conn, reused = (self._idle.pop(), True) if self._idle else (self._new(), False)
        try:
            try:
                return self._exchange(conn, method, target, body, headers)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # The server closed an idle keep-alive connection: almost always before
                # reading the request, so it is sent again once, and marked `resent`.
                conn.close()
                conn = self._new()
                return replace(self._exchange(conn, method, target, body, headers), resent=True)
        except BaseException:
            conn.close()
            raise

    def _exchange(self, conn, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        conn.request(method, target, body=body, headers=dict(headers))
        resp = conn.getresponse()
        length = resp.getheader("Content-Length")
        if length and length.isdigit() and int(length) > self.max_body:
            raise _TooBig(f"the answer is {length} bytes, more than the {self.max_body}-byte limit")
        data = resp.read(self.max_body + 1)
        if len(data) > self.max_body:
            raise _TooBig(f"the answer is larger than the {self.max_body}-byte limit")
        out = Response(resp.status, resp.reason or "", data, resp.getheader("Location"))
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


class HttpClient:
    """Requests to one platform: ``request(method, path)`` with the promises of the module docstring."""

    def __init__(self, url: str, *, timeout: float, attempts: int = 3, backoff: float = 0.5,
                 max_body: int = MAX_BODY_BYTES, auth: Auth | None = None, where: str = "the platform",
                 no_auth_hint: str = "configure its credentials", sleep: Callable[[float], None] = time.sleep):
        self.url = url.rstrip("/")
        self.base_path = urlsplit(self.url).path.rstrip("/")
        self.timeout, self.attempts, self.backoff = timeout, attempts, backoff
        self.auth, self.where, self.no_auth_hint = auth, where, no_auth_hint
        self._pool = _Pool(self.url, timeout, max_body)
        self._sleep = sleep

    @property
    def origin(self) -> str:
        return self._pool.origin

    def full(self, target: str) -> str:
        """The URL of a target (a path with its query, as sent)."""
        return self._pool.origin + target

    def target(self, path: str) -> str:
        """A path under the base URL, as sent on the request line."""
        return self.base_path + path

    def request(self, method: str, target: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        """Send to ``target`` (from :meth:`target`, or a same-origin link); returns any answer but
        5xx/408/429 (retried), 401/403 and 3xx (raised)."""
        url = self.full(target)
        base = {"Accept": "application/json", "User-Agent": f"flow-reconciler/{__version__}", **(headers or {})}
        if body is not None:
            base.setdefault("Content-Type", "application/json")
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            cause: BaseException | None = None
            sent = {**base, **(self.auth.headers() if self.auth is not None else {})}
            try:
                resp = self._pool.send(method, target, body, sent)
            except ssl.SSLCertVerificationError as exc:
                raise StallError(f"{method} {url}: the TLS certificate is not trusted ({exc.verify_message}); "
                                 "point SSL_CERT_FILE at your CA bundle") from exc
            except _TooBig as exc:
                raise StallError(f"{method} {url}: {exc}") from exc
            except TimeoutError as exc:
                why, cause = f"no answer within {self.timeout:g} s", exc
            except (OSError, http.client.HTTPException) as exc:
                why, cause = (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__), exc
            else:
                if resp.status in (401, 403):
                    if resp.status == 401 and not refreshed and self.auth is not None and self.auth.refresh():
                        refreshed = True
                        attempt -= 1
                        continue
                    what = f"{method} {url}: {resp.message}"
                    if self.auth is None:
                        raise StallError(f"{what}; {self.where} wants credentials: {self.no_auth_hint}")
                    raise self.auth.refused(resp.status, what)
                if 300 <= resp.status < 400:
                    to = f" to {resp.location}" if resp.location else ""
                    raise StallError(f"{method} {url}: redirected ({resp.status}){to}; redirects are not followed "
                                     "(credentials would travel with them): set url to the final address")
                if resp.status < 500 and resp.status not in _RETRY_STATUSES:
                    return replace(resp, retried=attempt > 1) if attempt > 1 else resp
                why = resp.message
            if attempt >= self.attempts:
                raise RetryableError(f"{method} {url}: {why} ({self.attempts} attempt{'s' * (self.attempts > 1)}); "
                                     f"{self.where} seems unavailable, retry later") from cause
            delay = self.backoff * 2 ** (attempt - 1)
            log.warning("platform request failed, retrying", method=method, url=url, error=why, attempt=attempt,
                        retry_in=delay)
            self._sleep(delay)

    def close(self) -> None:
        self._pool.close()
