"""End to end through the real command line, with the git CLI as the user.

The story: acceptance is exported into git, promoted to production by a merge
made with plain git, synced into production; then drift, adoption, conflicts
and invalid flows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Workspace, flow, flow_files


@pytest.fixture
def promoted(ws: Workspace) -> Workspace:
    """acceptance exported, env/production created from it with git, synced."""
    ws.add_env("acceptance", drift="adopt")
    ws.add_env("production", drift="restore", prune=True)
    ws.put("acceptance", "orders.json", flow("orders", "1.0"))
    ws.put("acceptance", "billing.json", flow("billing run", "2"))
    ws.cli("export", "acceptance", check=True)
    clone = ws.clone("env/acceptance")
    ws.git("checkout", "-q", "-b", "env/production", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    ws.cli("sync", "production", check=True)
    return ws


def edit_in_clone(ws: Workspace, clone: Path, rel: str, mutate, message: str) -> None:
    path = clone / rel
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    ws.git("commit", "-q", "-am", message, cwd=clone)


def test_export_commits_each_flow_as_canonical_json(ws: Workspace) -> None:
    """An export writes flows/<name>/<version>.json without volatile fields."""
    ws.add_env("acceptance")
    ws.put("acceptance", "x.json", flow("orders", "1.0"))
    out = ws.cli("export", "acceptance", check=True)
    assert "exported to env/acceptance as" in out.stdout
    clone = ws.clone("env/acceptance")
    text = (clone / "flows" / "orders" / "1.0.json").read_text()
    assert "exportedAt" not in text
    assert text == json.dumps({k: v for k, v in flow("orders").items() if k != "exportedAt"}, indent=2, sort_keys=True) + "\n"


def test_a_second_export_with_nothing_changed_makes_no_commit(ws: Workspace) -> None:
    """Exports never make empty commits."""
    ws.add_env("acceptance")
    ws.put("acceptance", "x.json", flow("orders"))
    ws.cli("export", "acceptance", check=True)
    out = ws.cli("export", "acceptance", "--json", check=True)
    assert json.loads(out.stdout)["commit"] is None
    assert ws.git("rev-list", "--count", "env/acceptance", cwd=ws.repo).strip() == "1"


def test_promotion_by_merge_is_imported_into_production(promoted: Workspace) -> None:
    """A change merged from env/acceptance into env/production with git reaches the production folder."""
    ws = promoted
    ws.put("acceptance", "orders.json", flow("orders", "1.0", retries=3))
    ws.cli("export", "acceptance", check=True)
    clone = ws.clone("env/production", name="promote")
    ws.git("fetch", "-q", "origin", cwd=clone)
    ws.git("merge", "-q", "--no-edit", "origin/env/acceptance", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    assert ws.cli("plan", "production").returncode == 2
    out = ws.cli("sync", "production")
    assert out.returncode == 0, out.stdout + out.stderr
    assert ws.live("production")[("orders", "1.0")]["retries"] == 3
    assert ws.cli("plan", "production").returncode == 0


def test_drift_is_restored_and_the_drifted_version_is_kept_on_the_drift_branch(promoted: Workspace) -> None:
    """Under drift = restore, a UI edit is replaced by git's version, after being saved to drift/<env>."""
    ws = promoted
    path = next(p for p in flow_files(ws.env_dir("production")) if json.loads(p.read_text())["name"] == "orders")
    doc = json.loads(path.read_text())
    doc["steps"][0]["config"]["url"] = "/hand-edited"
    path.write_text(json.dumps(doc))
    out = ws.cli("sync", "production")
    assert out.returncode == 0, out.stdout + out.stderr
    assert ws.live("production")[("orders", "1.0")]["steps"][0]["config"]["url"] == "/orders"
    saved = ws.git("show", "drift/production:flows/orders/1.0.json", cwd=ws.repo)
    assert "/hand-edited" in saved


def test_drift_is_adopted_into_git_with_a_commit_in_history(promoted: Workspace) -> None:
    """Under drift = adopt, a UI edit becomes a commit on the environment's branch, shown by history."""
    ws = promoted
    ws.put("acceptance", "orders.json", flow("orders", "1.0", owner="team-a"))
    out = ws.cli("sync", "acceptance")
    assert out.returncode == 0, out.stdout + out.stderr
    shown = ws.git("show", "env/acceptance:flows/orders/1.0.json", cwd=ws.repo)
    assert '"owner": "team-a"' in shown
    hist = ws.cli("history", "acceptance", "orders", "1.0", "--json", check=True)
    commits = json.loads(hist.stdout)["commits"]
    assert len(commits) == 2
    assert "acceptance" in commits[0]["message"] and "orders@1.0" in commits[0]["message"]


def test_a_conflict_is_left_untouched_and_sync_exits_3(promoted: Workspace) -> None:
    """When git and the environment changed a flow differently, neither side is overwritten."""
    ws = promoted
    clone = ws.clone("env/production", name="edit")
    edit_in_clone(ws, clone, "flows/orders/1.0.json", lambda d: d.update(retries=5), "orders: retries 5")
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    live_path = ws.env_dir("production") / "orders@1.0.json"
    doc = json.loads(live_path.read_text())
    doc["retries"] = 9
    live_path.write_text(json.dumps(doc))
    before = live_path.read_bytes()
    out = ws.cli("sync", "production")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "CONFLICT orders@1.0" in out.stdout
    assert live_path.read_bytes() == before
    assert '"retries": 5' in ws.git("show", "env/production:flows/orders/1.0.json", cwd=ws.repo)


