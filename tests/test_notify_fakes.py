"""Receivers for the notification tests, real HTTP servers on 127.0.0.1, and tests that they answer as the real ones.

- :class:`WebhookReceiver` checks ``X-Signature`` (HMAC-SHA256 of the body, Flux's generic-hmac);
- :class:`SlackReceiver` is an incoming webhook whose secret is its path;
- :class:`FakeForge` implements the commit-status endpoint of GitHub, GitLab or Gitea with
  its request shape (method, path, auth header, fields) and its answers; the GitHub one
  checks each request against GitHub's published OpenAPI description (``@octokit/openapi``,
  installed by ``.ci/install-octokit`` into the ignored ``.ci/octokit``).

Every receiver can hang (``hang`` seconds, then a 500 and nothing done) or fail (``fail`` answers of 500 first).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parent.parent
STATUS_PATH = "/repos/{owner}/{repo}/statuses/{sha}"
SHA = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Request:
    method: str
    path: str  # as sent on the request line (percent-encoding kept)
    headers: dict[str, str]  # lower-case names
    body: bytes
    query: dict[str, str] = field(default_factory=dict)
    status: int | None = None  # what the receiver answered
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a client that gave up on a hanging answer
        pass


class Receiver:
    """A real HTTP/1.1 server on 127.0.0.1 recording every request; subclasses decide the answers."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.hang = 0.0
        self.fail = 0
        self.release = threading.Event()
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                req = Request("POST", parts.path, {k.lower(): v for k, v in self.headers.items()},
                              self.rfile.read(length), dict(parse_qsl(parts.query)))
                with owner.lock:
                    owner.requests.append(req)
                    hang, failing = owner.hang, owner.fail > 0
                    if failing:
                        owner.fail -= 1
                if hang:
                    owner.release.wait(hang)  # then lost: a request the client gave up on is not carried out
                if failing or hang:
                    status, payload = 500, {"message": "Internal Server Error"}
                else:
                    with owner.lock:
                        status, payload = owner.answer(req)
                req.status = status
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain" if isinstance(payload, bytes) else "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client timed out meanwhile

        self.server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, req: Request) -> tuple[int, Any]:  # pragma: no cover - each receiver has its own
        raise NotImplementedError

    def answered(self, status: int = 0) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.status is not None and (not status or r.status == status)]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hmac_of(key: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


class WebhookReceiver(Receiver):
    """POST <any path> with ``X-Signature: sha256=<hex>``: 401 when the HMAC does not match."""

    def __init__(self, key: str, path: str = "/hooks/flows"):
        super().__init__()
        self.key, self.path = key, path
        self.events: list[dict[str, Any]] = []

    def answer(self, req: Request) -> tuple[int, Any]:
        if req.path != self.path:
            return 404, {"message": "no such hook"}
        if not hmac.compare_digest(req.headers.get("x-signature", ""), hmac_of(self.key, req.body)):
            return 401, {"message": "bad signature"}
        if req.headers.get("content-type") != "application/json" or not isinstance(req.json, dict):
            return 400, {"message": "want a JSON object"}
        self.events.append(req.json)
        return 200, {"ok": True}


class SlackReceiver(Receiver):
    """An incoming webhook: ``POST /services/<secret>`` with ``{"text": ...}``; answers ``ok`` like Slack."""

    def __init__(self, secret_path: str = "/services/T0001/B0001/xoxb-s3cr3t-hook-path"):
        super().__init__()
        self.secret_path = secret_path
        self.texts: list[str] = []

    @property
    def hook(self) -> str:
        return self.url + self.secret_path

    def answer(self, req: Request) -> tuple[int, Any]:
        if req.path != self.secret_path:
            return 404, b"no_service"
        body = req.json
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
            return 400, b"invalid_payload"
        self.texts.append(body["text"])
        return 200, b"ok"


_GITHUB = re.compile(r"^/repos/([^/]+)/([^/]+)/statuses/([0-9a-f]{40})$")
_GITLAB = re.compile(r"^/api/v4/projects/([^/]+)/statuses/([0-9a-f]{40})$")
_GITEA = re.compile(r"^/api/v1/repos/([^/]+)/([^/]+)/statuses/([0-9a-f]{40})$")
_STATES = {
    "github": ("error", "failure", "pending", "success"),
    "gitlab": ("pending", "running", "success", "failed", "canceled", "skipped"),
    "gitea": ("pending", "success", "error", "failure", "warning"),
}
# GitLab's commit status state machine: from a status still open, the states it may move to.
_GITLAB_MOVES = {"pending": {"running", "success", "failed", "canceled"}, "running": {"success", "failed", "canceled"}}
_GITLAB_EVENT = {"pending": "enqueue", "running": "run", "success": "success", "failed": "drop", "canceled": "cancel"}


class FakeForge(Receiver):
    """The commit-status endpoint of ``kind`` for one repository, with its token check and answers.

    ``api`` is the base URL a ``[[notify]]`` table names; ``statuses[(sha, context)]`` the states set, in order;
    ``invalid`` what the GitHub one found wrong against the OpenAPI description (``openapi``).
    """

    def __init__(self, kind: str, token: str, repository: str, *, openapi: "OpenAPI | None" = None,
                 project_id: int = 42):
        super().__init__()
        self.kind, self.token, self.repository, self.openapi, self.project_id = kind, token, repository, openapi, project_id
        self.statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.invalid: list[str] = []
        self._ids = iter(range(1, 1_000_000))

    @property
    def api(self) -> str:
        return self.url + {"github": "", "gitlab": "/api/v4", "gitea": "/api/v1"}[self.kind]

    def states(self, sha: str, context: str) -> list[str]:
        with self.lock:
            return [s["state"] for s in self.statuses.get((sha, context), [])]

    def answer(self, req: Request) -> tuple[int, Any]:
        return {"github": self._github, "gitlab": self._gitlab, "gitea": self._gitea}[self.kind](req)

    def _record(self, sha: str, context: str, state: str, body: dict[str, Any]) -> dict[str, Any]:
        entry = {"id": next(self._ids), "state": state, "context": context, "description": body.get("description"),
                 "target_url": body.get("target_url"), "created_at": "2026-12-01T10:00:00Z",
                 "updated_at": "2026-12-01T10:00:00Z"}
        self.statuses.setdefault((sha, context), []).append(entry)
        return entry

    def _github(self, req: Request) -> tuple[int, Any]:
        m = _GITHUB.match(req.path)
        if m is None:
            return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
        owner, repo, sha = (unquote(g) for g in m.groups())
        if f"{owner}/{repo}" != self.repository:
            return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
        if self.openapi is not None:
            self.invalid += self.openapi.problems(req, {"owner": owner, "repo": repo, "sha": sha})
        body = req.json
        if not isinstance(body, dict) or body.get("state") not in _STATES["github"]:
            return 422, {"message": "Validation Failed", "errors": [{"resource": "Status", "field": "state",
                                                                      "code": "custom"}]}
        if len(body.get("description") or "") > 140:
            return 422, {"message": "Validation Failed", "errors": [{"resource": "Status", "code": "custom",
                                                                      "message": "description is too long (maximum is 140 characters)"}]}
        e = self._record(sha, body.get("context", "default"), body["state"], body)
        return 201, {"url": f"{self.url}/repos/{owner}/{repo}/statuses/{sha}", "avatar_url": None, "id": e["id"],
                     "node_id": f"SC_{e['id']}", "state": e["state"], "description": e["description"],
                     "target_url": e["target_url"], "context": e["context"], "created_at": e["created_at"],
                     "updated_at": e["updated_at"], "creator": None}

    def _gitlab(self, req: Request) -> tuple[int, Any]:
        m = _GITLAB.match(req.path)
        if m is None:
            return 404, {"error": "404 Not Found"}
        if req.headers.get("private-token") != self.token and req.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"message": "401 Unauthorized"}
        project, sha = unquote(m.group(1)), m.group(2)
        if project not in (self.repository, str(self.project_id)):
            return 404, {"message": "404 Project Not Found"}
        params = {**req.query, **(req.json if isinstance(req.json, dict) else {})}
        state = params.get("state")
        if state not in _STATES["gitlab"]:
            return 400, {"error": "state does not have a valid value"}
        name = params.get("name") or params.get("context") or "default"
        history = self.statuses.get((sha, name), [])
        current = history[-1]["state"] if history else None
        if current in _GITLAB_MOVES and state not in _GITLAB_MOVES[current]:
            event = _GITLAB_EVENT[state]
            return 400, {"message": f"Cannot transition status via :{event} from :{current} (Reason(s): Status cannot "
                                    f"transition via \"{event}\")"}
        e = self._record(sha, name, state, params)
        return 201, {"id": e["id"], "sha": sha, "ref": params.get("ref"), "status": state, "name": name,
                     "target_url": e["target_url"], "description": e["description"], "created_at": e["created_at"],
                     "started_at": None, "finished_at": None, "allow_failure": False, "coverage": None,
                     "author": {"id": 1, "username": "reconciler-bot", "name": "Reconciler", "state": "active"}}

    def _gitea(self, req: Request) -> tuple[int, Any]:
        m = _GITEA.match(req.path)
        if m is None:
            return 404, {"message": "not found"}
        if req.headers.get("authorization") not in (f"token {self.token}", f"Bearer {self.token}"):
            return 401, {"message": "token is required"}
        owner, repo, sha = (unquote(g) for g in m.groups())
        if f"{owner}/{repo}" != self.repository:
            return 404, {"message": "The target couldn't be found."}
        body = req.json
        if not isinstance(body, dict) or body.get("state") not in _STATES["gitea"]:
            return 422, {"message": "[State]: invalid state"}
        e = self._record(sha, body.get("context", ""), body["state"], body)
        return 201, {"id": e["id"], "status": e["state"], "target_url": e["target_url"],
                     "description": e["description"], "url": f"{self.url}/api/v1/repos/{owner}/{repo}/statuses/{sha}",
                     "context": e["context"], "created_at": e["created_at"], "updated_at": e["updated_at"],
                     "creator": {"id": 1, "login": "reconciler-bot"}}


