"""The Node-RED driver against a real Node-RED (see tests/nodered.py).

Every test that uses a Node-RED runs once per major version (ids ``nr4``,
``nr5``; see tests/nodered.py). One Node-RED of each runs for the session
(flows reset before each test); the round-trip test starts a second, empty one
of the same version. Edits "made in the editor" are
deploys through the Admin API with the rev they read, as the editor does.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reconciler.canonical import canonicalize
from reconciler.config import load_config
from reconciler.drivers import Change, Driver, LiveSet
from reconciler.drivers.node_red import NodeRedDriver, flow_documents
from reconciler.engine import Engine, make_driver
from reconciler.testing import Wrapped
from reconciler.errors import ConfigError, LiveMovedError, RetryableError, StallError
from reconciler.flows import FlowKey
from reconciler.plan import Action
from reconciler.sidecars import StoredFlow, join
from tests.conftest import Workspace
from tests.nodered import USER, VERSIONS, Install, NodeRed, examples_dir, start_node_red, unavailable
from tests.servicekit import ServiceProcess, wait_for

TOKEN_VAR = "RECONCILER_TEST_NODE_RED_TOKEN"
USER_VAR, PASSWORD_VAR = "RECONCILER_TEST_NODE_RED_USER", "RECONCILER_TEST_NODE_RED_PASSWORD"
ORDERS, BILLING = FlowKey("orders", "1"), FlowKey("billing", "1")
INSTANCE = FlowKey("_instance", "1")


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session", params=VERSIONS)
def node_red_version(request: pytest.FixtureRequest) -> str:
    """The major version under test: every Node-RED fixture below follows it."""
    return request.param


@pytest.fixture(scope="session")
def node_red(node_red_version: str, tmp_path_factory: pytest.TempPathFactory):
    nr = start_node_red(tmp_path_factory.mktemp(f"node-red-{node_red_version}"), node_red_version)
    yield nr
    nr.close()


@pytest.fixture(scope="session")
def empty_node_red(node_red_version: str, tmp_path_factory: pytest.TempPathFactory):
    """A second instance whose flows never run (the shipped examples exec commands and open sockets)."""
    nr = start_node_red(tmp_path_factory.mktemp(f"node-red-{node_red_version}-b"), node_red_version)
    nr.set_state("stop")
    yield nr
    nr.close()


@pytest.fixture
def nr(node_red: NodeRed, monkeypatch: pytest.MonkeyPatch) -> NodeRed:
    node_red.reset()
    monkeypatch.setenv(TOKEN_VAR, node_red.token)
    return node_red


@pytest.fixture
def site(ws: Workspace, nr: NodeRed) -> Workspace:
    """acceptance: a folder (adopt); production: the Node-RED (restore, prune)."""
    write_config(ws, nr)
    return ws


def write_config(ws: Workspace, nr: NodeRed, auth: str = "token", **production: Any) -> None:
    settings = {"drift": "restore", "prune": True, "interval": 3600, **production}
    lines = ['[repository]', 'path = "state/flows.git"', "",
             "[[environment]]", 'name = "acceptance"', 'driver = "directory"', 'path = "envs/acceptance"',
             'drift = "adopt"', "",
             "[[environment]]", 'name = "production"', 'driver = "node-red"', f'url = "{nr.url}"']
    if auth == "token":
        lines.append(f'token_env = "{TOKEN_VAR}"')
    elif auth == "password":
        lines += [f'username_env = "{USER_VAR}"', f'password_env = "{PASSWORD_VAR}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    ws.env_dir("acceptance").mkdir(parents=True, exist_ok=True)
    ws.config.write_text("\n".join(lines) + "\n")


def engine_for(ws: Workspace, **drivers: Driver) -> Engine:
    return Engine(load_config(ws.config), drivers=drivers, create_repository=True)


def tab_flow(name: str, version: str = "1", *, code: str = "msg.payload *= 2;\nreturn msg;",
             extra: Sequence[dict] = (), configs: Sequence[dict] = ()) -> dict[str, Any]:
    """A Node-RED flow document as the driver exports it: inject -> function -> debug."""
    t = f"tab-{name}"
    nodes = [
        {"id": f"{t}-in", "type": "inject", "z": t, "name": "tick", "props": [{"p": "payload"}], "repeat": "",
         "crontab": "", "once": False, "topic": "", "payload": "", "payloadType": "date", "x": 120, "y": 80,
         "wires": [[f"{t}-fn"]]},
        {"id": f"{t}-fn", "type": "function", "z": t, "name": "double", "func": code, "outputs": 1, "x": 300,
         "y": 80, "wires": [[f"{t}-out"]]},
        {"id": f"{t}-out", "type": "debug", "z": t, "name": "out", "active": False, "x": 480, "y": 80, "wires": []},
        *extra,
    ]
    doc: dict[str, Any] = {"name": name, "version": version, "tab": {"id": t, "type": "tab", "disabled": False, "info": ""},
                           "nodes": sorted(nodes, key=lambda n: n["id"])}
    if configs:
        doc["configs"] = sorted(configs, key=lambda n: n["id"])
    return doc


def broker(cid: str, host: str = "mqtt.invalid") -> dict[str, Any]:
    # The name differs from the id: a property equal to a config node's own id hides it from its users.
    return {"id": cid, "type": "mqtt-broker", "name": f"broker {cid}", "broker": host, "port": "1883", "clientid": "",
            "autoConnect": False, "usetls": False, "protocolVersion": "4", "keepalive": "60", "cleansession": True}


def mqtt_out(tab: str, cid: str) -> dict[str, Any]:
    return {"id": f"tab-{tab}-mqtt-{cid}", "type": "mqtt out", "z": f"tab-{tab}", "name": "", "topic": tab, "qos": "",
            "retain": "", "broker": cid, "x": 480, "y": 160, "wires": []}


def push(ws: Workspace, files: dict[str, Any], branch: str = "env/production", message: str = "edit flows") -> None:
    """A person commits flow files (dicts, or None to delete) and pushes them."""
    clone = ws.root / "user"
    if not clone.exists():
        ws.git("init", "-q", str(clone))
        ws.git("remote", "add", "origin", str(ws.repo), cwd=clone)
    ws.git("fetch", "-q", "origin", cwd=clone)
    if ws.git("ls-remote", "--heads", "origin", branch, cwd=clone).strip():
        ws.git("checkout", "-q", "-B", branch, f"origin/{branch}", cwd=clone)
    else:
        ws.git("checkout", "-q", "--orphan", branch, cwd=clone)
    for rel, doc in files.items():
        path = clone / rel
        if doc is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(doc, indent=2) + "\n")
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-q", "-m", message, cwd=clone)
    ws.git("push", "-q", "origin", branch, cwd=clone)


def path_of(doc: dict[str, Any]) -> str:
    return f"flows/{doc['name']}/{doc['version']}.json"


def in_git(ws: Workspace, rel: str, ref: str = "env/production") -> dict[str, Any]:
    """The whole document git holds at ``rel``: its JSON with its sidecar files (code) joined back."""
    folder = rel.removesuffix(".json")
    names = ws.git("ls-tree", "--name-only", f"{ref}:{folder}", cwd=ws.repo, check=False).split()
    files = {n: ws.git("show", f"{ref}:{folder}/{n}", cwd=ws.repo).encode() for n in names}
    doc, _, problems = join(json.loads(ws.git("show", f"{ref}:{rel}", cwd=ws.repo)), StoredFlow(b"", files), where=rel)
    assert not problems, problems
    return doc


def node_of(nr: NodeRed, node_id: str) -> dict[str, Any]:
    node = nr.node(node_id)
    assert node is not None, f"{node_id} is not in Node-RED"
    return node


def synced(ws: Workspace, *docs: dict[str, Any]) -> None:
    """Push the flows and sync production: they are in Node-RED and in sync."""
    engine_for(ws)  # creates the repository
    push(ws, {path_of(d): d for d in docs})
    out = engine_for(ws).sync("production")
    assert not out.failed and not out.problems, (out.failed, out.problems)


# -- the mapping (pure) ------------------------------------------------------------------------


def test_a_flow_carries_the_definitions_it_uses_transitively_and_no_others() -> None:
    """Config nodes used by config nodes, subflows inside subflows; unused definitions belong to no flow."""
    nodes = [
        {"id": "t1", "type": "tab", "label": "orders", "env": [{"name": "FLOW_VERSION", "value": "3", "type": "str"}]},
        {"id": "t2", "type": "tab", "label": "billing"},
        {"id": "tls", "type": "tls-config", "name": "certs"},
        {"id": "brk", "type": "mqtt-broker", "broker": "b", "tls": "tls"},
        {"id": "lonely", "type": "mqtt-broker", "broker": "nobody uses me"},
        {"id": "outer", "type": "subflow", "name": "outer"},
        {"id": "outer-1", "type": "subflow:inner", "z": "outer", "wires": []},
        {"id": "inner", "type": "subflow", "name": "inner"},
        {"id": "inner-1", "type": "mqtt out", "z": "inner", "broker": "brk", "wires": []},
        {"id": "n1", "type": "subflow:outer", "z": "t1", "wires": []},
        {"id": "n2", "type": "mqtt out", "z": "t2", "broker": "brk", "wires": []},
    ]
    docs = flow_documents(nodes)
    orders, billing = docs["t1"], docs["t2"]
    assert (orders["name"], orders["version"], billing["version"]) == ("orders", "3", "1")
    assert "env" not in orders["tab"] and "label" not in orders["tab"]
    assert [n["id"] for n in orders["configs"]] == ["brk", "tls"]
    assert [n["id"] for n in orders["subflows"]] == ["inner", "inner-1", "outer", "outer-1"]
    assert billing["configs"] == orders["configs"] and "subflows" not in billing


# -- export ----------------------------------------------------------------------------------


def test_export_commits_one_canonical_document_per_tab(site: Workspace, nr: NodeRed) -> None:
    """Each tab becomes flows/<label>/<FLOW_VERSION>.json with its nodes, config nodes and subflows; no credentials."""
    shared = dict(broker("c-shared"), credentials={"user": "ada", "password": "pa55word-never-in-git"})
    nr.deploy([
        {"id": "t-o", "type": "tab", "label": "orders", "disabled": False, "info": "",
         "env": [{"name": "REGION", "value": "eu", "type": "str"}, {"name": "FLOW_VERSION", "value": "2.0", "type": "str"}]},
        {"id": "t-b", "type": "tab", "label": "billing", "disabled": False, "info": "", "env": []},
        {"id": "sf", "type": "subflow", "name": "enrich", "info": "", "in": [{"x": 40, "y": 40, "wires": [{"id": "sf-fn"}]}],
         "out": [{"x": 300, "y": 40, "wires": [{"id": "sf-fn", "port": 0}]}], "env": []},
        {"id": "sf-fn", "type": "function", "z": "sf", "func": "return msg;", "outputs": 1, "x": 160, "y": 40, "wires": [[]]},
        shared,
        broker("c-unused"),
        {"id": "o-2", "type": "subflow:sf", "z": "t-o", "x": 300, "y": 80, "wires": [["o-1"]]},
        {"id": "o-1", "type": "mqtt out", "z": "t-o", "topic": "orders", "broker": "c-shared", "x": 500, "y": 80, "wires": []},
        {"id": "b-1", "type": "mqtt out", "z": "t-b", "topic": "billing", "broker": "c-shared", "x": 500, "y": 80, "wires": []},
    ])
    out = engine_for(site).export("production")
    assert out.commit and not out.problems
    tree = site.git("ls-tree", "-r", "--name-only", "env/production", cwd=site.repo).split()
    assert tree == ["flows/_instance/1.json", "flows/billing/1.json", "flows/orders/2.0.json",
                    "flows/orders/2.0/sf-fn.func.js"]
    instance = in_git(site, "flows/_instance/1.json")  # the broker no tab uses; orders before billing
    assert instance["tabs"] == ["t-o", "t-b"] and [n["id"] for n in instance["configs"]] == ["c-unused"]
    orders = in_git(site, "flows/orders/2.0.json")
    assert orders["name"] == "orders" and orders["version"] == "2.0"
    assert orders["tab"] == {"id": "t-o", "type": "tab", "disabled": False, "info": "",
                             "env": [{"name": "REGION", "value": "eu", "type": "str"}]}
    assert [n["id"] for n in orders["nodes"]] == ["o-1", "o-2"]
    assert [n["id"] for n in orders["configs"]] == ["c-shared"]
    assert [n["id"] for n in orders["subflows"]] == ["sf", "sf-fn"]
    billing = in_git(site, "flows/billing/1.json")
    assert billing["configs"] == orders["configs"] and "subflows" not in billing
    raw = site.git("show", "env/production:flows/orders/2.0.json", cwd=site.repo)
    assert raw.encode() == canonicalize(json.loads(raw))
    assert "pa55word" not in site.git("log", "-p", "--all", cwd=site.repo)


def test_a_tab_that_is_no_flow_is_reported_and_kept_as_it_is(site: Workspace, nr: NodeRed) -> None:
    """A tab without a label has no name: a problem of the export, never a crash; a write elsewhere keeps it."""
    nr.deploy([{"id": "t-nameless", "type": "tab", "disabled": False, "info": ""},
               {"id": "t-nameless-1", "type": "debug", "z": "t-nameless", "active": False, "x": 1, "y": 1, "wires": []}])
    driver = NodeRedDriver(nr.url, token_env=TOKEN_VAR)
    live = driver.export()
    assert live.flows == {} and not live.complete
    assert [p.where for p in live.problems] == [f"{nr.url} tab t-nameless"]
    assert driver.apply([Change(ORDERS, canonicalize(tab_flow("orders")), None)]) == {}
    assert {"t-nameless", "t-nameless-1", "tab-orders"} <= {n["id"] for n in nr.flows()[1]}


# -- import, override, delete ---------------------------------------------------------------


def test_a_flow_pushed_to_git_is_imported_with_its_ids(site: Workspace, nr: NodeRed) -> None:
    """A new flow lands as a tab labelled with its name, its version in the tab's env, node ids kept."""
    synced(site, tab_flow("orders"))
    tab = nr.tabs()["orders"]
    assert tab["id"] == "tab-orders"
    assert "env" not in tab  # version 1 is the default: nothing is added to the tab
    assert node_of(nr, "tab-orders-fn")["z"] == "tab-orders"
    assert engine_for(site).sync("production", dry_run=True).plan.changes == ()