def test_an_invalid_flow_is_refused_with_exit_1_and_the_environment_is_unchanged(promoted: Workspace) -> None:
    """A malformed flow pushed to git never reaches the environment; the others still sync."""
    ws = promoted
    before = {p.name: p.read_bytes() for p in ws.env_dir("production").glob("*.json")}
    clone = ws.clone("env/production", name="bad")
    (clone / "flows" / "orders" / "1.0.json").write_text('{"name": "orders", "version": "1.0", "steps": [}\n')
    (clone / "flows" / "fresh").mkdir()
    (clone / "flows" / "fresh" / "1.json").write_text(json.dumps(flow("fresh", "1")))
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-q", "-m", "break orders, add fresh", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    out = ws.cli("sync", "production")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "env/production:flows/orders/1.0.json" in out.stderr
    assert "invalid JSON" in out.stderr
    after = {p.name: p.read_bytes() for p in ws.env_dir("production").glob("*.json")}
    assert after.pop("fresh@1.json")
    assert after == before


def test_a_fixed_flow_is_applied_by_the_next_sync(promoted: Workspace) -> None:
    """After the fix lands, the next sync applies it and exits 0."""
    ws = promoted
    clone = ws.clone("env/production", name="fix")
    target = clone / "flows" / "orders" / "1.0.json"
    good = target.read_text()
    target.write_text("{not json")
    ws.git("commit", "-q", "-am", "oops", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    assert ws.cli("sync", "production").returncode == 1
    target.write_text(good.replace('"/orders"', '"/orders/v2"'))
    ws.git("commit", "-q", "-am", "fix", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    out = ws.cli("sync", "production")
    assert out.returncode == 0, out.stdout + out.stderr
    assert ws.live("production")[("orders", "1.0")]["steps"][0]["config"]["url"] == "/orders/v2"


def test_a_flow_whose_name_disagrees_with_its_path_is_invalid(promoted: Workspace) -> None:
    """The error names the file, the JSON pointer and what to do."""
    ws = promoted
    clone = ws.clone("env/production", name="mismatch")
    edit_in_clone(ws, clone, "flows/orders/1.0.json", lambda d: d.update(name="other"), "rename inside only")
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    out = ws.cli("plan", "production")
    assert out.returncode == 1
    assert "env/production:flows/orders/1.0.json:/name" in out.stderr
    assert "move the file or fix the field" in out.stderr


def test_status_reports_counts_for_every_environment(promoted: Workspace) -> None:
    """status --json lists branch tip, applied marker and per-state counts."""
    ws = promoted
    ws.put("production", "new.json", flow("surprise", "1"))
    out = ws.cli("status", "--json", check=True)
    envs = {e["environment"]: e for e in json.loads(out.stdout)["environments"]}
    assert envs["acceptance"]["counts"]["in_sync"] == 2
    assert envs["production"]["counts"] == {"in_sync": 2, "pending": 0, "drifted": 1, "conflict": 0, "invalid": 0,
                                            "quarantined": 0, "suspended": 0}
    assert envs["production"]["applied"] == envs["production"]["branch_tip"]


def test_plan_changes_nothing(promoted: Workspace) -> None:
    """plan and sync --dry-run leave the folder and the repository alone."""
    ws = promoted
    ws.put("production", "orders@1.0.json", flow("orders", "1.0", retries=1))
    refs = ws.git("for-each-ref", cwd=ws.repo)
    files = {p.name: p.read_bytes() for p in ws.env_dir("production").iterdir()}
    assert ws.cli("plan", "production").returncode == 2
    assert ws.cli("sync", "production", "--dry-run").returncode == 0
    assert ws.git("for-each-ref", cwd=ws.repo) == refs
    assert {p.name: p.read_bytes() for p in ws.env_dir("production").iterdir()} == files


def test_a_bad_config_gives_one_line_per_problem(ws: Workspace) -> None:
    """Each problem names the key, the value and why."""
    ws.config.write_text(
        '[[environment]]\nname = "a b"\ndriver = "directory"\npath = "x"\ndrift = "sometimes"\ncolour = 1\n'
        '[[environment]]\nname = "p"\ndriver = "ftp"\n'
    )
    out = ws.cli("status")
    assert out.returncode == 1
    err = out.stderr
    assert "environment[0].name = 'a b'" in err
    assert "environment[0].drift = 'sometimes'" in err
    assert "environment[0].colour: unknown key" in err
    assert "environment[1].driver = 'ftp': unknown driver" in err


@pytest.mark.parametrize("args", [("sync", "staging"), ("plan", "staging"), ("export", "staging"), ("status", "staging"),
                                  ("history", "staging"), ("promote", "acceptance", "staging"),
                                  ("rollback", "staging", "--to", "HEAD")])
def test_an_unknown_environment_is_a_usage_error_listing_the_known_ones(promoted: Workspace, args) -> None:
    """Naming an environment the config does not have exits 64 (a usage error) and lists the known ones."""
    out = promoted.cli(*args)
    assert out.returncode == 64, out.stderr
    assert "no environment named 'staging'" in out.stderr and "acceptance, production" in out.stderr


def test_usage_errors_exit_64(ws: Workspace) -> None:
    """A usage error does not look like "changes pending" (2)."""
    assert ws.cli("frobnicate").returncode == 64


def test_json_output_of_sync_lists_every_changed_flow(promoted: Workspace) -> None:
    """sync --json is machine readable: steps with action, state, done."""
    ws = promoted
    (ws.env_dir("production") / "orders@1.0.json").unlink()
    out = ws.cli("sync", "production", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [(s["name"], s["action"], s["done"]) for s in data["steps"]] == [("orders", "import", True)]
    assert data["counts"]["in_sync"] == 2
