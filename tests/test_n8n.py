"""n8n through the HTTP driver, against real n8n instances (tests/n8nkit.py) and the real CLI.

The mapping under test is the shipped example (manifests/examples/n8n/reconciler.toml)
with only its URLs pointed at the instances the tests start: acceptance is instance A,
production instance B. Both run at once while this module runs (each takes ~650 MB; the
tests switch between them, and a stop and a start cost ~15 s each time, ~60 s in all when
only one ran at a time); none after it (``Instances(at_once=2)``).

"B equal to A" compares each workflow's name, nodes, connections and settings, with
node ids and credential ids dropped: n8n makes node ids up when a workflow arrives
without them (the reconciler sends none, see the example's ``ignore``), and a
credential's id is each instance's own (a node names it by type and name, and n8n
fills the id in). Everything else a workflow carries is the instance's, not the flow:
its own id, versionId, createdAt/updatedAt and versionCounter, the owner
(``shared``), activation (``active``, ``activeVersion*``, ``triggerCount``), tags,
``meta``, ``pinData``, ``staticData``, ``description`` and ``isArchived``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.n8n_workflows import CREDENTIAL_TYPE, workflow
from reconciler.config import load_config
from reconciler.drivers import Change
from reconciler.drivers.http import HttpDriver
from reconciler.flows import CanonicalFlow, FlowKey, flow_from_doc
from reconciler.names import flow_path
from tests.conftest import REPO_ROOT, Workspace, git_env
from tests.n8nkit import Instances, N8n

EXAMPLE = REPO_ROOT / "manifests/examples/n8n/reconciler.toml"
PORTS = {"a": "127.0.0.1:5678", "b": "127.0.0.1:5679"}  # as the example writes them
KEYS = {"a": "N8N_ACCEPTANCE_API_KEY", "b": "N8N_PRODUCTION_API_KEY"}
SESSION = "N8N_PRODUCTION_SESSION"
CREDENTIAL = "Orders API token"  # what bench.n8n_workflows.workflow() names


def nightly(name: str, value: str = "hello") -> dict[str, Any]:
    """A workflow that may be activated safely: a daily schedule, then a Set node (nothing leaves the machine)."""
    return {
        "name": name,
        "nodes": [
            {"name": "Every day", "type": "n8n-nodes-base.scheduleTrigger", "typeVersion": 1.2, "position": [0, 0],
             "parameters": {"rule": {"interval": [{"field": "days", "daysInterval": 1}]}}},
            {"name": "Greet", "type": "n8n-nodes-base.set", "typeVersion": 3.4, "position": [220, 0],
             "parameters": {"assignments": {"assignments": [
                 {"id": "g1", "name": "greeting", "value": value, "type": "string"}]}, "options": {}}},
        ],
        "connections": {"Every day": {"main": [[{"node": "Greet", "type": "main", "index": 0}]]}},
        "settings": {"executionOrder": "v1"},
    }


def seeds() -> list[dict[str, Any]]:
    """What a team built in acceptance: the bench's realistic workflows, a Unicode name, a setting
    that is not n8n's default, and one to activate."""
    odd = nightly("Bestellungen / 注文 🚀")
    odd["settings"] = {"executionOrder": "v1", "callerPolicy": "any", "timezone": "Europe/Berlin"}
    return [*(workflow(i) for i in range(4)), odd, nightly("nightly greeting")]


def comparable(wf: dict[str, Any]) -> dict[str, Any]:
    """A workflow as the flow it is (module docstring): node ids and credential ids dropped."""
    nodes = []
    for node in wf["nodes"]:
        node = {k: v for k, v in node.items() if k != "id"}
        if "credentials" in node:
            node["credentials"] = {t: {k: v for k, v in ref.items() if k != "id"} for t, ref in node["credentials"].items()}
        nodes.append(node)
    return {"name": wf["name"], "nodes": nodes, "connections": wf["connections"], "settings": wf["settings"]}


