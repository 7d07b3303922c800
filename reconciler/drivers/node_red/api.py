"""The Node-RED Admin HTTP API, as the driver uses it: ``GET /flows``, ``GET /nodes``, ``POST /flows``, adminAuth."""

from __future__ import annotations

import http.client
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping

import orjson

from reconciler.canonical import InvalidJSON, parse_json
from reconciler.errors import LiveMovedError, RetryableError, StallError

MAX_RESPONSE_BYTES = 512 * 1024 * 1024


class _AdminAPI:
    """HTTP to one Node-RED (standard library only): auth, timeouts, errors translated."""

    def __init__(self, url: str, *, timeout: float, token_env: str | None, username_env: str | None,
                 password_env: str | None, environ: Mapping[str, str] | None = None):
        self.url, self.timeout = url, timeout
        self.token_env, self.username_env, self.password_env = token_env, username_env, password_env
        self.environ = os.environ if environ is None else environ
        self._token: str | None = None  # from POST /auth/token; never logged

    def _secret(self, var: str) -> str:
        value = self.environ.get(var, "")
        if not value:
            raise StallError(f"Node-RED at {self.url}: environment variable {var} is not set (or empty)")
        return value

    def _auth_header(self) -> dict[str, str]:
        if self.token_env:
            return {"Authorization": f"Bearer {self._secret(self.token_env)}"}
        if self.username_env:
            if self._token is None:
                self._token = self._login()
            return {"Authorization": f"Bearer {self._token}"}
        return {}

    def _login(self) -> str:
        assert self.username_env and self.password_env
        form = urllib.parse.urlencode({
            "client_id": "node-red-admin", "grant_type": "password", "scope": "*",
            "username": self._secret(self.username_env), "password": self._secret(self.password_env),
        }).encode()
        status, data = self._send("POST", "/auth/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
        if status in (400, 401, 403):
            raise StallError(
                f"Node-RED at {self.url} refused the user name and password from ${self.username_env} and "
                f"${self.password_env} (HTTP {status}: {_summary(data)}); check those environment variables"
            )
        self._check(status, data, "POST", "/auth/token")
        try:
            token = orjson.loads(data)["access_token"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise StallError(f"Node-RED at {self.url}: POST /auth/token gave no access token; is adminAuth on?") from exc
        return str(token)

    def request(self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None,
                *, expect: Iterable[int] = (200,)) -> tuple[int, bytes]:
        """Send with auth; a 401 re-logs in once (password auth); other failures raise typed errors."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        status, data = self._send(method, path, body, {**all_headers, **self._auth_header()})
        if status == 401 and self.username_env:
            self._token = None  # expired or revoked: log in again, once
            status, data = self._send(method, path, body, {**all_headers, **self._auth_header()})
        if status in expect:
            return status, data
        self._check(status, data, method, path)
        return status, data

    def _check(self, status: int, data: bytes, method: str, path: str) -> None:
        what = f"Node-RED at {self.url} answered {status} to {method} {path}"
        if status == 401:
            if self.token_env:
                hint = f"the token in ${self.token_env} was refused; check that environment variable"
            elif self.username_env:
                hint = f"the login of ${self.username_env} was not accepted; check ${self.username_env} and ${self.password_env}"
            else:
                hint = "it requires authentication: set token_env, or username_env and password_env"
            raise StallError(f"{what} (unauthorized): {hint}")
        if status == 403:
            raise StallError(f"{what} (forbidden): the user lacks permission for it (give it '*' in adminAuth)")
        if status >= 500 or status in (408, 429):
            raise RetryableError(f"{what}: {_summary(data)}; retrying later")
        if status >= 300:
            raise StallError(f"{what}: {_summary(data)}")

    def _send(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=dict(headers))
        try:
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return resp.status, resp.read(MAX_RESPONSE_BYTES)
            except urllib.error.HTTPError as exc:
                with exc:
                    return exc.code, exc.read(64 * 1024)
        except urllib.error.URLError as exc:
            reason = exc.reason
            raise RetryableError(f"Node-RED at {self.url} is unreachable ({_reason(reason)}); retrying later") from exc
        except (TimeoutError, socket.timeout) as exc:
            raise RetryableError(
                f"Node-RED at {self.url} did not answer {method} {path} within {self.timeout:g} s; retrying later"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise RetryableError(f"Node-RED at {self.url}: {method} {path} failed ({_reason(exc)}); retrying later") from exc

    # -- the calls the driver makes

    def get_flows(self) -> tuple[str, list[dict]]:
        _, data = self.request("GET", "/flows", headers={"Node-RED-API-Version": "v2"})
        try:
            body = parse_json(data)
        except InvalidJSON as exc:
            raise RetryableError(f"Node-RED at {self.url}: GET /flows is not JSON ({exc})") from exc
        if not isinstance(body, dict) or not isinstance(body.get("flows"), list) or not isinstance(body.get("rev"), str):
            raise StallError(f"Node-RED at {self.url}: GET /flows did not give {{rev, flows}} (Node-RED >= 1.0 needed)")
        nodes = [n for n in body["flows"] if isinstance(n, dict)]
        if len(nodes) != len(body["flows"]):
            raise StallError(f"Node-RED at {self.url}: GET /flows holds entries that are not nodes")
        return body["rev"], nodes

    def node_types(self) -> set[str]:
        _, data = self.request("GET", "/nodes")
        try:
            sets = orjson.loads(data)
            return {t for s in sets if s.get("enabled", True) for t in s.get("types", [])}
        except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
            raise RetryableError(f"Node-RED at {self.url}: GET /nodes is not the expected JSON") from exc

    def deploy(self, rev: str, nodes: list[dict], deployment_type: str) -> str:
        """POST /flows guarded by ``rev``; raises LiveMovedError when a deploy happened since."""
        try:
            body = orjson.dumps({"rev": rev, "flows": nodes})
        except orjson.JSONEncodeError as exc:
            raise StallError(f"cannot encode the flows for Node-RED at {self.url}: {exc}") from exc
        headers = {"Content-Type": "application/json", "Node-RED-API-Version": "v2",
                   "Node-RED-Deployment-Type": deployment_type}
        status, data = self.request("POST", "/flows", body, headers, expect=(200, 204, 409))
        if status == 409:
            raise LiveMovedError(f"Node-RED at {self.url} was deployed to since its flows were read (rev {rev[:12]})")
        try:
            return str(orjson.loads(data).get("rev", ""))
        except (orjson.JSONDecodeError, AttributeError):
            return ""


def _summary(data: bytes) -> str:
    try:
        body = orjson.loads(data)
        if isinstance(body, dict):
            text = " ".join(str(body[k]) for k in ("code", "message", "error", "error_description") if body.get(k))
            if text:
                return text[:300]
    except orjson.JSONDecodeError:
        pass
    text = data[:300].decode("utf-8", "replace").strip()
    return re.sub(r"<[^>]+>|\s+", " ", text).strip() or "no message"


def _reason(exc: object) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__