def test_an_update_in_git_overrides_the_flow_in_node_red(site: Workspace, nr: NodeRed) -> None:
    """The same name+version is replaced in place: one tab, new content."""
    synced(site, tab_flow("orders"), tab_flow("billing"))
    push(site, {"flows/orders/1.json": tab_flow("orders", code="return null;")})
    out = engine_for(site).sync("production")
    assert [s.action for s in out.done] == [Action.IMPORT] and not out.failed
    assert node_of(nr, "tab-orders-fn")["func"] == "return null;"
    assert sorted(nr.tabs()) == ["billing", "orders"]


def test_an_import_keeps_the_credentials_node_red_holds(site: Workspace, nr: NodeRed) -> None:
    """Credentials never travel through git; overriding a flow keeps those of its nodes."""
    synced(site, tab_flow("orders", extra=[mqtt_out("orders", "c-1")], configs=[broker("c-1")]))
    nr.edit(lambda nodes: next(n for n in nodes if n["id"] == "c-1").update(credentials={"user": "ada", "password": "pw"}))
    push(site, {"flows/orders/1.json": tab_flow("orders", code="return null;", extra=[mqtt_out("orders", "c-1")],
                                                configs=[broker("c-1")])})
    assert not engine_for(site).sync("production").failed
    assert nr.admin("GET", "/credentials/mqtt-broker/c-1")[1] == {"user": "ada", "has_password": True}