def by_name(n8n: N8n) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for wf in n8n.workflows():
        assert wf["name"] not in found, f"two workflows named {wf['name']!r}"
        found[wf["name"]] = wf
    return found


def add_credential(n8n: N8n, name: str = CREDENTIAL) -> str:
    answer = n8n.api("POST", "/credentials", {"name": name, "type": CREDENTIAL_TYPE,
                                                "data": {"name": "X-Token", "value": "not-a-real-token"}})
    assert answer.ok, answer
    return answer.body["id"]


def rel(name: str) -> str:
    return flow_path("flows", name, "1")


@dataclass
class Site:
    """The two instances, both running, and the workspace whose config points at them."""

    instances: Instances
    mp: pytest.MonkeyPatch
    ws: Workspace
    keys: list[str] = field(default_factory=list, repr=False)  # never shown, not even in a failure

    def use(self, which: str) -> N8n:
        n8n = self.instances.use(which)
        self.mp.setenv(KEYS[which], n8n.api_key)
        if which == "b":
            self.mp.setenv(SESSION, n8n.session())
        self.keys = [n.api_key for n in self.instances.made.values()]
        self.ws.config.write_text(self.config_text())
        return n8n

    def config_text(self) -> str:
        text = EXAMPLE.read_text()
        for which, n8n in self.instances.made.items():
            text = text.replace(PORTS[which], f"127.0.0.1:{n8n.port}")
        return text

    def cli(self, *args: str, rc: int = 0) -> str:
        """The real CLI; what it printed (stdout, then stderr), which must never hold an API key or a session.
        With --json, stdout alone."""
        self.ws.config.write_text(self.config_text())
        proc = self.ws.cli(*args)
        out = proc.stdout + proc.stderr
        assert proc.returncode == rc, f"reconciler {' '.join(args)} -> {proc.returncode}\n{out}"
        assert not any(key in out for key in self.keys) and "n8n-auth=" not in out
        return proc.stdout if "--json" in args else out

    def push(self, edits: dict[str, Callable[[dict[str, Any]], Any] | None], message: str = "edit") -> None:
        """The user edits env/production in a clone and pushes: file -> mutate (None deletes it)."""
        clone = self.ws.root / "user"
        if clone.exists():
            self.ws.git("pull", "-q", cwd=clone)
        else:
            self.ws.clone("env/production", name="user")
        for path, mutate in edits.items():
            target = clone / path
            if mutate is None:
                target.unlink()
                continue
            doc = json.loads(target.read_text()) if target.exists() else {}
            doc = mutate(doc) or doc
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(doc, indent=2, ensure_ascii=False))
        self.ws.git("add", "-A", cwd=clone)
        self.ws.git("commit", "-q", "-m", message, cwd=clone)
        self.ws.git("push", "-q", "origin", "env/production", cwd=clone)

    def show(self, ref: str, path: str) -> dict[str, Any]:
        return json.loads(self.ws.git("show", f"{ref}:{path}", cwd=self.ws.repo))

    def driver(self) -> HttpDriver:
        env = load_config(self.ws.config).env("production")
        return env.build_driver()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("n8n-site")
    (root / "ws").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        s = Site(Instances(root / "n8n", at_once=2), mp, Workspace(root / "ws"))
        try:
            yield s
        finally:
            s.instances.stop()


@dataclass(frozen=True)
class Promoted:
    a: list[dict[str, Any]]  # acceptance's workflows as exported


@pytest.fixture(scope="module")
def promoted(site: Site) -> Promoted:
    """A seeded and exported; env/production branched from env/acceptance; B (empty, with the
    credential) synced from it."""
    a = site.use("a")
    a.reset()
    add_credential(a)
    for wf in seeds():
        a.create(wf)
    out = site.cli("export", "acceptance")
    assert "exported to env/acceptance" in out
    exported = a.workflows()
    site.ws.git("branch", "env/production", "env/acceptance", cwd=site.ws.repo)
    b = site.use("b")
    b.reset()
    add_credential(b)
    assert b.workflows() == []
    site.cli("sync", "production")
    return Promoted(exported)


