"""The split form against real Node-RED instances (4 and 5): the example flows shipped in the node-red
package and a set of function-heavy flows go Node-RED -> export -> git (JSON + sidecar files) -> a
second, empty Node-RED -> export again, and every byte is the same: the canonical documents, and the
JSON and each sidecar file git would hold for the second instance's flows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler.canonical import parse_json
from reconciler.config import load_config
from reconciler.drivers import Change
from reconciler.drivers.node_red import NodeRedDriver
from reconciler.engine import Engine
from reconciler.flows import CanonicalFlow
from reconciler.gitform import git_form, read_git_flow
from reconciler.templating import Templating
from tests.conftest import Workspace, git_env
from tests.nodered import VERSIONS, NodeRed, start_node_red
from tests.test_node_red import example_batches

SOURCE, TARGET = "RECONCILER_TEST_NR_SOURCE", "RECONCILER_TEST_NR_TARGET"


@pytest.fixture(scope="module", params=VERSIONS)
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Two instances of one major version whose flows never run (the examples exec commands, open sockets)."""
    a = start_node_red(tmp_path_factory.mktemp(f"sidecars-{request.param}-a"), request.param)
    b = start_node_red(tmp_path_factory.mktemp(f"sidecars-{request.param}-b"), request.param)
    try:
        for nr in (a, b):
            nr.set_state("stop")
        yield a, b
    finally:
        a.close()
        b.close()


def workspace(tmp_path: Path, source: NodeRed, monkeypatch: pytest.MonkeyPatch) -> tuple[Workspace, Engine]:
    monkeypatch.setenv(SOURCE, source.token)
    ws = Workspace(tmp_path)
    ws.config.write_text(f"""[repository]
path = "state/flows.git"

[[environment]]
name = "source"
driver = "node-red"
url = "{source.url}"
token_env = "{SOURCE}"
drift = "adopt"
prune = true
allow_empty = true
""")
    return ws, Engine(load_config(ws.config), create_repository=True)


def round_trip(ws: Workspace, engine: Engine, source: NodeRed, target: NodeRed) -> tuple[int, int]:
    """Export ``source`` into git; read every flow back from git whole; import those into an empty
    ``target``; export it. Returns (flows, sidecar files); asserts byte identity all along."""
    env = engine.config.env("source")
    out = engine.export("source", allow_mass_delete=True)
    assert not out.failed and not out.problems, (out.failed, out.problems)
    a = engine.driver(env).export()
    store = engine.store
    tip = store.tip(env.branch_name)
    entries = store.flows_at(tip, env.folder).flows
    assert set(entries) == set(a.flows)
    from_git = {}
    sidecars = 0
    for key, entry in entries.items():
        got = read_git_flow(store, entry, env, where=str(key), key=key, templating=Templating())
        assert isinstance(got, CanonicalFlow) and got.data == a.flows[key].data, key  # git -> whole, exactly
        from_git[key] = got.data
        sidecars += len(store.flow_files(entry).sidecars)
    target.deploy([])
    b_driver = NodeRedDriver(target.url, env.flow_identity, env.rules, environ={"T": target.token}, token_env="T")
    assert b_driver.apply([Change(k, data, None) for k, data in sorted(from_git.items())]) == {}
    b = b_driver.export()
    for key, flow in a.flows.items():
        assert b.flows[key].data == flow.data, key  # Node-RED -> git -> Node-RED, exactly
        stored = store.flow_files(entries[key])
        again = git_form(parse_json(b.flows[key].data), env, key)
        assert (again.json, dict(again.sidecars)) == (stored.json, dict(stored.sidecars)), key  # and the files git holds
    assert engine.export("source").commit is None  # nothing to export: git holds exactly this
    return len(a.flows), sidecars


