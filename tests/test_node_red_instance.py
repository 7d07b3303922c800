"""A whole Node-RED instance in git and back (real Node-RED 4 and 5, ids ``nr4``/``nr5``, through the engine).

Two instances per version run the node types of ``tests/data/node_red/nodes``
(dashboard-like ``ui_base``/``ui_tab``/``ui_group``/``ui_text`` among them):
``source`` is exported to ``env/source``, which becomes ``env/target`` and is
synced into the empty ``target``; then both instances' ``GET /flows`` are
compared node for node, in order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.config import load_config
from reconciler.engine import Engine
from reconciler.flows import FlowKey
from reconciler.schemas import schema_for
from tests.conftest import Workspace
from tests.nodered import VERSIONS, NodeRed, start_node_red
from tests.test_node_red import in_git, push

NODES_DIR = Path(__file__).parent / "data/node_red/nodes"
SETTINGS = {"nodesDir": json.dumps(str(NODES_DIR)), "externalModules": "{modules: {allowInstall: false}}"}
SRC_VAR, TGT_VAR = "RECONCILER_TEST_NR_SOURCE_TOKEN", "RECONCILER_TEST_NR_TARGET_TOKEN"


@pytest.fixture(scope="module", params=VERSIONS)
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(source, target): two Node-REDs of one major version."""
    a = start_node_red(tmp_path_factory.mktemp(f"nr-source-{request.param}"), request.param, SETTINGS)
    try:
        b = start_node_red(tmp_path_factory.mktemp(f"nr-target-{request.param}"), request.param, SETTINGS)
    except BaseException:
        a.close()
        raise
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def site(ws: Workspace, pair: tuple[NodeRed, NodeRed], monkeypatch: pytest.MonkeyPatch) -> Workspace:
    source, target = pair
    source.reset()
    target.reset()
    monkeypatch.setenv(SRC_VAR, source.token)
    monkeypatch.setenv(TGT_VAR, target.token)
    write_config(ws, source, target)
    return ws


def write_config(ws: Workspace, source: NodeRed, target: NodeRed, **target_settings: Any) -> None:
    target_lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in target_settings.items())
    ws.config.write_text(
        '[repository]\npath = "state/flows.git"\n\n'
        f'[[environment]]\nname = "source"\ndriver = "node-red"\nurl = "{source.url}"\ntoken_env = "{SRC_VAR}"\n'
        'drift = "adopt"\n\n'
        f'[[environment]]\nname = "target"\ndriver = "node-red"\nurl = "{target.url}"\ntoken_env = "{TGT_VAR}"\n'
        f'drift = "restore"\nprune = true\nhealth_timeout = 20\n{target_lines}')


def engine(ws: Workspace) -> Engine:
    return Engine(load_config(ws.config), create_repository=True)


def promote_to_target(ws: Workspace) -> None:
    ws.git("branch", "-f", "env/target", "env/source", cwd=ws.repo)


# -- a realistic instance ----------------------------------------------------------------------------