# -- A into an empty B, and back and forth -----------------------------------------------------------


def test_workflows_exported_from_a_and_synced_into_an_empty_b_are_equal_there(site: Site, promoted: Promoted) -> None:
    """Every workflow of A is in B as it is in A (the fields compared: module docstring), credentials
    resolved to B's own; a second sync changes nothing."""
    b = site.use("b")
    there = by_name(b)
    assert sorted(there) == sorted(w["name"] for w in promoted.a)
    for wf in promoted.a:
        assert comparable(there[wf["name"]]) == comparable(wf), wf["name"]
    (cred,) = b.credentials()
    refs = [n["credentials"][CREDENTIAL_TYPE] for w in there.values() for n in w["nodes"] if "credentials" in n]
    assert refs and all(r == {"id": cred["id"], "name": CREDENTIAL} for r in refs)
    assert there["Bestellungen / 注文 🚀"]["settings"]["callerPolicy"] == "any"  # not n8n's default: it travels

    out = site.cli("sync", "production")
    assert f"in sync {len(promoted.a)} · pending 0" in out
    after = by_name(b)
    assert {n: (w["id"], w["versionId"], w["updatedAt"]) for n, w in after.items()} == \
        {n: (w["id"], w["versionId"], w["updatedAt"]) for n, w in there.items()}
    site.cli("plan", "production")


def test_an_edit_in_a_is_one_commit_a_merge_promotes_and_b_applies_in_place(site: Site, promoted: Promoted) -> None:
    """Edited in A's editor, exported as one commit touching one file, merged into env/production with
    git, synced: the same workflow of B (same id, no copy) holds the edit, and stays active."""
    b = site.use("b")
    before = by_name(b)
    target = before["nightly greeting"]
    assert b.api("POST", f"/workflows/{target['id']}/activate").ok  # activation is B's own: it must survive

    a = site.use("a")
    wf = by_name(a)["nightly greeting"]
    wf["nodes"][1]["parameters"]["assignments"]["assignments"][0]["value"] = "good evening"
    a.update(wf["id"], {k: wf[k] for k in ("name", "nodes", "connections", "settings")})
    out = site.cli("export", "acceptance")
    commit = re.search(r"exported to env/acceptance as ([0-9a-f]{40})", out)
    assert commit, out
    files = site.ws.git("show", "--name-only", "--format=", commit.group(1), cwd=site.ws.repo).split()
    assert files == [rel("nightly greeting")]

    clone = site.ws.clone("env/production", name="promoter")
    site.ws.git("merge", "-q", "--no-ff", "-m", "promote the evening greeting", "origin/env/acceptance", cwd=clone)
    site.ws.git("push", "-q", "origin", "env/production", cwd=clone)

    b = site.use("b")
    out = site.cli("sync", "production")
    assert "nightly greeting@1" in out and "✓" in out
    after = by_name(b)
    assert sorted(after) == sorted(before) and {n: w["id"] for n, w in after.items()} == \
        {n: w["id"] for n, w in before.items()}
    now = after["nightly greeting"]
    assert now["nodes"][1]["parameters"]["assignments"]["assignments"][0]["value"] == "good evening"
    assert now["active"] is True
    site.cli("plan", "production")


# -- B alone: drift, prune, refusals ---------------------------------------------------------------


@pytest.fixture
def prod(site: Site, tmp_path: Path) -> N8n:
    """B emptied, with the credential and three workflows, exported into a fresh repository."""
    b = site.use("b")
    b.reset()
    add_credential(b)
    for wf in (workflow(0), workflow(1), nightly("nightly greeting")):
        b.create(wf)
    site.ws = Workspace(tmp_path)
    site.use("b")
    site.cli("export", "production")
    return b


