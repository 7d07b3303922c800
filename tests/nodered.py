"""A real Node-RED for the tests: started on a free loopback port with a
temporary user dir and adminAuth on, driven through its Admin HTTP API.

The binary is ``$RECONCILER_NODE_RED_BIN`` (``.ci/run`` installs the pinned
version under ``.ci/node-red`` and sets it), else that install, else
``node-red`` on the PATH. Without one the tests are skipped, except in CI
(``CI`` set), where they fail: there they must run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_RED_VERSION = "4.1.8"
USER = "admin"

SETTINGS_JS = """\
module.exports = {
    flowFile: "flows.json",
    credentialSecret: "reconciler-tests",
    uiHost: "127.0.0.1",
    adminAuth: {
        type: "credentials",
        users: [{username: %(user)s, password: %(hash)s, permissions: "*"}],
        tokens: [{token: %(token)s, user: %(user)s, scope: ["*"]}],
    },
    runtimeState: {enabled: true, ui: false},
    logging: {console: {level: "warn", metrics: false, audit: false}},
    editorTheme: {projects: {enabled: false}},
};
"""


def node_red_bin() -> Path | None:
    explicit = os.environ.get("RECONCILER_NODE_RED_BIN")
    if explicit:
        return Path(explicit)
    local = REPO_ROOT / ".ci/node-red/node_modules/.bin/node-red"
    if local.exists():
        return local
    found = shutil.which("node-red")
    return Path(found) if found else None


def unavailable(reason: str) -> None:
    """Skip, or in CI fail loudly: there the Node-RED tests must run."""
    if os.environ.get("CI"):
        pytest.fail(f"Node-RED tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"Node-RED not available: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bcrypt(binary: Path, password: str) -> str:
    """Hash with the bcryptjs that ships inside node-red's dependencies."""
    red_dir = binary.resolve().parent
    script = (
        "const b = require(require.resolve('bcryptjs', {paths: [process.argv[1]]}));"
        "process.stdout.write(b.hashSync(process.env.PW, 8));"
    )
    proc = subprocess.run(["node", "-e", script, str(red_dir)], env=dict(os.environ, PW=password),
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"cannot hash a password with bcryptjs: {proc.stderr.strip()}")
    return proc.stdout.strip()


class NodeRed:
    """One Node-RED process; ``admin()`` talks to it with the static token."""

    def __init__(self, binary: Path, workdir: Path):
        self.binary, self.userdir = binary, workdir
        self.password = secrets.token_urlsafe(12)
        self.token = secrets.token_urlsafe(24)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "settings.js").write_text(SETTINGS_JS % {
            "user": json.dumps(USER), "hash": json.dumps(_bcrypt(binary, self.password)), "token": json.dumps(self.token),
        })
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
                [str(self.binary), "-u", str(self.userdir), "-p", str(self.port), "-D", "uiHost=127.0.0.1",
                 "--no-telemetry"],
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


def start_node_red(workdir: Path) -> NodeRed:
    """Start one, or skip (fail in CI) saying why not."""
    binary = node_red_bin()
    if binary is None or not binary.exists():
        unavailable("no node-red binary; run `bash .ci/run` (it installs node-red@"
                    f"{NODE_RED_VERSION} under .ci/node-red) or set RECONCILER_NODE_RED_BIN")
    assert binary is not None
    if shutil.which("node") is None:
        unavailable("no `node` on the PATH")
    try:
        return NodeRed(binary, workdir)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        unavailable(str(exc))
        raise


def examples_dir() -> Path | None:
    """The example flows shipped inside the node-red package (@node-red/nodes/examples)."""
    binary = node_red_bin()
    if binary is None:
        return None
    modules = binary.resolve().parent.parent  # .../node_modules/node-red/red.js -> .../node_modules
    for candidate in (modules / "@node-red/nodes/examples", modules / "node-red/node_modules/@node-red/nodes/examples"):
        if candidate.is_dir():
            return candidate
    return None