def test_a_flow_deleted_in_git_is_deleted_with_the_config_nodes_only_it_used(site: Workspace, nr: NodeRed) -> None:
    """With prune, the tab, its nodes and its own config nodes go; a config node another flow uses stays."""
    orders = tab_flow("orders", extra=[mqtt_out("orders", "c-own"), mqtt_out("orders", "c-shared")],
                      configs=[broker("c-own"), broker("c-shared")])
    billing = tab_flow("billing", extra=[mqtt_out("billing", "c-shared")], configs=[broker("c-shared")])
    synced(site, orders, billing)
    push(site, {"flows/orders/1.json": None})
    out = engine_for(site).sync("production")
    assert [(s.key, s.action) for s in out.done] == [(ORDERS, Action.DELETE)]
    ids = {n["id"] for n in nr.flows()[1]}
    assert not {i for i in ids if i.startswith("tab-orders")} and "c-own" not in ids
    assert {"c-shared", "tab-billing", "tab-billing-fn"} <= ids


# -- drift -------------------------------------------------------------------------------------


def edit_code(nr: NodeRed, node_id: str, code: str) -> str:
    return nr.edit(lambda nodes: next(n for n in nodes if n["id"] == node_id).update(func=code))


def test_an_edit_made_in_node_red_is_restored_and_saved(site: Workspace, nr: NodeRed) -> None:
    """drift = restore: git's version goes back into Node-RED; the edited one is kept on drift/production."""
    synced(site, tab_flow("orders"))
    edit_code(nr, "tab-orders-fn", "return 'typed in the editor';")
    out = engine_for(site).sync("production")
    assert [(s.key, s.action) for s in out.done] == [(ORDERS, Action.IMPORT)]
    assert node_of(nr, "tab-orders-fn")["func"] == tab_flow("orders")["nodes"][0]["func"]
    saved = in_git(site, "flows/orders/1.json", ref="drift/production")
    assert next(n for n in saved["nodes"] if n["id"] == "tab-orders-fn")["func"] == "return 'typed in the editor';"