def test_drift_in_b_is_restored_in_place_and_kept_on_the_drift_branch(site: Site, prod: N8n) -> None:
    """drift = restore: git's version goes back into the same workflow; the edit is on drift/production."""
    wf = by_name(prod)["nightly greeting"]
    wf["nodes"][1]["parameters"]["assignments"]["assignments"][0]["value"] = "edited in the UI"
    prod.update(wf["id"], {k: wf[k] for k in ("name", "nodes", "connections", "settings")})
    out = site.cli("sync", "production")
    assert "nightly greeting@1" in out and "live versions saved to drift/production" in out
    now = by_name(prod)
    assert len(now) == 3 and now["nightly greeting"]["id"] == wf["id"]
    assert now["nightly greeting"]["nodes"][1]["parameters"]["assignments"]["assignments"][0]["value"] == "hello"
    saved = site.show("drift/production", rel("nightly greeting"))
    assert saved["nodes"][1]["parameters"]["assignments"]["assignments"][0]["value"] == "edited in the UI"
    site.cli("plan", "production")


def test_a_workflow_deleted_in_git_is_deleted_from_b(site: Site, prod: N8n) -> None:
    """prune = true: the deletion reaches n8n (by id); the others stay as they are."""
    before = by_name(prod)
    site.push({rel("bench orders 00001"): None}, "retire the schedule")
    site.cli("sync", "production")
    after = by_name(prod)
    assert sorted(after) == sorted(set(before) - {"bench orders 00001"})
    assert all(after[n]["versionId"] == before[n]["versionId"] for n in after)
    assert site.show("drift/production", rel("bench orders 00001"))["name"] == "bench orders 00001"


def test_workflows_b_cannot_take_are_refused_with_a_clear_message_while_the_rest_syncs(site: Site, prod: N8n) -> None:
    """A credential B lacks is refused before import (node, type, name); a node n8n refuses is refused
    with n8n's own words; the good workflow is created."""
    crm = workflow(10, credential=(None, "CRM token"))
    crm["name"] = "needs the CRM"
    odd = nightly("has a coloured node")
    odd["nodes"][1]["color"] = "red"
    site.push({rel("needs the CRM"): lambda d: crm, rel("has a coloured node"): lambda d: odd,
               rel("fresh"): lambda d: nightly("fresh")}, "three new workflows")
    out = site.cli("sync", "production", rc=1)
    assert "node 'Notify ERP' uses credential httpHeaderAuth 'CRM token', which production does not have" in out
    assert "request/body/nodes/1 must NOT have additional properties" in out
    names = set(by_name(prod))
    assert "fresh" in names and not names & {"needs the CRM", "has a coloured node"}


def test_a_hand_written_workflow_with_server_fields_is_refused_naming_them(site: Site, prod: N8n) -> None:
    """A download from n8n's editor (id, active, tags, callerPolicy spelled out) could never read back as
    written: refused before anything is sent, naming each field; written without them, it syncs and stays."""
    site.push({rel("downloaded"): lambda d: {**nightly("downloaded"), "id": "x1", "active": False, "tags": []}})
    out = site.cli("sync", "production", rc=1)
    assert "not imported: /active is not one of the environment's fields" in out and "(and 2 more)" in out
    assert "downloaded" not in by_name(prod)
    site.push({rel("downloaded"): lambda d: nightly("downloaded")})
    site.cli("sync", "production")
    site.cli("plan", "production")  # n8n's callerPolicy and node ids do not read as drift


def test_a_setting_removed_in_git_is_refused_since_n8n_would_keep_it(site: Site, prod: N8n) -> None:
    """n8n merges settings on an update: a timezone dropped in git would stay, so the update says so."""
    site.push({rel("bench orders 00000"): lambda d: {**d, "settings": {"executionOrder": "v1"}}})
    out = site.cli("sync", "production", rc=1)
    assert "the platform keeps /settings/timezone on an update" in out
    assert by_name(prod)["bench orders 00000"]["settings"]["timezone"] == "Europe/Amsterdam"


