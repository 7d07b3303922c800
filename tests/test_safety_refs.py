"""A missing or wrong reference never deletes (issue 11): missing repository, branch, flows
folder or environment folder are errors; mass deletions need an explicit allow; one bad tree
entry does not block the rest. Every case through the real CLI, git played by the git CLI."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import Workspace, flow, flow_files


@pytest.fixture
def prod(ws: Workspace) -> Workspace:
    """acceptance (adopt) exported with four flows; production (restore, prune) synced from it."""
    ws.add_env("acceptance", drift="adopt")
    ws.add_env("production", drift="restore", prune=True)
    for name in ("orders", "billing", "stock", "refunds"):
        ws.put("acceptance", f"{name}.json", flow(name))
    ws.cli("export", "acceptance", check=True)
    ws.branch("env/production", "env/acceptance")
    ws.cli("sync", "production", check=True)
    assert len(flow_files(ws.env_dir("production"))) == 4
    return ws


def set_env(ws: Workspace, env: str, **settings) -> None:
    ws.envs[env].update(settings)
    ws.write_config()


def test_a_typo_in_the_branch_deletes_nothing_and_names_the_known_branches(prod: Workspace) -> None:
    """With prune on, a branch that does not exist is an error (exit 1), never 'every flow deleted'."""
    set_env(prod, "production", branch="env/prodcution")
    for command in (("sync", "production"), ("plan", "production"), ("status", "production")):
        out = prod.cli(*command)
        assert out.returncode == 1, (command, out.stdout, out.stderr)
        text = out.stdout + out.stderr
        assert "branch env/prodcution does not exist" in text and "env/acceptance" in text, text
        assert "reconciler export production" in text
    assert len(flow_files(prod.env_dir("production"))) == 4


def test_a_branch_deleted_on_the_server_deletes_nothing(prod: Workspace) -> None:
    """`git push origin :env/production` is a missing branch, not an empty one."""
    clone = prod.clone("env/acceptance")
    prod.git("push", "-q", "origin", ":env/production", cwd=clone)
    out = prod.cli("sync", "production")
    assert out.returncode == 1 and "branch env/production does not exist" in out.stderr
    assert len(flow_files(prod.env_dir("production"))) == 4


def test_a_typo_in_the_repository_path_deletes_nothing_and_creates_no_repository(prod: Workspace) -> None:
    """A [repository] path that does not exist is an error; only export may create a repository."""
    prod.write_config()
    prod.config.write_text(prod.config.read_text().replace('path = "state/flows.git"', 'path = "state/flow.git"'))
    for command in (("sync", "production"), ("plan", "production"), ("status",), ("history", "production"),
                    ("validate",), ("rollback", "production", "--to", "HEAD")):
        out = prod.cli(*command)
        assert out.returncode == 1, (command, out.stdout, out.stderr)
        assert "no git repository at" in out.stdout + out.stderr and "state/flow.git" in out.stdout + out.stderr
    assert not (prod.root / "state" / "flow.git").exists()
    assert len(flow_files(prod.env_dir("production"))) == 4


def test_a_missing_environment_folder_with_adopt_commits_nothing_and_is_not_created(prod: Workspace) -> None:
    """An environment folder that is not there (a typo, NFS not mounted) is never read as 'every flow deleted'."""
    tip = prod.git("rev-parse", "env/acceptance", cwd=prod.repo)
    prod.write_config()
    prod.config.write_text(prod.config.read_text().replace('path = "envs/acceptance"', 'path = "envs/acceptence"'))
    for command in (("sync", "acceptance"), ("export", "acceptance"), ("plan", "acceptance")):
        out = prod.cli(*command)
        assert out.returncode == 1, (command, out.stdout, out.stderr)
        assert "envs/acceptence does not exist" in out.stdout + out.stderr
    assert prod.git("rev-parse", "env/acceptance", cwd=prod.repo) == tip
    assert not (prod.root / "envs" / "acceptence").exists()


def test_flows_replaced_by_a_file_deletes_nothing_and_validate_reports_it(prod: Workspace) -> None:
    """`git rm -r flows; echo x > flows`: the environment stops, and validate --branch refuses the branch."""
    clone = prod.clone("env/production")
    prod.git("rm", "-q", "-r", "flows", cwd=clone)
    (clone / "flows").write_text("x\n")
    prod.git("add", "flows", cwd=clone)
    prod.git("commit", "-q", "-m", "flows is a file now", cwd=clone)
    prod.git("push", "-q", "origin", "env/production", cwd=clone)
    out = prod.cli("sync", "production")
    assert out.returncode == 1 and "env/production:flows is a file, not a folder of flows" in out.stderr
    assert len(flow_files(prod.env_dir("production"))) == 4
    out = prod.cli("validate", "--branch", "env/production")
    assert out.returncode == 1 and "flows is a file, not a folder of flows" in out.stdout + out.stderr


def test_a_branch_without_flows_needs_allow_empty(prod: Workspace) -> None:
    """Deleting every flow in git is refused (nothing changes) unless the environment allows becoming empty."""
    clone = prod.clone("env/production")
    prod.git("rm", "-q", "-r", "flows", cwd=clone)
    prod.git("commit", "-q", "-m", "delete every flow", cwd=clone)
    prod.git("push", "-q", "origin", "env/production", cwd=clone)
    out = prod.cli("sync", "production")
    assert out.returncode == 1 and "has no flows/ folder" in out.stderr and "allow_empty" in out.stderr
    assert len(flow_files(prod.env_dir("production"))) == 4
    set_env(prod, "production", allow_empty=True)
    out = prod.cli("sync", "production")
    assert out.returncode == 0, out.stdout + out.stderr
    assert flow_files(prod.env_dir("production")) == []
    assert set(json.loads(prod.git("show", "drift/production:flows/orders/1.0.json", cwd=prod.repo)).keys()) >= {"name"}


def test_deleting_more_than_max_delete_in_git_is_refused_then_allowed_once(prod: Workspace) -> None:
    """3 of 4 flows deleted in git (max_delete 50%: at most 2): nothing changes; --allow-mass-delete does it."""
    clone = prod.clone("env/production")
    for name in ("orders", "billing", "stock"):
        prod.git("rm", "-q", "-r", f"flows/{name}", cwd=clone)
    prod.git("commit", "-q", "-m", "delete three", cwd=clone)
    prod.git("push", "-q", "origin", "env/production", cwd=clone)
    plan = prod.cli("plan", "production")
    assert plan.returncode == 1 and "would refuse" in plan.stderr and "3 of 4" in plan.stderr
    out = prod.cli("sync", "production")
    assert out.returncode == 1 and "would delete 3 of 4 flows from the environment" in out.stderr
    assert "--allow-mass-delete" in out.stderr and "max_delete" in out.stderr
    assert len(flow_files(prod.env_dir("production"))) == 4
    status = json.loads(prod.cli("status", "production", "--json").stdout)["environments"][0]
    assert "3 of 4" in status["refused"]
    out = prod.cli("sync", "production", "--allow-mass-delete")
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(flow_files(prod.env_dir("production"))) == 1


def test_a_limit_of_deletions_can_be_raised_and_two_deletions_pass_by_default(prod: Workspace) -> None:
    """Two of four is within the default limit; max_delete = 3 lets three through."""
    clone = prod.clone("env/production")
    for name in ("orders", "billing"):
        prod.git("rm", "-q", "-r", f"flows/{name}", cwd=clone)
    prod.git("commit", "-q", "-m", "delete two", cwd=clone)
    prod.git("push", "-q", "origin", "env/production", cwd=clone)
    prod.cli("sync", "production", check=True)
    assert len(flow_files(prod.env_dir("production"))) == 2
    set_env(prod, "production", max_delete=3)
    prod.git("rm", "-q", "-r", "flows", cwd=clone)
    prod.git("commit", "-q", "-m", "delete the rest", cwd=clone)
    prod.git("push", "-q", "origin", "env/production", cwd=clone)
    out = prod.cli("sync", "production")
    assert out.returncode == 1 and "allow_empty" in out.stderr  # every flow: allow_empty, whatever the limit


def test_deleting_files_in_an_adopting_environment_is_refused_then_allowed(prod: Workspace) -> None:
    """The other direction: adopting the deletion of 3 of 4 flows into git stops before committing."""
    tip = prod.git("rev-parse", "env/acceptance", cwd=prod.repo)
    for name in ("orders", "billing", "stock"):
        (prod.env_dir("acceptance") / f"{name}.json").unlink()
    for command in (("sync", "acceptance"), ("export", "acceptance")):
        out = prod.cli(*command)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "would delete 3 of 4 flows from env/acceptance" in out.stderr
    assert prod.git("rev-parse", "env/acceptance", cwd=prod.repo) == tip
    out = prod.cli("export", "acceptance", "--allow-mass-delete")
    assert out.returncode == 0, out.stdout + out.stderr
    assert prod.git("ls-tree", "-r", "--name-only", "env/acceptance", cwd=prod.repo).split() == ["flows/refunds/1.0.json"]


def test_an_export_of_an_empty_folder_creates_no_branch(ws: Workspace) -> None:
    """The first export needs flows: an empty (or mistyped, but existing) folder creates nothing."""
    ws.add_env("acceptance")
    out = ws.cli("export", "acceptance")
    assert out.returncode == 1 and "holds no flows" in out.stderr
    assert "env/acceptance" not in ws.git("branch", "--list", cwd=ws.repo) if ws.repo.exists() else True


def _push_with_submodule(ws: Workspace) -> None:
    clone = ws.clone("env/production", name="sub")
    good = clone / "flows/orders/1.0.json"
    good.write_text(good.read_text().replace('"POST"', '"PUT"'))
    ws.git("add", "-A", cwd=clone)
    commit = ws.git("rev-parse", "HEAD", cwd=clone).strip()
    ws.git("update-index", "--add", "--cacheinfo", f"160000,{commit},flows/billing/1.0.json", cwd=clone)
    ws.git("commit", "-q", "-m", "a submodule where billing was, and orders changed", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)


def test_a_submodule_at_a_flow_path_marks_that_flow_invalid_and_the_rest_syncs(prod: Workspace) -> None:
    """The entry is reported for itself; billing is left alone (not deleted); orders lands."""
    _push_with_submodule(prod)
    out = prod.cli("sync", "production")
    assert out.returncode == 1
    assert "flows/billing/1.0.json" in out.stderr and "a submodule, not a file" in out.stderr
    live = prod.live("production")
    assert live[("orders", "1.0")]["steps"][0]["config"]["method"] == "PUT"
    assert ("billing", "1.0") in live


def test_a_symlink_at_a_flow_path_is_reported_not_read(prod: Workspace) -> None:
    """A symlink blob is not a flow file: invalid for that flow, the link target is never read."""
    clone = prod.clone("env/production", name="link")
    target = clone / "flows/stock/1.0.json"
    target.unlink()
    target.symlink_to("/etc/passwd")
    prod.git("add", "-A", cwd=clone)
    prod.git("commit", "-q", "-m", "symlink", cwd=clone)
    prod.git("push", "-q", "origin", "env/production", cwd=clone)
    out = prod.cli("sync", "production")
    assert out.returncode == 1 and "a symlink, not a file" in out.stderr
    assert ("stock", "1.0") in prod.live("production")


def test_an_unresolvable_placeholder_is_invalid_in_an_environment_without_params(prod: Workspace) -> None:
    """No params or secrets configured: ${param:...} and ${secret:...} still never reach the platform as text."""
    clone = prod.clone("env/production", name="ph")
    path = clone / "flows/orders/1.0.json"
    doc = json.loads(path.read_text())
    doc["steps"][0]["config"]["url"] = "${param:API}/orders"
    doc["steps"][1]["config"]["password"] = "${secret:DB_PASSWORD}"
    path.write_text(json.dumps(doc, indent=2))
    prod.git("commit", "-q", "-am", "placeholders", cwd=clone)
    prod.git("push", "-q", "origin", "env/production", cwd=clone)
    out = prod.cli("sync", "production")
    assert out.returncode == 1 and "unknown parameter 'API'" in out.stderr
    assert "${param:" not in (prod.env_dir("production") / "orders@1.0.json").read_text()
    # an escaped spelling is rendered too
    path.write_text(path.read_text().replace("${param:API}", "\\u0024{param:API}"))
    prod.git("commit", "-q", "-am", "escaped placeholder", cwd=clone)
    prod.git("push", "-q", "origin", "env/production", cwd=clone)
    out = prod.cli("sync", "production")
    assert out.returncode == 1 and "unknown parameter 'API'" in out.stderr


def test_a_clone_of_the_repository_checks_out_an_environment_branch(prod: Workspace) -> None:
    """HEAD of a repository the reconciler created names the first exported branch."""
    out = subprocess.run(["git", "clone", "-q", str(prod.repo), str(prod.root / "plain")], capture_output=True, text=True)
    assert out.returncode == 0 and "warning" not in out.stderr, out.stderr
    assert (prod.root / "plain" / "flows" / "orders" / "1.0.json").is_file()