def test_an_edit_made_in_node_red_is_adopted_into_git(site: Workspace, nr: NodeRed) -> None:
    """drift = adopt: the edit becomes a commit on the environment's branch; Node-RED is left as it is."""
    write_config(site, nr, drift="adopt")
    synced(site, tab_flow("orders"))
    edit_code(nr, "tab-orders-fn", "return 'adopted';")
    out = engine_for(site).sync("production")
    assert out.commit and [(s.key, s.action) for s in out.done] == [(ORDERS, Action.ADOPT)]
    adopted = in_git(site, "flows/orders/1.json")
    assert next(n for n in adopted["nodes"] if n["id"] == "tab-orders-fn")["func"] == "return 'adopted';"
    assert node_of(nr, "tab-orders-fn")["func"] == "return 'adopted';"


class EditorRace(Wrapped):
    """The real driver, with an editor deploy landing between the export and the first write."""

    def __init__(self, inner: Driver, edit) -> None:
        super().__init__(inner)
        self.edit = edit
        self.moved = 0

    def apply(self, changes: Sequence[Change], progress=None) -> dict[FlowKey, str]:
        if self.edit is not None:
            edit, self.edit = self.edit, None
            edit()
        try:
            return self.inner.apply(changes, progress)
        except LiveMovedError:
            self.moved += 1
            raise