def test_a_workflow_created_in_b_meanwhile_is_not_duplicated(site: Site, prod: N8n) -> None:
    """n8n allows two workflows of one name: before a create the driver lists the name and refuses."""
    d = site.driver()
    try:
        d.export()
        prod.create(nightly("late"))  # made in the editor after the reconciler read the instance
        got = flow_from_doc(nightly("late"), d.identity, d.rules, where="test")
        assert isinstance(got, CanonicalFlow)
        failed = d.apply([Change(FlowKey("late", "1"), got.data, None)])
    finally:
        d.close()
    assert "already exists in the platform" in failed[FlowKey("late", "1")]
    assert [w["name"] for w in prod.workflows()].count("late") == 1


def test_two_workflows_of_one_name_are_reported_for_that_flow_and_left_alone(site: Site, prod: N8n) -> None:
    """A second "nightly greeting" made in the editor: that flow is invalid (both ids named), nothing picks one."""
    first = by_name(prod)["nightly greeting"]
    twin = prod.create(nightly("nightly greeting", "a twin"))
    (step,) = [s for s in json.loads(site.cli("plan", "production", "--json", rc=1))["steps"]
               if s["name"] == "nightly greeting"]
    assert step["action"] == "invalid" and first["id"] in step["reason"] and twin["id"] in step["reason"]
    out = site.cli("sync", "production", rc=1)
    assert "invalid 1" in out and "both hold nightly greeting@1" in out
    twins = {w["id"]: w["versionId"] for w in prod.workflows() if w["name"] == "nightly greeting"}
    assert twins == {first["id"]: first["versionId"], twin["id"]: twin["versionId"]}


def test_more_than_one_page_of_workflows_is_exported_whole(site: Site, prod: N8n) -> None:
    """251 workflows: two pages of n8n's largest (250), the cursor followed, every one in git."""
    for i in range(248):
        prod.create(nightly(f"many {i:03d}"))
    site.cli("export", "production")
    listed = site.ws.git("ls-tree", "-r", "--name-only", "env/production", cwd=site.ws.repo).split("\n")
    assert len([p for p in listed if p.endswith("/1.json")]) == 251
    assert "in sync 251 · pending 0" in site.cli("plan", "production")


# -- the example, as its header says ------------------------------------------------------------------


def test_the_example_header_runs_as_printed(site: Site, promoted: Promoted, tmp_path: Path) -> None:
    """From a checkout's root: export acceptance, branch production with git, plan and sync it, status."""
    b = site.use("b")
    b.reset()
    add_credential(b)
    header = EXAMPLE.read_text()
    lines = [m.group(1) for m in re.finditer(r"^#   ((?:export|reconciler|git) .+)$", header, flags=re.M)]
    assert len(lines) == 6
    exported = lines[0]
    assert exported.startswith("export ") and set(re.findall(r"(N8N_\w+)=", exported)) == {*KEYS.values(), SESSION}
    copy = tmp_path / "manifests/examples/n8n/reconciler.toml"
    copy.parent.mkdir(parents=True)
    env = dict(git_env(tmp_path), PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    env.pop("RECONCILER_CONFIG", None)
    for line in lines[1:]:
        if "export acceptance" in line:
            site.use("a")
        elif "production" in line and "git " not in line:
            site.use("b")
        copy.write_text(site.config_text())
        env.update({k: os.environ[k] for k in (*KEYS.values(), SESSION) if k in os.environ})
        out = subprocess.run(["bash", "-ec", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode in (0, 2), f"{line}\n{out.stdout}\n{out.stderr}"  # 2: plan says changes are pending
    assert "production" in out.stdout and "in sync 6" in out.stdout, out.stdout