def tab(tid: str, label: str, env: list | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": tid, "type": "tab", "label": label, "disabled": False, "info": "", "env": env or [], **extra}


def n(nid: str, kind: str, z: str, wires: list | None = None, **props: Any) -> dict[str, Any]:
    return {"id": nid, "type": kind, "z": z, "name": "", **props, "x": 200, "y": 100, "wires": wires or []}


def fn(nid: str, z: str, wires: list | None = None) -> dict[str, Any]:
    return n(nid, "function", z, wires or [[]], func="return msg;", outputs=1, timeout=0, noerr=0, initialize="",
             finalize="", libs=[])


def broker(cid: str, **extra: Any) -> dict[str, Any]:
    return {"id": cid, "type": "mqtt-broker", "name": f"broker {cid}", "broker": "mqtt.invalid", "port": "1883",
            "clientid": "", "autoConnect": False, "usetls": False, "protocolVersion": "4", "keepalive": "60",
            "cleansession": True, **extra}


def rich_instance() -> list[dict[str, Any]]:
    """Tabs in an order of their own (one disabled), version entries in the middle of env lists, shared and
    unused config nodes (one with Node-RED 1.x's "z": ""), a global-config node with env vars, nested and
    unused subflows, dashboard base, page and groups (one with nothing on it), groups, junctions, cross-tab
    links, a tab-scoped config node."""
    return [
        tab("t-zeta", "zeta", [{"name": "REGION", "value": "eu", "type": "str"},
                               {"name": "FLOW_VERSION", "value": "3", "type": "str"},
                               {"name": "LIMIT", "value": "10", "type": "num"}]),
        tab("t-alpha", "alpha", [{"name": "FLOW_VERSION", "value": "2.1", "type": "str"}]),
        tab("t-off", "standby", disabled=True),
        tab("t-mid", "mid"),
        {"id": "sf-outer", "type": "subflow", "name": "outer", "info": "", "category": "", "env": [],
         "in": [{"x": 40, "y": 40, "wires": [{"id": "sf-outer-1"}]}], "out": [{"x": 300, "y": 40,
                                                                              "wires": [{"id": "sf-outer-1", "port": 0}]}]},
        {"id": "sf-outer-1", "type": "subflow:sf-inner", "z": "sf-outer", "name": "", "x": 160, "y": 40, "wires": [[]]},
        {"id": "sf-inner", "type": "subflow", "name": "inner", "info": "", "category": "", "env": [],
         "in": [{"x": 40, "y": 40, "wires": [{"id": "sf-inner-fn"}]}], "out": [{"x": 300, "y": 40,
                                                                               "wires": [{"id": "sf-inner-fn", "port": 0}]}]},
        fn("sf-inner-fn", "sf-inner"),
        {"id": "sf-spare", "type": "subflow", "name": "not placed yet", "info": "", "category": "", "env": [],
         "in": [], "out": []},
        fn("sf-spare-fn", "sf-spare"),
        {"id": "gc", "type": "global-config", "env": [{"name": "SITE", "value": "plant-1", "type": "str"}],
         "modules": {}},
        broker("c-shared", tls="c-tls", usetls=True),
        {"id": "c-tls", "type": "tls-config", "name": "certs", "cert": "", "key": "",
         "ca": "", "certname": "", "keyname": "", "caname": "", "servername": "", "verifyservercert": True,
         "alpnprotocol": ""},
        dict(broker("c-legacy"), z=""),
        broker("c-unused"),
        {"id": "ui-base", "type": "ui_base", "theme": {"name": "theme-light", "lightTheme": {"default": "#0094CE"}},
         "site": {"name": "plant-1", "hideToolbar": "false", "dateFormat": "DD/MM/YYYY"}},
        {"id": "ui-page", "type": "ui_tab", "name": "Home", "icon": "dashboard", "order": 1, "disabled": False,
         "hidden": False},
        {"id": "ui-group-used", "type": "ui_group", "name": "Live", "tab": "ui-page", "order": 1, "disp": True,
         "width": "6", "collapse": False},
        {"id": "ui-group-empty", "type": "ui_group", "name": "Later", "tab": "ui-page", "order": 2, "disp": True,
         "width": "6", "collapse": False},
        n("z-in", "inject", "t-zeta", [["z-junction"]], props=[{"p": "payload"}], repeat="", crontab="", once=False,
          topic="", payload="", payloadType="date"),
        {"id": "z-junction", "type": "junction", "z": "t-zeta", "x": 300, "y": 100, "wires": [["z-fn", "z-link"]]},
        fn("z-fn", "t-zeta", [["z-mqtt"]]),
        n("z-mqtt", "mqtt out", "t-zeta", topic="t", qos="", retain="", broker="c-shared"),
        n("z-link", "link out", "t-zeta", mode="link", links=["a-link"]),
        {"id": "z-group", "type": "group", "z": "t-zeta", "name": "sensors", "style": {"label": True},
         "nodes": ["z-in", "z-fn"], "x": 100, "y": 60, "w": 300, "h": 100},
        n("a-link", "link in", "t-alpha", [["a-sub"]], links=["z-link"]),
        n("a-sub", "subflow:sf-outer", "t-alpha", [["a-text"]]),
        n("a-text", "ui_text", "t-alpha", group="ui-group-used", order=1, label="value"),
        n("a-legacy", "mqtt out", "t-alpha", topic="legacy", qos="", retain="", broker="c-legacy"),
        n("off-fn", "function", "t-off", [[]], func="return null;", outputs=1),
        n("m-mqtt", "mqtt out", "t-mid", topic="m", qos="", retain="", broker="c-shared"),
        {"id": "m-local", "type": "mqtt-broker", "z": "t-mid", "name": "tab-scoped", "broker": "local.invalid",
         "port": "1883", "autoConnect": False},
    ]


def comparable(nodes: list[dict]) -> list[dict]:
    """The nodes as compared: everything, in order, but "z": "" (dropped by the canonical form: Node-RED
    treats it as no z)."""
    return [{k: v for k, v in node.items() if not (k == "z" and v == "")} for node in nodes]


def test_a_whole_instance_syncs_into_an_empty_one_node_for_node_in_the_same_tab_order(site: Workspace,
                                                                                      pair: tuple[NodeRed, NodeRed]) -> None:
    """Export, promote, sync into an empty Node-RED: every node arrives equal, the tabs in the source's order,
    env lists unchanged; the target exports to the very same tree."""
    source, target = pair
    source.deploy(rich_instance())
    out = engine(site).export("source")
    assert not out.failed and not out.problems, (out.failed, out.problems)
    tree = site.git("ls-tree", "-r", "--name-only", "env/source", cwd=site.repo).split()
    jsons = [p for p in tree if p.endswith(".json")]
    assert jsons == ["flows/_instance/1.json", "flows/alpha/2.1.json", "flows/mid/1.json", "flows/standby/1.json",
                     "flows/zeta/3.json"]
    # the rest: function code as sidecar files, each in the folder of its flow (the split form)
    assert all(p.rsplit("/", 1)[0] + ".json" in jsons and p.endswith(".js") for p in tree if p not in jsons)
    instance = in_git(site, "flows/_instance/1.json", ref="env/source")
    assert instance["tabs"] == ["t-zeta", "t-alpha", "t-off", "t-mid"]
    assert [x["id"] for x in instance["configs"]] == ["c-unused", "gc", "ui-base", "ui-group-empty"]
    assert [x["id"] for x in instance["subflows"]] == ["sf-spare", "sf-spare-fn"]
    zeta = in_git(site, "flows/zeta/3.json", ref="env/source")
    assert zeta["tab"]["env"] == [{"name": "REGION", "value": "eu", "type": "str"},
                                  {"name": "FLOW_VERSION", "type": "str"},
                                  {"name": "LIMIT", "value": "10", "type": "num"}]
    assert "env" not in in_git(site, "flows/alpha/2.1.json", ref="env/source")["tab"]
    legacy = next(c for c in in_git(site, "flows/alpha/2.1.json", ref="env/source")["configs"] if c["id"] == "c-legacy")
    assert "z" not in legacy
    check = schema_for(None, "node-red")  # the published schema of these documents
    assert [(rel, check(in_git(site, rel, ref="env/source"))) for rel in jsons if check(in_git(site, rel, ref="env/source"))] == []

    promote_to_target(site)
    synced = engine(site).sync("target")
    assert not synced.failed and not synced.problems, (synced.failed, synced.problems)
    assert synced.health_checked == 5 and not synced.quarantined
    src, tgt = source.flows()[1], target.flows()[1]
    by_id = lambda nodes: {x["id"]: x for x in comparable(nodes)}  # noqa: E731
    assert by_id(tgt) == by_id(src)
    tabs = lambda nodes: [x["id"] for x in nodes if x["type"] == "tab"]  # noqa: E731
    assert tabs(tgt) == tabs(src) == ["t-zeta", "t-alpha", "t-off", "t-mid"]
    assert engine(site).sync("target", dry_run=True).plan.changes == ()
    assert engine(site).export("target").commit is None  # the target reads as the very same documents
    assert site.git("rev-parse", "env/target^{tree}", cwd=site.repo) == site.git("rev-parse", "env/source^{tree}",
                                                                                 cwd=site.repo)


def test_the_tab_order_of_git_is_deployed_and_a_new_tab_must_be_listed(site: Workspace,
                                                                        pair: tuple[NodeRed, NodeRed]) -> None:
    """Reordering /tabs in git reorders the editor's tabs; a new flow missing from /tabs is refused saying so,
    and lands where /tabs puts it once listed."""
    source, target = pair
    source.deploy([tab("t-b", "b"), tab("t-a", "a")])
    engine(site).export("source")
    promote_to_target(site)
    assert not engine(site).sync("target").failed
    assert [t["id"] for t in target.flows()[1]] == ["t-b", "t-a"]
    c = {"name": "c", "version": "1", "tab": {"id": "t-c", "type": "tab", "disabled": False, "info": ""}}
    push(site, {"flows/c/1.json": c}, branch="env/target")
    out = engine(site).sync("target")
    why = out.failed[FlowKey("c", "1")]
    assert "flows/_instance/1.json /tabs" in why and "'t-c'" in why
    push(site, {"flows/c/1.json": c, "flows/_instance/1.json": {"name": "_instance", "version": "1",
                                                                 "tabs": ["t-a", "t-c", "t-b"]}}, branch="env/target")
    out = engine(site).sync("target")
    assert not out.failed, out.failed
    assert [t["id"] for t in target.flows()[1] if t["type"] == "tab"] == ["t-a", "t-c", "t-b"]


def test_a_version_written_by_hand_is_appended_and_the_default_adds_nothing(site: Workspace,
                                                                            pair: tuple[NodeRed, NodeRed]) -> None:
    """A document with no FLOW_VERSION entry: version 2 appends one at the end of env; version 1 adds none."""
    _, target = pair
    engine(site)
    docs = {f"flows/{name}/{version}.json": {"name": name, "version": version,
                                             "tab": {"id": f"t-{name}", "type": "tab", "env": env}}
            for name, version, env in (("two", "2", [{"name": "A", "value": "a", "type": "str"}]), ("one", "1", []))}
    push(site, docs, branch="env/target")
    out = engine(site).sync("target")
    assert not out.failed, out.failed
    tabs = target.tabs()
    assert tabs["two"]["env"] == [{"name": "A", "value": "a", "type": "str"},
                                  {"name": "FLOW_VERSION", "value": "2", "type": "str"}]
    assert tabs["one"]["env"] == []
    assert engine(site).sync("target", dry_run=True).plan.changes == ()


def test_two_tabs_with_one_label_are_reported_naming_both_and_left_alone(site: Workspace,
                                                                         pair: tuple[NodeRed, NodeRed]) -> None:
    """Duplicate labels (same version): a problem per tab naming both ids and the fix; neither is in git or
    touched; the other tabs export."""
    source, _ = pair
    source.deploy([tab("t-3", "once"), tab("t-1", "twice"), tab("t-2", "twice")])  # by name: no /tabs
    out = engine(site).export("source")
    assert site.git("ls-tree", "-r", "--name-only", "env/source", cwd=site.repo).split() == ["flows/once/1.json"]
    messages = {p.where: p.message for p in out.problems}
    assert set(messages) == {f"{source.url} tab t-1", f"{source.url} tab t-2"}
    assert all("'t-1', 't-2'" in m and "rename all but one" in m and "FLOW_VERSION" in m for m in messages.values())
    assert out.plan.counts()["invalid"] == 1
    assert {t["id"] for t in source.flows()[1]} == {"t-1", "t-2", "t-3"}


def test_a_tab_labelled_with_the_reserved_name_is_a_problem(site: Workspace, pair: tuple[NodeRed, NodeRed]) -> None:
    """A tab labelled _instance is not exported as a flow: the name is the instance document's."""
    source, _ = pair
    source.deploy([tab("t-x", "_instance"), tab("t-y", "fine")])  # by name
    out = engine(site).export("source")
    assert [p.message for p in out.problems] == [
        "the label '_instance' is reserved for the instance document (flows/_instance/1.json); rename the tab"]
    assert site.git("ls-tree", "-r", "--name-only", "env/source", cwd=site.repo).split() == ["flows/fine/1.json"]
