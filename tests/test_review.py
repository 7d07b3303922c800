"""Merge-request checks through the real command line: ``validate`` and ``plan ENV --against REF``.

Flows are changed the way people change them: exported from acceptance,
edited in a clone and pushed with the git CLI.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import Workspace
from tests.promokit import ACC_API, ACC_PW, PROD_PW, VALUES, billing, commit_in_clone, orders, promote_branch, setup_two


STRICT = {"type": "object", "required": ["name", "version", "steps"],
          "properties": {"steps": {"type": "array", "items": {"type": "object", "required": ["id", "type"]}}}}


def make_two(ws: Workspace) -> Workspace:
    (ws.root / "strict.schema.json").write_text(json.dumps(STRICT))
    return setup_two(ws, acceptance='schema = "strict.schema.json"')


@pytest.fixture
def two(ws: Workspace) -> Workspace:
    """A workspace of one's own, for tests that change branches or the config."""
    return make_two(ws)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> tuple[Workspace, str]:
    """One workspace for the tests that only read (validate, plan --against change nothing).

    Besides the two environments: a branch ``feature/bad`` with one file per
    problem kind, a branch ``feature/topic`` with a placeholder production
    cannot resolve, and a promotion of acceptance's new state (orders changed,
    billing removed, fresh added) to production, whose branch name is returned.
    """
    ws = make_two(Workspace(tmp_path_factory.mktemp("review")))
    clone = ws.clone("env/acceptance")
    commit_in_clone(ws, clone, bad_files(), "all kinds of trouble", push="feature/bad")
    ws.git("checkout", "-q", "-B", "topic", "origin/env/acceptance", cwd=clone)
    doc = json.loads((clone / "flows/orders/1.0.json").read_text())
    doc["topic"] = "${param:TOPIC}"
    commit_in_clone(ws, clone, {"flows/orders/1.0.json": doc}, "topic", push="feature/topic")
    ws.put("acceptance", "orders.json", orders(ACC_API, ACC_PW, retries=3))
    (ws.env_dir("acceptance") / "billing.json").unlink()
    ws.put("acceptance", "fresh.json", billing(name="fresh", version="1"))
    ws.cli("export", "acceptance", check=True)
    ws.cli("promote", "acceptance", "production", check=True)
    return ws, promote_branch(ws)


def bad_files() -> dict[str, object]:
    """One flow file per problem kind, in git form."""
    good = json.loads(json.dumps(orders("${param:API}", "${secret:DB_PASSWORD}")))
    del good["exportedAt"]
    return {
        "flows/syntax/1.json": '{"name": "syntax", "version": "1", "steps": [}\n',
        "flows/moved/1.json": {**good, "name": "elsewhere", "version": "1"},
        "flows/nosteps/1.json": {"name": "nosteps", "version": "1", "steps": [{"id": "x"}]},
        "flows/topic/1.json": {**good, "name": "topic", "version": "1", "topic": "${param:TOPIC}"},
        "flows/pasted/1.json": {**good, "name": "pasted", "version": "1",
                                "steps": [{"id": "db", "type": "sql", "config": {"password": "hunter2-pasted"}}]},
        "flows/stray.json": {"name": "stray", "version": "1"},
    }


def expected_lines(prefix: str) -> list[str]:
    return [
        f"{prefix}flows/moved/1.json:/name: the flow says it is elsewhere@1 but its path says moved@1",
        f"{prefix}flows/nosteps/1.json:/steps/0: schema strict.schema.json: 'type' is a required property (in acceptance)",
        f"{prefix}flows/pasted/1.json:/steps/0/config/password: secret scan: looks like a credential",
        f"{prefix}flows/syntax/1.json: invalid JSON",
        f"{prefix}flows/topic/1.json:/topic: unknown parameter 'TOPIC': add it to the params of acceptance, production",
    ]


def test_validate_a_clean_branch_exits_0(shared) -> None:
    """The branch an export wrote passes every check."""
    ws, _ = shared
    out = ws.cli("validate", "--branch", "env/acceptance")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == "" and "0 problems in 2 flow files" in out.stderr


def test_validate_a_branch_reports_each_problem_on_one_line_and_exits_1(shared) -> None:
    """Syntax, path/identity, schema, placeholders and the secret scan: file:pointer: message, read from git."""
    ws, _ = shared
    out = ws.cli("validate", "--branch", "feature/bad")
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    for want in expected_lines("feature/bad:"):
        assert any(line.startswith(want) for line in lines), (want, lines)
    assert any(line.startswith("feature/bad:flows/stray.json: unexpected file") for line in lines)
    assert "hunter2-pasted" not in out.stdout + out.stderr


def test_validate_an_environments_branch_uses_that_environments_settings_only(two: Workspace) -> None:
    """On env/production, a parameter only acceptance has is unknown, and acceptance's schema does not apply."""
    ws = two
    clone = ws.clone("env/production")
    doc = {"name": "x", "version": "1", "steps": [{"id": "a"}], "topic": "${param:TOPIC}"}
    commit_in_clone(ws, clone, {"flows/x/1.json": doc}, "x", push="env/production")
    out = ws.cli("validate", "--branch", "env/production", "--json")
    assert out.returncode == 1
    (result,) = json.loads(out.stdout)["results"]
    assert result["environments"] == ["production"]
    assert result["problems"] == [{"file": "env/production:flows/x/1.json", "pointer": "/topic",
                                   "message": "unknown parameter 'TOPIC': add it to the params of production"}]


