"""The status page in-process: a Service over a real bare repository and directory environments, its
HTTP server on 127.0.0.1:0, and a small client (no browser). Runs are made by calling a worker's
``reconcile`` in the test's thread, so a page is read after a known run, with no waiting."""

from __future__ import annotations

import http.client
import re
import urllib.parse
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from reconciler.config import load_config
from reconciler.engine import Engine
from reconciler.server import HttpServer
from reconciler.service import Service
from tests.conftest import Workspace, flow

TOKEN = "web-token-0123456789abcdef"
HOSTILE = "<img src=x onerror=window.__pwned=1>"


@dataclass
class Answer:
    status: int
    headers: Message
    text: str

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


ACC_SECRET = "acc-s3cret-value-1"
PROD_SECRET = "pr0d-s3cret-value-2"


def site(ws: Workspace, *, production_drift: str = "report", extra_flows: tuple[dict[str, Any], ...] = ()) -> None:
    """acceptance (drift adopt) and production (drift report, or as asked) on one starting commit, as the
    demo has; each with a secret ``db`` that flow ``orders`` holds in a password field (in git: a placeholder)."""
    for env, value in (("acceptance", ACC_SECRET), ("production", PROD_SECRET)):
        (ws.root / "secrets" / env).mkdir(parents=True)
        (ws.root / "secrets" / env / "db").write_text(value)
    ws.add_env("acceptance", drift="adopt", secrets_dir="secrets/acceptance")
    ws.add_env("production", drift=production_drift, secrets_dir="secrets/production", prune=True)
    orders = flow("orders")
    orders["steps"][0]["config"]["password"] = ACC_SECRET
    for i, doc in enumerate((orders, flow("billing", "2"), *extra_flows)):
        ws.put("acceptance", f"flow{i}.json", doc)
    engine = Engine(load_config(ws.config), create_repository=True)
    engine.export("acceptance")
    engine.store.create_branch("env/production", engine.store.tip("env/acceptance"), "production starts as acceptance")
    engine.close()


@dataclass
class Web:
    """A service and its HTTP server, in this process."""

    ws: Workspace
    token: str | None = TOKEN
    service: Service = field(init=False)
    http: HttpServer = field(init=False)

    def __post_init__(self) -> None:
        self.service = Service(load_config(self.ws.config), api_token=self.token)
        self.http = HttpServer(self.service, "127.0.0.1", 0, heartbeat=0.2)
        self.http.start()

    @property
    def base(self) -> str:
        host, port = self.http.address
        return f"http://{host}:{port}"

    def reconcile(self, *envs: str) -> None:
        for env in envs or tuple(self.service.workers):
            self.service.workers[env].reconcile({"api"})

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
        host, port = self.http.address
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Answer(resp.status, resp.headers, resp.read().decode("utf-8", "replace"))
        finally:
            conn.close()

    def get(self, path: str, **headers: str) -> Answer:
        return self.request("GET", path, headers={k.replace("_", "-"): v for k, v in headers.items()})

    def post_form(self, path: str, form: dict[str, str], headers: dict[str, str] | None = None) -> Answer:
        body = urllib.parse.urlencode(form).encode()
        return self.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})

    def login(self) -> tuple[str, str]:
        """Log in with the token; returns (the Cookie header to send, the page's CSRF token)."""
        got = self.post_form("/login", {"token": self.token or "", "next": "/environments/production"})
        assert got.status == 303, got.text
        cookie = got.header("Set-Cookie").split(";", 1)[0]
        page = self.get("/environments/production", Cookie=cookie)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text
        return cookie, csrf.group(1)

    def close(self) -> None:
        self.http.stop()
        for w in self.service.workers.values():
            w.engine.close()


def main_of(html: str) -> str:
    """The <main> of a page (what the live update swaps)."""
    start = html.index("<main")
    return html[start : html.index("</main>", start)]


def text_of(html: str) -> str:
    """A page's text as a person reads it: tags dropped, entities decoded, spaces folded."""
    import html as _html

    text = re.sub(r"\s+", " ", _html.unescape(re.sub(r"<[^>]+>", " ", html))).strip()
    return re.sub(r" ([,.:;)])", r"\1", text)


def drift(ws: Workspace, env: str, name: str, version: str, change) -> Path:
    """Edit a flow in an environment folder, as a person in the platform's UI would."""
    import json

    path = next(p for p in ws.env_dir(env).glob("*.json") if json.loads(p.read_text()).get("name") == name
                and str(json.loads(p.read_text()).get("version")) == version)
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2))
    return path


__all__ = ["Web", "Answer", "site", "main_of", "text_of", "drift", "TOKEN", "HOSTILE", "Path"]
