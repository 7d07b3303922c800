"""The split form end to end: real git repositories, the `git` CLI playing the people who clone, edit,
merge and push, the real `reconciler` command line, directory environments holding Node-RED and
event-processing flows."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Workspace

ACC_API, PROD_API = "https://api.acc.example.com", "https://api.prod.example.com"
PRICE = "const total = msg.payload.qty * msg.payload.price;\nmsg.payload.total = total;\nreturn msg;"
SHIP = "if (msg.payload.total > 100) {\n    msg.payload.shipping = 0;\n}\nreturn msg;"
DATA = Path(__file__).parent / "data" / "sidecars"


def orders(price: str = PRICE, ship: str = SHIP, *, x: int = 300, api: str = ACC_API, **extra: Any) -> dict[str, Any]:
    """A Node-RED flow as the directory holds it: two function nodes, a template, the tab's description."""
    return {"name": "orders", "version": "1", "tab": {"id": "t1", "type": "tab", "info": "Takes orders"},
            "nodes": [
                {"id": "price", "type": "function", "z": "t1", "name": "price", "outputs": 1, "x": x, "y": 80,
                 "func": f"const api = '{api}/prices';\n" + price, "initialize": "", "finalize": "", "wires": [["ship"]]},
                {"id": "ship", "type": "function", "z": "t1", "name": "shipping", "outputs": 1, "x": 500, "y": 80,
                 "func": ship, "initialize": "", "finalize": "", "wires": [["page"]]},
                {"id": "page", "type": "template", "z": "t1", "format": "html", "syntax": "mustache", "x": 700, "y": 80,
                 "template": "<h1>{{payload.total}}</h1>\n", "wires": [[]]}], **extra}


def setup(ws: Workspace, *, acceptance: str = "", production: str = "") -> None:
    """acceptance (adopt) and production (restore, prune), each its own API address; orders exported and synced."""
    for env in ("acceptance", "production"):
        ws.env_dir(env).mkdir(parents=True, exist_ok=True)
    (ws.root / "secrets").mkdir(exist_ok=True)
    (ws.root / "secrets" / "DB_PASSWORD").write_text("hunter2-very-secret\n")
    ws.config.write_text(f"""[repository]
path = "state/flows.git"

[[environment]]
name = "acceptance"
driver = "directory"
path = "envs/acceptance"
drift = "adopt"
secrets_dir = "secrets"
secrets_env_prefix = ""
{acceptance}
[environment.params]
API = "{ACC_API}"

[[environment]]
name = "production"
driver = "directory"
path = "envs/production"
drift = "restore"
prune = true
secrets_dir = "secrets"
secrets_env_prefix = ""
{production}
[environment.params]
API = "{PROD_API}"
""")
    ws.put("acceptance", "orders.json", orders())
    ws.cli("export", "acceptance", check=True)
    ws.branch("env/production", "env/acceptance")
    ws.cli("sync", "production", check=True)


def clone(ws: Workspace, name: str, branch: str = "env/production") -> Path:
    path = ws.clone(branch, name)
    ws.git("config", "user.name", name, cwd=path)
    ws.git("config", "user.email", f"{name}@example.com", cwd=path)
    return path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new))


def live(ws: Workspace, env: str = "production") -> dict[str, Any]:
    return ws.live(env)[("orders", "1")]


def func(doc: dict[str, Any], node: str) -> str:
    return next(n for n in doc["nodes"] if n["id"] == node)["func"]


# -- the layout in git --------------------------------------------------------------------------------


def test_export_keeps_each_function_and_template_in_its_own_file(ws: Workspace) -> None:
    setup(ws)
    files = ws.git("ls-tree", "-r", "--name-only", "env/acceptance", cwd=ws.repo).split()
    assert files == ["flows/orders/1.json", "flows/orders/1/page.template.html", "flows/orders/1/price.func.js",
                     "flows/orders/1/ship.func.js", "flows/orders/1/t1.info.md"]
    doc = json.loads(ws.git("show", "env/acceptance:flows/orders/1.json", cwd=ws.repo))
    assert doc["nodes"][1]["func"] == {"$sidecar": "price.func.js"} or doc["nodes"][0]["func"] == {"$sidecar": "price.func.js"}
    raw = subprocess.run(["git", "show", "env/acceptance:flows/orders/1/ship.func.js"], cwd=ws.repo,
                         capture_output=True, check=True).stdout
    assert raw == SHIP.encode() + b"\n"  # the exact text and one newline
    assert func(live(ws), "ship") == SHIP  # production got the whole flow