def test_the_example_flows_shipped_with_node_red_round_trip_exactly_through_the_split_form(
        pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = pair
    ws, engine = workspace(tmp_path, source, monkeypatch)
    batches, files, tabs = example_batches(source.install)
    flows = sidecars = 0
    try:
        for nodes in batches:
            source.deploy(nodes)
            n, s = round_trip(ws, engine, source, target)
            flows, sidecars = flows + n, sidecars + s
    finally:
        engine.close()
        source.deploy([])
    with capsys.disabled():
        print(f"\nnode-red {source.install.version} examples through the split form: {files} files, {tabs} tabs, "
              f"{flows} flows, {sidecars} sidecar files, all identical")
    assert flows == tabs and sidecars > 100


def function_heavy() -> list[dict[str, Any]]:
    """Tabs full of code: every text shape a sidecar must give back exactly, in nodes and in a subflow."""
    texts = ["return msg;", "return msg;\n", "\n\nreturn msg;\n\n", "const a = 1;\r\nreturn msg;\r\n",
             "// ünïcødé ✓ 🚀\nmsg.payload = '€';\nreturn msg;", "\treturn msg; // tab", "x\r",
             "msg.payload = {\"$sidecar\": \"fn-0-0.func.js\"};\nreturn msg;", "return `${msg.payload}`;",
             "\n".join(f"msg.n{i} = {i};" for i in range(400)) + "\nreturn msg;"]
    nodes: list[dict[str, Any]] = [
        {"id": "sf-heavy", "type": "subflow", "name": "heavy", "info": "A subflow\nwith notes", "category": "",
         "in": [{"x": 40, "y": 40, "wires": [{"id": "sf-fn"}]}], "out": [{"x": 400, "y": 40, "wires": [{"id": "sf-fn", "port": 0}]}],
         "env": [], "color": "#DDAA99"},
        {"id": "sf-fn", "type": "function", "z": "sf-heavy", "name": "inside", "func": "return msg; // in a subflow",
         "outputs": 1, "timeout": 0, "noerr": 0, "initialize": "// init\n", "finalize": "// bye", "libs": [],
         "x": 200, "y": 40, "wires": [[]]},
    ]
    for t in range(3):
        tab = f"tab-heavy-{t}"
        nodes.append({"id": tab, "type": "tab", "label": f"heavy {t}", "disabled": False, "info": f"# Tab {t}\n\nnotes",
                      "env": [{"name": "FLOW_VERSION", "value": "1", "type": "str"}]})
        for i, text in enumerate(texts):
            nodes.append({"id": f"fn-{t}-{i}", "type": "function", "z": tab, "name": f"f{i}", "func": text, "outputs": 1,
                          "timeout": 0, "noerr": 0, "initialize": "" if i % 2 else "let n = 0;", "finalize": "",
                          "libs": [], "x": 100 + 20 * i, "y": 60 * (i + 1), "wires": [[]]})
        for j, fmt in enumerate(("handlebars", "html", "json", "javascript", "css", "markdown", "python", "sql", "yaml", "text")):
            nodes.append({"id": f"tpl-{t}-{j}", "type": "template", "z": tab, "name": "", "field": "payload",
                          "fieldType": "msg", "format": fmt, "syntax": "mustache", "template": f"{fmt}: {{{{payload}}}}\n",
                          "output": "str", "x": 600, "y": 40 * (j + 1), "wires": [[]]})
        nodes.append({"id": f"note-{t}", "type": "comment", "z": tab, "name": "read me", "info": "Line 1\n\nLine 3\n",
                      "x": 800, "y": 40, "wires": []})
        nodes.append({"id": f"use-{t}", "type": "subflow:sf-heavy", "z": tab, "x": 900, "y": 40, "wires": [[]]})
    return nodes


def test_function_heavy_flows_round_trip_exactly_through_the_split_form(
        pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = pair
    ws, engine = workspace(tmp_path, source, monkeypatch)
    try:
        source.deploy(function_heavy())
        flows, sidecars = round_trip(ws, engine, source, target)
    finally:
        engine.close()
        source.deploy([])
    assert flows == 3
    # 10 functions (+5 initialize) + 10 templates + tab info + comment per tab, and the subflow's 4
    assert sidecars == 3 * (10 + 5 + 10 + 1 + 1 + 4)
    listing = subprocess.run(["git", "ls-tree", "-r", "--name-only", "env/source"],
                             cwd=ws.repo, env=git_env(tmp_path), capture_output=True, text=True, check=True).stdout
    assert "fn-0-7.func.js" in listing and "tpl-0-0.template.mustache" in listing and "sf-fn.finalize.js" in listing


@pytest.fixture(scope="module", params=VERSIONS)
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    nr = start_node_red(tmp_path_factory.mktemp(f"sidecars-{request.param}-run"), request.param)
    yield nr
    nr.close()


def test_a_function_edited_as_a_file_in_git_runs_in_node_red_and_an_editor_edit_is_saved_as_a_file(
        running: NodeRed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder of exported tabs (acceptance) and a Node-RED (production) share the split form."""
    running.reset()
    monkeypatch.setenv(TARGET, running.token)
    ws = Workspace(tmp_path)
    ws.env_dir("acceptance").mkdir(parents=True)
    ws.config.write_text(f"""[repository]
path = "state/flows.git"

[[environment]]
name = "acceptance"
driver = "directory"
path = "envs/acceptance"
drift = "adopt"

[[environment]]
name = "production"
driver = "node-red"
url = "{running.url}"
token_env = "{TARGET}"
drift = "restore"
prune = true
""")
    tab = {"id": "tab-calc", "type": "tab", "disabled": False, "info": ""}
    doc = {"name": "calc", "version": "1", "tab": tab, "nodes": [
        {"id": "calc-fn", "type": "function", "z": "tab-calc", "name": "double", "func": "msg.payload *= 2;\nreturn msg;",
         "outputs": 1, "timeout": 0, "noerr": 0, "initialize": "", "finalize": "", "libs": [], "x": 300, "y": 80,
         "wires": [[]]}]}
    ws.put("acceptance", "calc.json", doc)
    ws.cli("export", "acceptance", check=True)
    ws.branch("env/production", "env/acceptance")
    ws.cli("sync", "production", check=True)
    assert running.node("calc-fn")["func"] == "msg.payload *= 2;\nreturn msg;"
    clone = ws.clone("env/production", "ada")
    js = clone / "flows/calc/1/calc-fn.func.js"
    assert js.read_text() == "msg.payload *= 2;\nreturn msg;\n"
    js.write_text("msg.payload *= 3;\nreturn msg;\n")
    ws.git("commit", "-qam", "calc: triple", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    ws.cli("sync", "production", check=True)
    assert running.node("calc-fn")["func"] == "msg.payload *= 3;\nreturn msg;"

    def typed(nodes: list[dict[str, Any]]) -> None:
        next(n for n in nodes if n.get("id") == "calc-fn")["func"] = "return null; // typed in the editor"

    running.edit(typed)
    ws.cli("sync", "production", check=True)
    assert running.node("calc-fn")["func"] == "msg.payload *= 3;\nreturn msg;"
    saved = ws.git("show", "drift/production:flows/calc/1/calc-fn.func.js", cwd=ws.repo)
    assert saved == "return null; // typed in the editor\n"