def test_validate_paths_in_a_working_tree_reports_each_problem(shared) -> None:
    """What a merge-request job has: a checkout. Same checks, file names relative to it."""
    ws, _ = shared
    clone = ws.clone("feature/bad", name="bad-checkout")
    out = ws.cli("validate", str(clone / "flows"))
    assert out.returncode == 1
    for want in expected_lines(f"{clone}/"):
        assert any(line.startswith(want) for line in out.stdout.splitlines()), (want, out.stdout)
    assert f"{clone}/flows/stray.json: not a flow path" in out.stdout
    assert "hunter2-pasted" not in out.stdout + out.stderr


def test_validate_paths_of_good_flows_exits_0(shared) -> None:
    """A clean checkout passes; a file named on the command line is checked like a folder's files."""
    ws, _ = shared
    clone = ws.clone("env/production", name="good-checkout")
    assert ws.cli("validate", str(clone / "flows")).returncode == 0
    assert ws.cli("validate", str(clone / "flows" / "orders" / "1.0.json")).returncode == 0
    assert ws.cli("validate", str(clone / "nothing-here")).returncode == 1


def test_validate_paths_names_the_environments_missing_a_parameter(two: Workspace) -> None:
    """A parameter one environment has and the other lacks is reported for the one lacking it."""
    ws = two
    ws.config.write_text(ws.config.read_text().replace(f'API = "{ACC_API}"', f'API = "{ACC_API}"\nTOPIC = "orders-acc"'))
    clone = ws.clone("env/acceptance")
    commit_in_clone(ws, clone, {"flows/orders/1.0.json": {"name": "orders", "version": "1.0", "steps": [],
                                                           "topic": "${param:TOPIC}"}}, "topic")
    out = ws.cli("validate", str(clone / "flows"))
    assert out.returncode == 1
    assert out.stdout.splitlines() == [
        f"{clone}/flows/orders/1.0.json:/topic: unknown parameter 'TOPIC': add it to the params of production"
    ]


# -- plan --against ------------------------------------------------------------------


@pytest.fixture
def proposed(shared) -> tuple[Workspace, str]:
    return shared


def test_plan_against_shows_actions_and_a_semantic_diff_and_exits_2(proposed) -> None:
    """Text: per flow the action in production and what the merge changes, field by field."""
    ws, branch = proposed
    out = ws.cli("plan", "production", "--against", branch)
    assert out.returncode == 2, out.stdout + out.stderr
    text = out.stdout
    assert f"production: merging {branch}" in text
    assert "import   orders@1.0  changed in git  [git: changed]" in text
    assert "+ /retries: 3" in text
    assert "delete   billing@2  deleted in git  [git: removed]" in text
    assert "import   fresh@1  added in git  [git: added]" in text
    for value in VALUES:
        assert value not in out.stdout + out.stderr


def test_plan_against_json_lists_every_flow_with_its_diff(proposed) -> None:
    """JSON: the merge's flows with action, git change and diff items (old/new by JSON pointer)."""
    ws, branch = proposed
    out = ws.cli("plan", "production", "--against", branch, "--format", "json")
    assert out.returncode == 2
    data = json.loads(out.stdout)
    flows = {f["flow"]: f for f in data["flows"]}
    assert {k: (f["git"], f["action"]) for k, f in flows.items()} == {
        "billing@2": ("removed", "delete"), "fresh@1": ("added", "import"), "orders@1.0": ("changed", "import")}
    assert flows["orders@1.0"]["diff"] == [{"op": "add", "pointer": "/retries", "new": 3}]
    assert data["conflicts"] == [] and data["counts"]["pending"] == 3


def test_plan_against_markdown_is_a_merge_request_comment(proposed) -> None:
    """Markdown: a table of flows and one collapsible diff per flow; secrets never shown."""
    ws, branch = proposed
    out = ws.cli("plan", "production", "--against", branch, "--format", "markdown")
    assert out.returncode == 2
    md = out.stdout
    assert "| Flow | In git | Action | Why |" in md
    assert "| <code>orders@1.0</code> | changed | **import** | changed in git |" in md
    assert "<details><summary><code>orders@1.0</code>: fields: 1 added</summary>" in md
    assert "```diff\n+ /retries: 3\n```" in md
    assert md.count("<details>") == md.count("</details>") == 3
    for value in VALUES:
        assert value not in md


def test_plan_against_changes_nothing_and_an_already_merged_ref_plans_nothing(proposed) -> None:
    """No ref, no folder changes; planning the branch's own tip exits 0."""
    ws, branch = proposed
    refs = ws.git("for-each-ref", cwd=ws.repo)
    files = {p.name: p.read_bytes() for p in ws.env_dir("production").iterdir()}
    ws.cli("plan", "production", "--against", branch)
    assert ws.git("for-each-ref", cwd=ws.repo) == refs
    assert {p.name: p.read_bytes() for p in ws.env_dir("production").iterdir()} == files
    out = ws.cli("plan", "production", "--against", "env/production")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "nothing would change" in out.stdout


