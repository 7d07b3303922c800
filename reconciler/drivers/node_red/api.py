"""The Node-RED Admin HTTP API, as the driver uses it: ``GET /flows``, ``GET /nodes``, ``POST /flows``, adminAuth.

Requests go through the HTTP client every driver shares
(:class:`reconciler.drivers._http.HttpClient`: keep-alive, ``attempts`` tries with
backoff on timeouts, refused connections, 5xx, 408 and 429, redirects refused, a
limit on the size of an answer); this module adds what is Node-RED's own:

- **adminAuth**: a bearer token from an environment variable (``token_env``), or a
  user name and password (``username_env``, ``password_env``) exchanged for a
  token at ``POST /auth/token``, and exchanged again, once, when Node-RED answers
  401 (the token expired or was revoked);
- **errors in Node-RED's words**, naming the URL and the environment variables to
  check, never their values: no answer is a :class:`RetryableError` (``Node-RED at
  URL is unreachable``, ``… did not answer GET /flows within 30 s``); 401 a
  :class:`StallError` naming the variable; 403 the user's missing permission; 409
  on a deploy a :class:`LiveMovedError` (a deploy happened since the rev was read).
"""

from __future__ import annotations

import errno
import http.client
import os
import socket
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson

from reconciler.canonical import InvalidJSON, parse_json
from reconciler.drivers._common import secret_from
from reconciler.drivers._http import Auth, HttpClient, Response, TokenAuth, platform_message
from reconciler.errors import LiveMovedError, RetryableError, StallError

_NO_AUTH = "set token_env, or username_env and password_env"
# Connection errors that mean "nothing is there" rather than "it broke while answering".
_UNREACHABLE = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL})


def _forbidden(what: str) -> StallError:
    return StallError(f"{what}: the user lacks permission for it (give it '*' in adminAuth)")


@dataclass(frozen=True)
class _Token(TokenAuth):
    """adminAuth's tokens (``tokens`` in settings.js, or one from ``POST /auth/token``) from ``$env``."""

    def refused(self, status: int, what: str) -> StallError:
        if status == 403:
            return _forbidden(what)
        return StallError(f"{what}: the token in ${self.env} was refused; check that environment variable")


class _Login:
    """adminAuth's user name and password: a token from ``POST /auth/token``, fetched again after a 401."""

    def __init__(self, fetch: Callable[[], str], username_env: str, password_env: str):
        self._fetch, self.username_env, self.password_env = fetch, username_env, password_env
        self._token: str | None = None  # never logged

    def headers(self) -> dict[str, str]:
        if self._token is None:
            self._token = self._fetch()
        return {"Authorization": f"Bearer {self._token}"}

    def refresh(self) -> bool:
        self._token = None  # expired or revoked: the next request logs in again
        return True

    def refused(self, status: int, what: str) -> StallError:
        if status == 403:
            return _forbidden(what)
        u, p = self.username_env, self.password_env
        return StallError(f"{what}: the login of ${u} was not accepted; check ${u} and ${p}")


@dataclass(frozen=True)
class _Password:
    """The credentials of ``POST /auth/token`` itself: the form carries them (no header), so a refusal
    is the user name's and password's."""

    where: str
    username_env: str
    password_env: str

    def headers(self) -> dict[str, str]:
        return {}

    def refresh(self) -> bool:
        return False

    def refused(self, status: int, what: str) -> StallError:
        return StallError(f"{self.where} refused the user name and password from ${self.username_env} and "
                          f"${self.password_env} ({what}); check those environment variables")