# -- GitHub's OpenAPI description ---------------------------------------------------------------


def to_json_schema(node: Any, spec: dict[str, Any], *, names: bool = False) -> Any:
    """An OpenAPI 3.0 schema object as JSON Schema: ``$ref`` resolved, ``nullable`` as a null alternative.
    ``names``: ``node`` maps property names to schemas (its keys are not keywords)."""
    if isinstance(node, list):
        return [to_json_schema(v, spec) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node and not names:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return to_json_schema(target, spec)
    out = {k: to_json_schema(v, spec, names=(k == "properties" and not names)) for k, v in node.items()
           if names or k not in ("nullable", "example", "examples", "externalDocs") and not k.startswith("x-")}
    if node.get("nullable") and not names:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass
class OpenAPI:
    """The ``POST /repos/{owner}/{repo}/statuses/{sha}`` operation of GitHub's OpenAPI description."""

    operation: dict[str, Any]
    request: dict[str, Any]  # the JSON Schema of the request body
    response: dict[str, Any]  # ... and of the 201 answer
    parameters: dict[str, dict[str, Any]]  # path parameter -> its JSON Schema

    def problems(self, req: Request, path_params: dict[str, str]) -> list[str]:
        """What is wrong with a request against the description (empty: nothing)."""
        out = []
        if req.method.lower() != "post":
            out.append(f"method {req.method}")
        media = (req.headers.get("content-type") or "").split(";")[0]
        if media not in self.operation["requestBody"]["content"]:
            out.append(f"content type {media!r}")
        for name, value in path_params.items():
            out += [f"{name}: {e.message}" for e in jsonschema.Draft7Validator(self.parameters[name]).iter_errors(value)]
        body = req.json
        out += [f"body: {e.message}" for e in jsonschema.Draft7Validator(self.request).iter_errors(body)]
        if isinstance(body, dict):
            out += [f"body: {k!r} is not a property of the operation" for k in body if k not in self.request["properties"]]
        return out


def _spec_path() -> Path:
    given = os.environ.get("RECONCILER_OCTOKIT_OPENAPI")
    if given:
        return Path(given)
    proc = subprocess.run(["bash", str(ROOT / ".ci/install-octokit")], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f".ci/install-octokit failed:\n{proc.stderr}")
        pytest.skip(f"GitHub's OpenAPI description cannot be installed here: {proc.stderr.strip()[-300:]}")
    return Path(shlex.split(proc.stdout.strip().removeprefix("export ").split("=", 1)[1])[0])


@pytest.fixture(scope="session")
def github_openapi() -> OpenAPI:
    """GitHub's published description of the commit-status operation (``@octokit/openapi``)."""
    spec = json.loads(_spec_path().read_text(encoding="utf-8"))
    operation = spec["paths"][STATUS_PATH]["post"]
    assert operation["operationId"] == "repos/create-commit-status"
    request = to_json_schema(operation["requestBody"]["content"]["application/json"]["schema"], spec)
    response = to_json_schema(operation["responses"]["201"]["content"]["application/json"]["schema"], spec)
    params = {}
    for p in operation["parameters"]:
        p = to_json_schema(p, spec)
        assert p["in"] == "path"
        params[p["name"]] = p["schema"]
    return OpenAPI(operation, request, response, params)


# -- the fakes answer as the real ones ----------------------------------------------------------


def post(url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_the_fake_github_answers_with_the_published_status_object(github_openapi: OpenAPI) -> None:
    """Its 201 answer validates against the response schema of GitHub's description; a bad token gets 401."""
    with FakeForge("github", "gh-t0ken-abcdef", "acme/flows", openapi=github_openapi) as gh:
        body = {"state": "success", "context": "flow-reconciler/production", "description": "ok",
                "target_url": "https://reconciler.example.com/environments/production"}
        status, answer = post(f"{gh.api}/repos/acme/flows/statuses/{SHA}", body,
                              {"Authorization": "Bearer gh-t0ken-abcdef"})
        assert status == 201
        jsonschema.Draft7Validator(github_openapi.response).validate(answer)
        assert post(f"{gh.api}/repos/acme/flows/statuses/{SHA}", body, {"Authorization": "Bearer nope"})[0] == 401
        assert gh.invalid == []


def test_the_fake_github_finds_what_the_description_refuses(github_openapi: OpenAPI) -> None:
    """A state outside the enum, a field the operation does not have, a wrong content type are reported."""
    with FakeForge("github", "gh-t0ken-abcdef", "acme/flows", openapi=github_openapi) as gh:
        post(f"{gh.api}/repos/acme/flows/statuses/{SHA}", {"state": "failed", "name": "x"},
             {"Authorization": "Bearer gh-t0ken-abcdef"})
        assert any("'failed' is not one of" in p for p in gh.invalid)
        assert any("'name' is not a property" in p for p in gh.invalid)


def test_the_fake_gitlab_refuses_a_transition_its_state_machine_does_not_have() -> None:
    """running twice is a 400 "Cannot transition status", as GitLab answers; a finished status starts anew."""
    with FakeForge("gitlab", "gl-t0ken-abcdef", "platform/flows") as gl:
        url, auth = f"{gl.api}/projects/platform%2Fflows/statuses/{SHA}", {"PRIVATE-TOKEN": "gl-t0ken-abcdef"}
        assert post(url, {"state": "running", "name": "c"}, auth)[0] == 201
        status, answer = post(url, {"state": "running", "name": "c"}, auth)
        assert status == 400 and "Cannot transition status via :run from :running" in answer["message"]
        assert post(url, {"state": "success", "name": "c"}, auth)[0] == 201
        assert post(url, {"state": "running", "name": "c"}, auth)[0] == 201
        assert post(f"{gl.api}/projects/42/statuses/{SHA}", {"state": "failed", "name": "c"}, auth)[0] == 201
        assert gl.states(SHA, "c") == ["running", "success", "running", "failed"]