def test_plan_against_a_conflicting_merge_names_the_files_and_exits_1(two: Workspace) -> None:
    """Production's branch and acceptance changed the same field differently: no plan, the files."""
    ws = two
    clone = ws.clone("env/production")
    path = clone / "flows" / "orders" / "1.0.json"
    doc = json.loads(path.read_text())
    doc["retries"] = 5
    commit_in_clone(ws, clone, {"flows/orders/1.0.json": doc}, "hotfix: retries 5", push="env/production")
    ws.put("acceptance", "orders.json", orders(ACC_API, ACC_PW, retries=3))
    ws.cli("export", "acceptance", check=True)
    out = ws.cli("plan", "production", "--against", "env/acceptance")
    assert out.returncode == 1
    assert "the merge conflicts" in out.stdout and "flows/orders/1.0.json" in out.stdout
    md = ws.cli("plan", "production", "--against", "env/acceptance", "--format", "markdown")
    assert md.returncode == 1 and "- `flows/orders/1.0.json`" in md.stdout
    data = json.loads(ws.cli("plan", "production", "--against", "env/acceptance", "--json").stdout)
    assert data["conflicts"] == ["flows/orders/1.0.json"] and data["flows"] == []


def test_plan_against_an_unknown_ref_is_an_error(shared) -> None:
    """A ref that does not exist exits 1 with a message naming it."""
    out = shared[0].cli("plan", "production", "--against", "no-such-branch")
    assert out.returncode == 1 and "'no-such-branch' is not a branch, tag or commit" in out.stderr


def test_plan_markdown_without_against_is_a_usage_error(shared) -> None:
    """Markdown is a merge-request comment: it needs --against."""
    assert shared[0].cli("plan", "production", "--format", "markdown").returncode == 64


def test_plan_against_reports_a_merged_flow_production_cannot_render(shared) -> None:
    """A placeholder production has no value for makes the merged flow invalid: exit 1, named."""
    ws, _ = shared
    out = ws.cli("plan", "production", "--against", "feature/topic")
    assert out.returncode == 1
    assert "INVALID  orders@1.0" in out.stdout
    assert "feature/topic:flows/orders/1.0.json:/topic: unknown parameter 'TOPIC'" in out.stdout
    assert PROD_PW not in out.stdout + out.stderr


# -- schemas per kind of flow ------------------------------------------------------------


def node_red_config(base) -> object:
    from reconciler.config import parse_config

    raw = {"environment": [{"name": "edge", "driver": "node-red", "url": "http://127.0.0.1:1880"}]}
    return parse_config(raw, base=base)


def test_a_node_red_environment_is_validated_against_the_node_red_flow_schema(tmp_path) -> None:
    """Without a schema of its own, a node-red environment's flows use manifests/schemas/flow.node-red.schema.json."""
    from reconciler.validate import validate_paths

    path = tmp_path / "flows" / "sensors" / "1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"name": "sensors", "version": "1", "tab": {"id": "t1", "type": "tab"},
                                "nodes": [{"id": "n1", "z": "t1"}], "extra": 1}))
    got = validate_paths(node_red_config(tmp_path), [str(tmp_path / "flows")])
    assert [str(f) for f in got.findings] == [
        f"{path}: schema flow.node-red.schema.json: Additional properties are not allowed ('extra' was unexpected)",
        f"{path}:/nodes/0: schema flow.node-red.schema.json: 'type' is a required property",
    ]


@pytest.mark.parametrize("version", ["nr4", "nr5"])
def test_the_node_red_flow_schema_accepts_every_example_shipped_with_node_red(version: str) -> None:
    """The kind schema is no stricter than the driver: the 114 example tabs pass it (both versions' examples)."""
    from reconciler.drivers.node_red import flow_documents
    from reconciler.schemas import schema_for
    from tests.nodered import find_install, unavailable
    from tests.test_node_red import example_batches

    install = find_install(version)
    if isinstance(install, str):
        unavailable(install)
    batches, _, tabs = example_batches(install)
    check = schema_for(None, "node-red")
    docs = [doc for batch in batches for doc in flow_documents(batch).values()]
    assert len(docs) == tabs
    assert [(d["name"], check(d)) for d in docs if check(d)] == []


def test_validate_without_a_config_checks_what_needs_none(tmp_path, monkeypatch, capsys) -> None:
    """A merge-request job without reconciler.toml still gets syntax, path, identity and the default schema."""
    from reconciler.cli import main

    (tmp_path / "flows" / "a").mkdir(parents=True)
    (tmp_path / "flows" / "a" / "1.json").write_text('{"name": "b", "version": "1", "x": "${param:ANY}"}')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    assert main(["validate", "flows"]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == ["flows/a/1.json:/name: the flow says it is b@1 but its path says a@1; "
                                    "move the file or fix the field"]
    assert "no reconciler.toml" in out.err