def test_an_editor_deploy_racing_a_sync_on_the_same_flow_becomes_a_conflict(site: Workspace, nr: NodeRed) -> None:
    """The stale rev is refused (409); the engine re-plans and sees both sides changed: nothing is overwritten."""
    synced(site, tab_flow("orders"))
    push(site, {"flows/orders/1.json": tab_flow("orders", code="return 'from git';")})
    race = EditorRace(make_driver(load_config(site.config).env("production")),
                      lambda: edit_code(nr, "tab-orders-fn", "return 'from the editor';"))
    out = engine_for(site, production=race).sync("production")
    assert race.moved == 1
    assert out.conflicts == 1 and not out.done
    assert node_of(nr, "tab-orders-fn")["func"] == "return 'from the editor';"


def test_an_editor_deploy_racing_a_sync_on_another_flow_survives_it(site: Workspace, nr: NodeRed) -> None:
    """drift = report: git's change to orders lands; the editor's change to billing, made meanwhile, stays."""
    write_config(site, nr, drift="report")
    synced(site, tab_flow("orders"), tab_flow("billing"))
    push(site, {"flows/orders/1.json": tab_flow("orders", code="return 'from git';")})
    race = EditorRace(make_driver(load_config(site.config).env("production")),
                      lambda: edit_code(nr, "tab-billing-fn", "return 'from the editor';"))
    out = engine_for(site, production=race).sync("production")
    assert race.moved == 1 and not out.failed
    assert node_of(nr, "tab-orders-fn")["func"] == "return 'from git';"
    assert node_of(nr, "tab-billing-fn")["func"] == "return 'from the editor';"
    assert out.states["drifted"] == 1


def test_a_write_checks_the_live_flow_against_what_the_plan_saw(nr: NodeRed) -> None:
    """Change.expect is honoured per flow: a mismatch fails that flow and deploys nothing."""
    driver = NodeRedDriver(nr.url, token_env=TOKEN_VAR)
    driver.apply([Change(ORDERS, canonicalize(tab_flow("orders")), None)])
    rev = nr.flows()[0]
    driver.export()
    failed = driver.apply([Change(ORDERS, canonicalize(tab_flow("orders", code="return 1;")), "0" * 40)])
    assert "changed in Node-RED" in failed[ORDERS]
    assert nr.flows()[0] == rev


def test_the_driver_rereads_and_loads_what_node_red_holds_and_closes(nr: NodeRed) -> None:
    """The rest of the port: reread gives the ids now live (None for a flow that is not), load the bytes."""
    driver = NodeRedDriver(nr.url, token_env=TOKEN_VAR)
    data = canonicalize(tab_flow("orders"))
    assert driver.apply([Change(ORDERS, data, None)]) == {}
    live = NodeRedDriver(nr.url, token_env=TOKEN_VAR).export()
    assert driver.reread([ORDERS, BILLING]) == {ORDERS: live.flows[ORDERS].oid, BILLING: None}
    loaded = driver.load(ORDERS)
    assert loaded is not None and loaded.data == live.flows[ORDERS].data and driver.load(BILLING) is None
    driver.close()


# -- shared config nodes ------------------------------------------------------------------------


def shared_pair(host: str, *, only_orders: bool = False) -> dict[str, Any]:
    orders = tab_flow("orders", extra=[mqtt_out("orders", "c-shared")], configs=[broker("c-shared", host)])
    billing_host = "mqtt.invalid" if only_orders else host
    billing = tab_flow("billing", extra=[mqtt_out("billing", "c-shared")], configs=[broker("c-shared", billing_host)])
    return {path_of(orders): orders, path_of(billing): billing}


def test_a_shared_config_node_changed_in_one_flow_only_is_refused(site: Workspace, nr: NodeRed) -> None:
    """Changing it would silently change the other flow: the import is refused, naming that flow."""
    synced(site, *shared_pair("mqtt.invalid").values())
    push(site, shared_pair("other.invalid", only_orders=True))
    out = engine_for(site).sync("production")
    assert "billing@1" in out.failed[ORDERS] and "c-shared" in out.failed[ORDERS]
    assert node_of(nr, "c-shared")["broker"] == "mqtt.invalid"


def test_a_shared_config_node_changed_in_every_flow_that_uses_it_is_imported(site: Workspace, nr: NodeRed) -> None:
    """Both flows carry the same new copy, in one commit: one deploy changes it."""
    synced(site, *shared_pair("mqtt.invalid").values())
    push(site, shared_pair("other.invalid"))
    out = engine_for(site).sync("production")
    assert not out.failed and {s.key for s in out.done} == {ORDERS, BILLING}
    assert node_of(nr, "c-shared")["broker"] == "other.invalid"