def test_a_one_line_change_to_a_function_is_a_one_line_diff_in_git_and_in_the_plan(ws: Workspace) -> None:
    setup(ws)
    ada = clone(ws, "ada")
    ws.git("checkout", "-q", "-b", "vat", cwd=ada)
    edit(ada / "flows/orders/1/price.func.js", "msg.payload.price;", "msg.payload.price * 1.21;")
    ws.git("commit", "-qam", "orders: prices with VAT", cwd=ada)
    ws.git("push", "-q", "origin", "vat", cwd=ada)
    stat = ws.git("diff", "--numstat", "HEAD~1", cwd=ada).split()
    assert stat == ["1", "1", "flows/orders/1/price.func.js"]
    changed = [line for line in ws.git("diff", "HEAD~1", cwd=ada).splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-const total = msg.payload.qty * msg.payload.price;",
                       "+const total = msg.payload.qty * msg.payload.price * 1.21;"]
    plan = ws.cli("plan", "production", "--against", "vat", "--format", "markdown")
    assert plan.returncode == 2, plan.stderr
    fenced = re.findall(r"```diff\n(.*?)```", plan.stdout, re.S)
    code = next(f for f in fenced if "+++ b/flows/orders/1/price.func.js" in f)
    lines = [line for line in code.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert lines == changed
    assert "code changed in flows/orders/1/price.func.js (+1 -1 lines)" in plan.stdout


def test_two_people_editing_different_functions_of_one_flow_merge_without_conflicts(ws: Workspace) -> None:
    setup(ws)
    ada, bob = clone(ws, "ada"), clone(ws, "bob")
    ws.git("checkout", "-q", "-b", "vat", cwd=ada)
    edit(ada / "flows/orders/1/price.func.js", "msg.payload.price;", "msg.payload.price * 1.21;")
    ws.git("commit", "-qam", "orders: VAT", cwd=ada)
    ws.git("push", "-q", "origin", "vat", cwd=ada)
    ws.git("checkout", "-q", "-b", "free-shipping", cwd=bob)
    edit(bob / "flows/orders/1/ship.func.js", "> 100", "> 50")
    ws.git("commit", "-qam", "orders: free shipping from 50", cwd=bob)
    ws.git("push", "-q", "origin", "free-shipping", cwd=bob)
    for branch in ("vat", "free-shipping"):
        plan = ws.cli("plan", "production", "--against", branch)
        assert plan.returncode == 2 and "conflict" not in plan.stderr, plan.stdout + plan.stderr
    lead = clone(ws, "lead")
    ws.git("merge", "-q", "--no-edit", "origin/vat", cwd=lead)
    ws.git("merge", "-q", "--no-edit", "origin/free-shipping", cwd=lead)  # different files: no conflict
    ws.git("push", "-q", "origin", "env/production", cwd=lead)
    ws.cli("sync", "production", check=True)
    doc = live(ws)
    assert "price * 1.21;" in func(doc, "price") and "> 50" in func(doc, "ship")


def test_the_same_code_exported_by_two_environments_merges_cleanly(ws: Workspace) -> None:
    """Both environments get the same edit (each with its own API address); each exports it; merging their
    branches has nothing to resolve: the files are the same, placeholders included."""
    setup(ws)
    ws.config.write_text(ws.config.read_text().replace('drift = "restore"', 'drift = "adopt"'))
    for env, api in (("acceptance", ACC_API), ("production", PROD_API)):
        ws.put(env, "orders.json" if env == "acceptance" else "orders@1.json",
               orders(price=PRICE.replace("qty", "quantity"), api=api))
        ws.cli("export", env, check=True)
    lead = clone(ws, "lead")
    ws.git("merge", "-q", "--no-edit", "origin/env/acceptance", cwd=lead)  # no conflict
    assert ws.git("diff", "origin/env/acceptance", "--stat", "--", "flows", cwd=lead) == ""
    assert "quantity" in (lead / "flows/orders/1/price.func.js").read_text()


# -- parameters and secrets ---------------------------------------------------------------------------


def test_placeholders_inside_code_are_put_back_on_export_and_substituted_per_environment(ws: Workspace) -> None:
    setup(ws)
    js = ws.git("show", "env/acceptance:flows/orders/1/price.func.js", cwd=ws.repo)
    assert js.startswith("const api = '${param:API}/prices';") and ACC_API not in js
    assert func(live(ws), "price").startswith(f"const api = '{PROD_API}/prices';")
    everything = ws.git("log", "--all", "-p", cwd=ws.repo)
    assert ACC_API not in everything and PROD_API not in everything


def test_a_secret_pasted_inside_a_function_body_is_refused(ws: Workspace) -> None:
    setup(ws)
    ws.put("acceptance", "orders.json", orders(ship=SHIP + "\n// password: hunter2-very-secret"))
    out = ws.cli("export", "acceptance")
    assert out.returncode == 1
    assert "/nodes/1/func (its sidecar ship.func.js): holds the value of secret 'DB_PASSWORD'" in out.stdout + out.stderr
    assert "hunter2" not in ws.git("log", "--all", "-p", cwd=ws.repo)
    # ... and pushed as a file, validate and promote refuse it, naming the file.
    ada = clone(ws, "ada", "env/acceptance")
    ws.git("checkout", "-q", "-b", "leak", cwd=ada)
    edit(ada / "flows/orders/1/ship.func.js", "return msg;", "const pw = 'hunter2-very-secret';\nreturn msg;")
    ws.git("commit", "-qam", "oops", cwd=ada)
    ws.git("push", "-q", "origin", "leak", cwd=ada)
    check = ws.cli("validate", "--branch", "leak")
    assert check.returncode == 1
    assert "leak:flows/orders/1/ship.func.js:/nodes/1/func: secret scan: holds the value of secret" in check.stdout
    ws.git("push", "-q", "origin", "leak:env/acceptance", cwd=ada)
    promote = ws.cli("promote", "acceptance", "production")
    assert promote.returncode == 1 and "flows/orders/1/ship.func.js:/nodes/1/func" in promote.stderr


# -- what reading refuses, naming the file ------------------------------------------------------------


def push_files(ws: Workspace, person: Path, message: str, *, branch: str = "env/production") -> None:
    ws.git("add", "-A", cwd=person)
    ws.git("commit", "-qm", message, cwd=person)
    ws.git("push", "-q", "origin", f"HEAD:{branch}", cwd=person)


@pytest.mark.parametrize(("case", "expect"), [
    ("missing", "flows/orders/1/ship.func.js: missing: flows/orders/1.json refers to it at /nodes/1/func"),
    ("stray", "flows/orders/1/old.func.js: no field of flows/orders/1.json refers to this sidecar"),
    ("outside", "flows/orders/1.json:/nodes/1/func: the sidecar reference '../../billing/1/ship.func.js' leaves the flow's folder"),
    ("symlink", "flows/orders/1/ship.func.js: a symlink, not a file"),
    ("folder", "flows/orders/1/sub: a folder, not a file"),
    ("latin1", "flows/orders/1/ship.func.js: not UTF-8 text"),
    ("orphan", "flows/orders/1/: a sidecar folder without its flow"),
    ("absolute", "flows/orders/1.json:/nodes/1/func: the sidecar reference '/etc/passwd' leaves the flow's folder"),
    ("subfolder", "flows/orders/1.json:/nodes/1/func: the sidecar reference 'sub/ship.func.js' leaves the flow's folder"),
    ("mixed", "flows/orders/1/ship.func.js: no field of flows/orders/1.json refers to this sidecar"),
])
def test_a_broken_sidecar_is_refused_naming_the_file_and_the_flow_is_neither_imported_nor_deleted(
        ws: Workspace, case: str, expect: str) -> None:
    setup(ws)
    ada = clone(ws, "ada")
    folder = ada / "flows/orders/1"
    if case == "missing":
        (folder / "ship.func.js").unlink()
    elif case == "stray":
        (folder / "old.func.js").write_text("return 1;\n")
    elif case == "outside":
        edit(ada / "flows/orders/1.json", '"ship.func.js"', '"../../billing/1/ship.func.js"')
    elif case == "symlink":
        (folder / "ship.func.js").unlink()
        (folder / "ship.func.js").symlink_to("/etc/passwd")
    elif case == "folder":
        (folder / "sub").mkdir()
        (folder / "sub" / "x.js").write_text("x\n")
    elif case == "latin1":
        (folder / "ship.func.js").write_bytes("// café\nreturn msg;\n".encode("latin-1"))
    elif case == "orphan":
        (ada / "flows/orders/1.json").unlink()
    elif case == "absolute":
        edit(ada / "flows/orders/1.json", '"ship.func.js"', '"/etc/passwd"')
    elif case == "subfolder":
        edit(ada / "flows/orders/1.json", '"ship.func.js"', '"sub/ship.func.js"')
    elif case == "mixed":  # the JSON back in the single-file form for one function, its old file left beside it
        doc = json.loads((ada / "flows/orders/1.json").read_text())
        doc["nodes"][1]["func"] = "return null;"
        (ada / "flows/orders/1.json").write_text(json.dumps(doc, indent=2) + "\n")
    push_files(ws, ada, f"broken: {case}")
    check = ws.cli("validate", "--branch", "env/production")
    assert check.returncode == 1 and expect in check.stdout, check.stdout + check.stderr
    before = live(ws)
    sync = ws.cli("sync", "production")
    assert sync.returncode == 1, sync.stdout + sync.stderr
    assert expect.split(":")[0] in sync.stderr
    assert live(ws) == before  # not imported, not deleted (prune is on)


def test_content_that_only_looks_like_a_reference_reaches_git_escaped_and_the_next_environment_as_it_was(
        ws: Workspace) -> None:
    setup(ws)
    look = {"plain": {"$sidecar": "ship.func.js"}, "deeper": {"$$sidecar": "../../etc/passwd"}, "odd": {"$sidecar": 7}}
    ws.put("acceptance", "orders.json", orders(meta=look))
    ws.cli("export", "acceptance", check=True)
    stored = json.loads(ws.git("show", "env/acceptance:flows/orders/1.json", cwd=ws.repo))
    assert stored["meta"] == {"plain": {"$$sidecar": "ship.func.js"}, "deeper": {"$$$sidecar": "../../etc/passwd"},
                              "odd": {"$$sidecar": 7}}
    assert ws.cli("validate", "--branch", "env/acceptance").returncode == 0
    assert ws.cli("plan", "acceptance").returncode == 0  # git's flow read back is the live one
    ws.git("branch", "-f", "env/production", "env/acceptance", cwd=ws.repo)
    ws.cli("sync", "production", check=True)
    assert live(ws)["meta"] == look


def test_sidecars_with_crlf_and_without_a_trailing_newline_reach_the_environment_exactly(ws: Workspace) -> None:
    setup(ws)
    ada = clone(ws, "ada")
    (ada / "flows/orders/1/ship.func.js").write_bytes(b"line 1\r\nline 2\r\nreturn msg;")
    (ada / "flows/orders/1/page.template.html").write_bytes(b"<p>\n\n</p>\n\n")
    push_files(ws, ada, "windows editor")
    ws.cli("sync", "production", check=True)
    doc = live(ws)
    assert func(doc, "ship") == "line 1\r\nline 2\r\nreturn msg;"
    assert next(n for n in doc["nodes"] if n["id"] == "page")["template"] == "<p>\n\n</p>\n"
    assert ws.cli("plan", "production").returncode == 0


# -- drift, rollback, promote, history ------------------------------------------------------------------


def test_a_drifted_function_is_saved_to_the_drift_branch_as_its_file_then_restored(ws: Workspace) -> None:
    setup(ws)
    doc = live(ws)
    next(n for n in doc["nodes"] if n["id"] == "ship")["func"] = "return null; // hot fix"
    ws.put("production", "orders@1.json", doc)
    ws.cli("sync", "production", check=True)
    assert func(live(ws), "ship") == SHIP
    assert ws.git("show", "drift/production:flows/orders/1/ship.func.js", cwd=ws.repo) == "return null; // hot fix\n"


def test_rollback_restores_the_sidecars_too_and_history_lists_a_change_of_code_only(ws: Workspace) -> None:
    setup(ws)
    ada = clone(ws, "ada")
    edit(ada / "flows/orders/1/ship.func.js", "> 100", "> 10")
    push_files(ws, ada, "orders: shipping from 10")
    ws.cli("sync", "production", check=True)
    history = ws.cli("history", "production", "orders", "1", check=True).stdout
    assert "orders: shipping from 10" in history
    ws.cli("rollback", "production", "--to", "env/production~1", "--flow", "orders@1", check=True)
    ws.cli("sync", "production", check=True)
    assert func(live(ws), "ship") == SHIP


def test_promote_as_another_name_moves_the_sidecars_with_the_flow(ws: Workspace) -> None:
    setup(ws)
    out = ws.cli("promote", "acceptance", "production", "--flow", "orders@1", "--as", "orders-v2@2", "--json", check=True)
    branch = json.loads(out.stdout)["branch"]
    files = ws.git("ls-tree", "-r", "--name-only", branch, "--", "flows/orders-v2", cwd=ws.repo).split()
    assert files == ["flows/orders-v2/2.json", "flows/orders-v2/2/page.template.html", "flows/orders-v2/2/price.func.js",
                     "flows/orders-v2/2/ship.func.js", "flows/orders-v2/2/t1.info.md"]
    assert ws.cli("validate", "--branch", branch).returncode == 0


# -- layout -----------------------------------------------------------------------------------------------


def test_layout_only_drift_is_left_with_layout_ignore_and_restored_with_layout_content(ws: Workspace) -> None:
    setup(ws, production='layout = "ignore"')
    ws.put("production", "orders@1.json", orders(x=999, api=PROD_API))
    plan = ws.cli("plan", "production")
    assert plan.returncode == 0, plan.stdout  # in sync: the nodes only moved
    ws.cli("sync", "production", check=True)
    assert live(ws)["nodes"][0]["x"] == 999 or any(n["x"] == 999 for n in live(ws)["nodes"])
    moved_and_edited = orders(x=999, ship="return msg;", api=PROD_API)
    ws.put("production", "orders@1.json", moved_and_edited)
    assert ws.cli("plan", "production").returncode == 2  # content changed: drift
    setup_content = ws.config.read_text().replace('layout = "ignore"', "")
    ws.config.write_text(setup_content)
    ws.put("production", "orders@1.json", orders(x=999, api=PROD_API))
    assert ws.cli("plan", "production").returncode == 2  # layout counts as content by default


def test_layout_only_changes_are_folded_in_the_markdown(ws: Workspace) -> None:
    setup(ws)
    ada = clone(ws, "ada")
    ws.git("checkout", "-q", "-b", "tidy", cwd=ada)
    edit(ada / "flows/orders/1.json", '"x": 500', '"x": 520')
    push_files(ws, ada, "tidy the canvas", branch="tidy")
    md = ws.cli("plan", "production", "--against", "tidy", "--format", "markdown").stdout
    assert "layout only: 1 change" in md
    assert "<details><summary>1 layout-only change (position, size)</summary>" in md


# -- forms: single-file, migration, mixed -----------------------------------------------------------------


def test_the_single_file_form_stores_one_json_per_flow(ws: Workspace) -> None:
    setup(ws, acceptance='form = "single-file"')
    files = ws.git("ls-tree", "-r", "--name-only", "env/acceptance", cwd=ws.repo).split()
    assert files == ["flows/orders/1.json"]
    doc = json.loads(ws.git("show", "env/acceptance:flows/orders/1.json", cwd=ws.repo))
    assert func(doc, "ship") == SHIP


def restore_old_repository(ws: Workspace) -> None:
    shutil.copy(DATA / "reconciler.toml", ws.config)
    shutil.copytree(DATA / "envs", ws.root / "envs")
    ws.git("clone", "-q", "--mirror", str(DATA / "single-file-repo.bundle"), str(ws.repo))
    ws.git("remote", "remove", "origin", cwd=ws.repo)


def test_a_repository_made_by_the_single_file_version_is_read_as_it_is_and_migrated_in_one_commit_per_environment(
        ws: Workspace) -> None:
    restore_old_repository(ws)
    tips = {b: ws.git("rev-parse", b, cwd=ws.repo).strip() for b in ("env/acceptance", "env/production")}
    for env in ("acceptance", "production"):
        plan = ws.cli("plan", env)
        assert plan.returncode == 0, plan.stdout + plan.stderr  # read as it is: in sync, nothing to do
    dry = ws.cli("migrate", "production", "--dry-run", check=True).stdout
    assert "would move 2 flows" in dry and ws.git("rev-parse", "env/production", cwd=ws.repo).strip() == tips["env/production"]
    out = ws.cli("migrate", "production", "--json", check=True)
    migration = json.loads(out.stdout)
    assert migration["moved"] == ["fraud-score-custom-sql@1", "orders@1"]  # plain@1.0 has no code
    log = ws.git("log", "--format=%P %s", "env/production", cwd=ws.repo).splitlines()
    assert log[0] == f"{tips['env/production']} production: store 2 flows in the split form (code as sidecar files)"
    files = ws.git("ls-tree", "-r", "--name-only", "env/production", cwd=ws.repo).split()
    assert "flows/fraud-score-custom-sql/1/score.query.sql" in files and "flows/orders/1/fn1.func.js" in files
    assert "flows/plain/1.0.json" in files and not any(f.startswith("flows/plain/1.0/") for f in files)
    assert ws.cli("migrate", "production", check=True).stdout.startswith("production: nothing to migrate")
    before = {p.name: p.read_bytes() for p in (ws.root / "envs/production").iterdir()}
    sync = ws.cli("sync", "production", check=True)
    assert "import" not in sync.stdout  # the content did not change: nothing to import
    assert {p.name: p.read_bytes() for p in (ws.root / "envs/production").iterdir()} == before
    # The first export migrates acceptance by itself, in its own commit.
    export = ws.cli("export", "acceptance", check=True).stdout
    assert "acceptance: moved 2 flows of env/acceptance to the split form" in export
    assert ws.git("log", "-1", "--format=%P", "env/acceptance", cwd=ws.repo).strip() == tips["env/acceptance"]
    # Both branches now hold the same files: merging them is clean.
    assert ws.git("diff", "env/acceptance", "env/production", "--", "flows", cwd=ws.repo) == ""


def test_a_conflict_between_the_two_forms_says_to_migrate_first(ws: Workspace) -> None:
    restore_old_repository(ws)
    ws.cli("migrate", "acceptance", check=True)
    ada = clone(ws, "ada")
    edit(ada / "flows/orders/1.json", "const total", "let total")  # production, still single-file
    push_files(ws, ada, "production: let")
    bob = clone(ws, "bob", "env/acceptance")
    edit(bob / "flows/orders/1/fn1.func.js", "const total", "var total")
    push_files(ws, bob, "acceptance: var", branch="env/acceptance")
    plan = ws.cli("plan", "production", "--against", "env/acceptance")
    assert plan.returncode == 1
    assert "store a flow in the split form on one side and as one file on the other (flows/orders/1.json)" in plan.stdout
    assert "reconciler migrate" in plan.stdout