class _AdminAPI:
    """The calls the driver makes to one Node-RED, with auth and errors translated (see the module docstring)."""

    def __init__(self, url: str, *, timeout: float, attempts: int = 3, backoff: float = 0.5,
                 token_env: str | None = None, username_env: str | None = None, password_env: str | None = None,
                 environ: Mapping[str, str] | None = None, sleep: Callable[[float], None] | None = None):
        self.url = url
        self.where = f"Node-RED at {url}"
        self._environ = os.environ if environ is None else environ

        def client(auth: Auth | None) -> HttpClient:
            return HttpClient(url, timeout=timeout, attempts=attempts, backoff=backoff, auth=auth, where=self.where,
                              no_auth_hint=_NO_AUTH, sleep=sleep or time.sleep)

        auth: Auth | None = None
        self._password: _Password | None = None
        self._login_http: HttpClient | None = None  # POST /auth/token goes without the token it fetches
        if token_env:
            auth = _Token(token_env, environ=self._environ, where=self.where)
        elif username_env and password_env:
            self._password = _Password(self.where, username_env, password_env)
            self._login_http = client(self._password)
            auth = _Login(self._login, username_env, password_env)
        self.http = client(auth)

    # -- the calls the driver makes

    def get_flows(self) -> tuple[str, list[dict]]:
        resp = self._call(self.http, "GET", "/flows", headers={"Node-RED-API-Version": "v2"})
        self._expect(resp, "GET", "/flows", 200)
        try:
            body = parse_json(resp.body)
        except InvalidJSON as exc:
            raise RetryableError(f"{self.where}: GET /flows is not JSON ({exc})") from exc
        if not isinstance(body, dict) or not isinstance(body.get("flows"), list) or not isinstance(body.get("rev"), str):
            raise StallError(f"{self.where}: GET /flows did not give {{rev, flows}} (Node-RED >= 1.0 needed)")
        nodes = [n for n in body["flows"] if isinstance(n, dict)]
        if len(nodes) != len(body["flows"]):
            raise StallError(f"{self.where}: GET /flows holds entries that are not nodes")
        return body["rev"], nodes

    def node_types(self) -> set[str]:
        # Without Accept: application/json, GET /nodes answers the editor's HTML of every node.
        resp = self._call(self.http, "GET", "/nodes", headers={"Accept": "application/json"})
        self._expect(resp, "GET", "/nodes", 200)
        try:
            sets = orjson.loads(resp.body)
            return {t for s in sets if s.get("enabled", True) for t in s.get("types", [])}
        except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
            raise RetryableError(f"{self.where}: GET /nodes is not the expected JSON") from exc

    def deploy(self, rev: str, nodes: list[dict], deployment_type: str) -> str:
        """POST /flows guarded by ``rev``; raises LiveMovedError when a deploy happened since."""
        try:
            body = orjson.dumps({"rev": rev, "flows": nodes})
        except orjson.JSONEncodeError as exc:
            raise StallError(f"cannot encode the flows for {self.where}: {exc}") from exc
        headers = {"Node-RED-API-Version": "v2", "Node-RED-Deployment-Type": deployment_type}
        resp = self._call(self.http, "POST", "/flows", body, headers)
        if resp.status == 409:
            # After a retry this may be our own first try, landed with its answer lost: the
            # engine re-reads and then finds the flows as written.
            again = "; perhaps by this deploy's first try, whose answer was lost" if resp.retried or resp.resent else ""
            raise LiveMovedError(f"{self.where} was deployed to since its flows were read (rev {rev[:12]}){again}")
        self._expect(resp, "POST", "/flows", 200, 204)
        try:
            return str(orjson.loads(resp.body).get("rev", ""))
        except (orjson.JSONDecodeError, AttributeError):
            return ""

    def bearer(self) -> str | None:
        """The token requests carry (for /comms, which takes it in a message); None without adminAuth."""
        auth = self.http.auth
        header = auth.headers().get("Authorization", "") if auth is not None else ""
        return header[len("Bearer "):] if header.startswith("Bearer ") else None

    def close(self) -> None:
        self.http.close()
        if self._login_http is not None:
            self._login_http.close()

    # -- the parts

    def _login(self) -> str:
        assert self._login_http is not None and self._password is not None
        form = urllib.parse.urlencode({
            "client_id": "node-red-admin", "grant_type": "password", "scope": "*",
            "username": secret_from(self._environ, self._password.username_env, where=self.where),
            "password": secret_from(self._environ, self._password.password_env, where=self.where),
        }).encode()
        resp = self._call(self._login_http, "POST", "/auth/token", form,
                          {"Content-Type": "application/x-www-form-urlencoded"})
        if resp.status == 400:  # the password grant refused (401 and 403 are refused by the client already)
            raise self._password.refused(400, f"HTTP {resp.message}")
        self._expect(resp, "POST", "/auth/token", 200)
        try:
            token = orjson.loads(resp.body)["access_token"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise StallError(f"{self.where}: POST /auth/token gave no access token; is adminAuth on?") from exc
        return str(token)

    def _call(self, client: HttpClient, method: str, path: str, body: bytes | None = None,
              headers: Mapping[str, str] | None = None) -> Response:
        """One request (a path under the URL); a request that got no answer is said in Node-RED's words."""
        try:
            return client.request(method, client.target(path), body, headers)
        except RetryableError as exc:
            cause = exc.__cause__
            if not isinstance(cause, (OSError, http.client.HTTPException)):
                raise  # an answer (5xx, 408, 429): the client's message has its status and Node-RED's words
            tries = f"{client.attempts} attempt{'s' * (client.attempts > 1)}"
            if isinstance(cause, TimeoutError):
                why = f" did not answer {method} {path} within {client.timeout:g} s ({tries})"
            elif isinstance(cause, socket.gaierror) or (isinstance(cause, OSError) and cause.errno in _UNREACHABLE):
                why = f" is unreachable ({_reason(cause)}; {tries})"
            else:
                why = f": {method} {path} failed ({_reason(cause)}; {tries})"
            raise RetryableError(f"{self.where}{why}; retrying later") from exc

    def _expect(self, resp: Response, method: str, path: str, *statuses: int) -> None:
        if resp.status not in statuses:
            said = platform_message(resp.body) or resp.reason or "no message"
            raise StallError(f"{self.where} answered {resp.status} to {method} {path}: {said}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