def test_a_flow_reusing_the_ids_of_another_is_refused(site: Workspace, nr: NodeRed) -> None:
    """orders@2 copied from orders@1 with the same ids would break Node-RED: refused with the reason."""
    synced(site, tab_flow("orders"))
    push(site, {"flows/orders/2.json": tab_flow("orders", "2")})
    out = engine_for(site).sync("production")
    assert "already used by the tab of flow orders@1" in out.failed[FlowKey("orders", "2")]
    assert list(nr.tabs()) == ["orders"]


# -- refused input and errors -------------------------------------------------------------------


def test_a_flow_with_an_unknown_node_type_is_refused(site: Workspace, nr: NodeRed) -> None:
    """Node-RED would accept it and never start it: the flow is refused by name, the others land."""
    bad = tab_flow("bad", extra=[{"id": "tab-bad-x", "type": "no-such-node", "z": "tab-bad", "x": 1, "y": 1, "wires": []}])
    engine_for(site)
    push(site, {path_of(bad): bad, path_of(tab_flow("orders")): tab_flow("orders")})
    out = engine_for(site).sync("production")
    assert set(out.failed) == {FlowKey("bad", "1")}
    why = out.failed[FlowKey("bad", "1")]
    assert "flow bad@1" in why and "'no-such-node'" in why and nr.url in why
    assert list(nr.tabs()) == ["orders"]


def test_a_wrong_token_is_a_clear_error_naming_the_variable(site: Workspace, nr: NodeRed) -> None:
    """401: the CLI says which environment variable to check, and never prints the token."""
    env = dict(os.environ, **{TOKEN_VAR: "not-the-token-4711"}, RECONCILER_CONFIG=str(site.config))
    proc = subprocess.run([sys.executable, "-m", "reconciler", "export", "production"], cwd=site.root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert TOKEN_VAR in proc.stderr and "401" in proc.stderr and nr.url in proc.stderr
    assert "not-the-token-4711" not in proc.stdout + proc.stderr


def test_a_wrong_password_is_a_clear_error_naming_the_variables(nr: NodeRed) -> None:
    """The password grant is refused: both variable names are given, the password is not."""
    environ = {USER_VAR: USER, PASSWORD_VAR: "wrong-password-4711"}
    driver = NodeRedDriver(nr.url, username_env=USER_VAR, password_env=PASSWORD_VAR, environ=environ)
    with pytest.raises(StallError) as exc:
        driver.export()
    assert USER_VAR in str(exc.value) and PASSWORD_VAR in str(exc.value)
    assert "wrong-password-4711" not in str(exc.value)


def test_a_missing_token_variable_is_a_clear_error(nr: NodeRed) -> None:
    """An unset variable is named before anything is sent."""
    with pytest.raises(StallError, match=f"{TOKEN_VAR}_UNSET is not set"):
        NodeRedDriver(nr.url, token_env=TOKEN_VAR + "_UNSET", environ={}).export()


def test_node_red_down_is_retryable_and_names_the_url() -> None:
    """Connection refused: a RetryableError naming the URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(RetryableError, match=f"Node-RED at {url} is unreachable"):
        NodeRedDriver(url, timeout=2).export()


def test_node_red_not_answering_is_retryable_after_the_timeout() -> None:
    """A server that accepts but never answers: a RetryableError after `timeout` seconds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(RetryableError, match="did not answer GET /flows within 0.3 s"):
            NodeRedDriver(url, timeout=0.3).export()


class Scripted:
    """A stand-in for Node-RED on a loopback port, for what a real one cannot be made to do on cue
    (answer 503, let a token expire): ``answer(method, path, authorization)`` -> (status, JSON body)."""

    def __init__(self, answer: Callable[[str, str, str | None], tuple[int, Any]]):
        self.seen: list[tuple[str, str]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                scripted.seen.append((self.command, self.path))
                status, body = answer(self.command, self.path, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Scripted":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


ONE_TAB = {"rev": "r1", "flows": [{"id": "t1", "type": "tab", "label": "orders"}]}


def test_a_node_red_answering_503_is_asked_again_with_backoff() -> None:
    """Two 503s, then the flows: three requests, waits of backoff and twice backoff, no error."""
    answers = iter([(503, {"message": "starting"}), (503, {"message": "starting"})])
    waits: list[float] = []
    with Scripted(lambda m, p, a: next(answers, (200, ONE_TAB))) as nr:
        live = NodeRedDriver(nr.url, backoff=0.25, sleep=waits.append).export()
    assert set(live.flows) == {ORDERS}
    assert nr.seen == [("GET", "/flows")] * 3 and waits == [0.25, 0.5]


def test_a_node_red_that_keeps_failing_is_retryable_after_the_attempts() -> None:
    """Always 503: `attempts` requests, then a RetryableError with the URL, the status and Node-RED's words."""
    with Scripted(lambda m, p, a: (503, {"message": "flows are restarting"})) as nr:
        with pytest.raises(RetryableError) as exc:
            NodeRedDriver(nr.url, attempts=2, sleep=lambda s: None).export()
    assert len(nr.seen) == 2
    text = str(exc.value)
    assert f"{nr.url}/flows" in text and "503" in text and "flows are restarting" in text and "2 attempts" in text


def test_an_expired_login_logs_in_again_once() -> None:
    """A 401 to the token of POST /auth/token: one more login, and the request goes through."""
    tokens = iter(["expired-token", "fresh-token"])

    def answer(method: str, path: str, auth: str | None) -> tuple[int, Any]:
        if path == "/auth/token":
            return 200, {"access_token": next(tokens), "expires_in": 604800, "token_type": "Bearer"}
        return (200, ONE_TAB) if auth == "Bearer fresh-token" else (401, "Unauthorized")

    environ = {USER_VAR: "ada", PASSWORD_VAR: "pw"}
    with Scripted(answer) as nr:
        live = NodeRedDriver(nr.url, username_env=USER_VAR, password_env=PASSWORD_VAR, environ=environ).export()
    assert set(live.flows) == {ORDERS}
    assert nr.seen == [("POST", "/auth/token"), ("GET", "/flows"), ("POST", "/auth/token"), ("GET", "/flows")]


def test_a_deploy_refused_after_a_retry_says_the_first_try_may_have_landed() -> None:
    """503 (the deploy landed, its answer did not), then 409: LiveMovedError, the engine re-reads."""
    posts = iter([(503, {"message": "busy"}), (409, {"code": "version_mismatch"})])
    with Scripted(lambda m, p, a: next(posts) if m == "POST" else (200, ONE_TAB)) as nr:
        driver = NodeRedDriver(nr.url, check_types=False, health_check=False, sleep=lambda s: None)
        driver.export()
        with pytest.raises(LiveMovedError, match="perhaps by this deploy's first try"):
            driver.apply([Change(BILLING, canonicalize(tab_flow("billing")), None)])


def settings_refusal(tmp_path: Path, *environments: str) -> str:
    """The ConfigError for node-red environments a, b, … (each given as its TOML lines after `driver`)."""
    (tmp_path / "reconciler.toml").write_text("".join(
        f'[[environment]]\nname = "{chr(ord("a") + i)}"\ndriver = "node-red"\n{lines}\n'
        for i, lines in enumerate(environments)))
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "reconciler.toml")
    return str(exc.value)


def test_the_settings_refuse_credentials_in_the_config(tmp_path: Path) -> None:
    """No password in the URL; username and password variables go together."""
    text = settings_refusal(tmp_path, 'url = "http://ada:secret@127.0.0.1:1880"',
                            'url = "http://127.0.0.1:1880"\nusername_env = "U"')
    assert "must not carry credentials" in text and "username_env and password_env go together" in text


def test_the_settings_check_the_url_as_every_http_driver_does(tmp_path: Path) -> None:
    """One URL rule for every driver: ASCII without spaces, a valid port."""
    text = settings_refusal(tmp_path, 'url = "http://127.0.0.1:99999"', 'url = "http://nöde-red.local:1880"')
    assert "Port out of range" in text and "must be ASCII without spaces" in text


# -- round trip of the examples shipped with node-red --------------------------------------------


def example_batches(install: Install) -> tuple[list[list[dict]], int, int]:
    """The shipped examples as tabs (each in a tab labelled by its path), grouped so ids never collide."""
    root = examples_dir(install)
    if root is None:
        unavailable("the example flows of node-red (@node-red/nodes/examples) are not installed")
    assert root is not None
    batches: list[tuple[set[str], list[dict]]] = []
    files = tabs = 0
    for path in sorted(root.rglob("*.json")):
        nodes = json.loads(path.read_text())
        label = str(path.relative_to(root).with_suffix(""))
        files += 1
        own_tabs = [n for n in nodes if n.get("type") == "tab"]
        for i, t in enumerate(own_tabs):
            t["label"] = f"{label} #{i + 1}"
        if not own_tabs:
            z = {n["z"] for n in nodes if n.get("z")}
            assert len(z) <= 1, path
            tid = z.pop() if z else f"example-{files}"
            own_tabs = [{"id": tid, "type": "tab", "label": label, "disabled": False, "info": "", "env": []}]
            # Nodes go into the tab; global config nodes (no z, no wires) stay global.
            nodes = [*own_tabs, *(dict(n, z=tid) if "z" in n or "wires" in n else n for n in nodes)]
        tabs += len(own_tabs)
        ids = {n["id"] for n in nodes}
        for used, batch in batches:
            if not used & ids:
                used |= ids
                batch.extend(nodes)
                break
        else:
            batches.append((ids, list(nodes)))
    return [b for _, b in batches], files, tabs


def test_the_example_flows_shipped_with_node_red_round_trip_exactly(
    node_red: NodeRed, empty_node_red: NodeRed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Export from one Node-RED, import into an empty one, export again: identical canonical bytes; both
    instances hold the same nodes, node for node, and the same tab order ("z": "", which the canonical form
    drops, aside)."""
    monkeypatch.setenv(TOKEN_VAR, node_red.token)
    source, target = node_red, empty_node_red
    batches, files, tabs = example_batches(source.install)
    source.reset()
    source.set_state("stop")  # the examples run commands and open sockets: never start them
    exported = identical = instances = 0
    mismatched: list[str] = []
    try:
        for nodes in batches:
            source.deploy(nodes)
            a = NodeRedDriver(source.url, token_env=TOKEN_VAR).export()
            assert not a.problems, a.problems
            target.deploy([])
            b_driver = NodeRedDriver(target.url, environ={"T": target.token}, token_env="T", health_check=False)
            failed = b_driver.apply([Change(k, f.data, None) for k, f in sorted(a.flows.items())])
            assert failed == {}
            b = b_driver.export()
            instances += INSTANCE in a.flows
            exported += len(a.flows) - (INSTANCE in a.flows)
            for key, f in a.flows.items():
                if b.flows.get(key) is not None and b.flows[key].data == f.data:
                    identical += key != INSTANCE
                else:
                    mismatched.append(str(key))
            same = lambda ns: {n["id"]: {k: v for k, v in n.items() if (k, v) != ("z", "")} for n in ns}  # noqa: E731
            tab_ids = lambda ns: [n["id"] for n in ns if n["type"] == "tab"]  # noqa: E731
            assert same(target.flows()[1]) == same(source.flows()[1])
            assert tab_ids(target.flows()[1]) == tab_ids(source.flows()[1])
    finally:
        source.reset()
    with capsys.disabled():
        print(f"\nnode-red {source.install.version} examples round trip: {files} files, {tabs} tabs, {exported} exported, "
              f"{identical} identical, {instances} instance documents, {len(batches)} batches, node for node equal")
    assert exported == tabs and identical == tabs and not mismatched, mismatched


# -- end to end: the CLI and the service -----------------------------------------------------------


def hello_flow(path: str, text: str) -> dict[str, Any]:
    t = "tab-hello"
    nodes = [
        {"id": f"{t}-in", "type": "http in", "z": t, "name": "", "url": path, "method": "get", "upload": False,
         "swaggerDoc": "", "x": 120, "y": 80, "wires": [[f"{t}-set"]]},
        {"id": f"{t}-set", "type": "change", "z": t, "name": "", "rules": [{"t": "set", "p": "payload", "pt": "msg",
         "to": text, "tot": "str"}], "x": 300, "y": 80, "wires": [[f"{t}-out"]]},
        {"id": f"{t}-out", "type": "http response", "z": t, "name": "", "statusCode": "", "headers": {}, "x": 480,
         "y": 80, "wires": []},
    ]
    return {"name": "hello", "version": "1.0", "tab": {"id": t, "type": "tab", "disabled": False, "info": ""},
            "nodes": nodes}


def http_get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()
    except OSError:
        return None


def test_the_cli_promotes_a_flow_into_a_running_node_red(ws: Workspace, nr: NodeRed) -> None:
    """export acceptance -> branch -> `reconciler sync production` (user + password auth): the flow serves HTTP."""
    write_config(ws, nr, auth="password")
    path = f"/hello-{secrets.token_hex(4)}"
    ws.put("acceptance", "hello.json", hello_flow(path, "hello from git"))
    env = {USER_VAR: USER, PASSWORD_VAR: nr.password}
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "reconciler", *args], cwd=ws.root, capture_output=True, text=True, timeout=60,
        env=dict(os.environ, RECONCILER_CONFIG=str(ws.config), **env))
    assert run("export", "acceptance").returncode == 0
    ws.git("branch", "env/production", "env/acceptance", cwd=ws.repo)
    assert run("plan", "production").returncode == 2
    sync = run("sync", "production")
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert nr.password not in sync.stdout + sync.stderr
    assert wait_for(lambda: http_get(nr.url + path), what="the flow to serve HTTP") == "hello from git"
    assert run("plan", "production").returncode == 0


def test_the_service_brings_a_git_push_into_node_red(site: Workspace, nr: NodeRed) -> None:
    """`reconciler run`: a commit pushed to env/production lands in Node-RED without anyone running a command."""
    synced(site, tab_flow("orders"))
    with ServiceProcess(site.config, env={TOKEN_VAR: nr.token}) as svc:
        wait_for(lambda: svc.runs("production") >= 1, what="the startup reconcile")
        pushed = time.monotonic()
        push(site, {"flows/billing/1.json": tab_flow("billing")})
        wait_for(lambda: "billing" in nr.tabs(), timeout=20, what="billing to land in Node-RED")
        landed = time.monotonic() - pushed
        assert svc.status("production")["error"] is None
    assert landed < 20
