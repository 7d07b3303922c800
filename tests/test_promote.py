"""Promotion and rollback through the real command line, with the git CLI as the user.

Acceptance and production have their own endpoint (a parameter) and database
password (a secret). A promotion is a branch a person merges with git; a
rollback is a commit on the environment's branch; ``reconciler sync`` (or the
running service) applies either.
"""

from __future__ import annotations

import json

import pytest

from reconciler.config import load_config
from reconciler.flows import FlowKey
from reconciler.gitstore import GitStore
from reconciler.promote import FlowSelector, rollback
from tests.conftest import Workspace
from tests.promokit import (ACC_API, ACC_PW, PROD_API, PROD_PW, VALUES, billing, commit_in_clone, everything_in_git,
                            orders, promote_branch, setup_two)
from tests.servicekit import ServiceProcess, wait_for


@pytest.fixture
def two(ws: Workspace) -> Workspace:
    return setup_two(ws)


def merge_with_git(ws: Workspace, branch: str, target: str = "env/production") -> None:
    """What a person does with the promotion branch: merge it into the environment's branch and push."""
    clone = ws.clone(target, name="merger")
    ws.git("fetch", "-q", "origin", cwd=clone)
    ws.git("merge", "-q", "--no-ff", "--no-edit", f"origin/{branch}", cwd=clone)
    ws.git("push", "-q", "origin", target, cwd=clone)


def prod_orders(ws: Workspace) -> dict:
    return ws.live("production")[("orders", "1.0")]


def test_a_promotion_round_trip_keeps_each_environment_its_values_and_git_holds_none(two: Workspace) -> None:
    """export acceptance -> promote -> merge with git -> sync production: production's own endpoint and secret."""
    ws = two
    ws.put("acceptance", "orders.json", orders(ACC_API, ACC_PW, retries=3))
    ws.cli("export", "acceptance", check=True)
    out = ws.cli("promote", "acceptance", "production")
    assert out.returncode == 0, out.stdout + out.stderr
    branch = promote_branch(ws)
    assert branch.startswith("promote/acceptance-to-production/")
    assert f"created {branch}" in out.stdout and "change  orders@1.0" in out.stdout
    assert f"git merge origin/{branch}" in out.stdout
    # one commit on top of production's tip, with a message naming both environments and the flow
    assert ws.git("rev-parse", f"{branch}~1", cwd=ws.repo) == ws.git("rev-parse", "env/production", cwd=ws.repo)
    message = ws.git("log", "-1", "--format=%B", branch, cwd=ws.repo)
    assert message.startswith("promote acceptance to production: 1 flow") and "changed: orders@1.0" in message
    assert ws.cli("plan", "production", "--against", branch).returncode == 2
    merge_with_git(ws, branch)
    out = ws.cli("sync", "production")
    assert out.returncode == 0, out.stdout + out.stderr
    prod = prod_orders(ws)
    assert prod["retries"] == 3
    assert prod["steps"][0]["config"]["url"] == f"{PROD_API}/orders"
    assert prod["steps"][1]["config"]["password"] == PROD_PW
    text = everything_in_git(ws)
    for value in VALUES:
        assert value not in text
    assert ws.cli("plan", "production").returncode == 0


def test_promoting_chosen_flows_leaves_the_others_and_all_removes_what_from_lacks(two: Workspace) -> None:
    """--flow takes only that flow; without --flow a flow acceptance no longer has is removed too."""
    ws = two
    ws.put("acceptance", "orders.json", orders(ACC_API, ACC_PW, retries=4))
    (ws.env_dir("acceptance") / "billing.json").unlink()
    ws.cli("export", "acceptance", check=True)
    only = json.loads(ws.cli("promote", "acceptance", "production", "--flow", "orders@1.0", "--json", check=True).stdout)
    assert (only["changed"], only["removed"], only["added"]) == (["orders@1.0"], [], [])
    tree = ws.git("ls-tree", "-r", "--name-only", only["branch"], cwd=ws.repo).split()
    assert "flows/billing/2.json" in tree
    every = json.loads(ws.cli("promote", "acceptance", "production", "--json", check=True).stdout)
    assert (every["changed"], every["removed"]) == (["orders@1.0"], ["billing@2"])
    assert every["merge_request"] == {"source": every["branch"], "target": "env/production"}
    assert "flows/billing/2.json" not in ws.git("ls-tree", "-r", "--name-only", every["branch"], cwd=ws.repo)
    assert ws.cli("promote", "acceptance", "production", "--flow", "nope").returncode == 1


def test_nothing_to_promote_makes_no_branch(two: Workspace) -> None:
    """When production's branch already holds acceptance's versions, no branch is created."""
    out = two.cli("promote", "acceptance", "production")
    assert out.returncode == 0 and "nothing to promote" in out.stdout
    assert two.git("for-each-ref", "refs/heads/promote/", cwd=two.repo) == ""


def test_promote_as_moves_the_file_and_changes_the_identity_fields_together(two: Workspace) -> None:
    """--as orders-eu@2.0: a new file flows/orders-eu/2.0.json whose name and version say so; the original stays."""
    ws = two
    ws.put("acceptance", "orders.json", orders(ACC_API, ACC_PW, retries=7))
    ws.cli("export", "acceptance", check=True)
    out = ws.cli("promote", "acceptance", "production", "--flow", "orders", "--as", "orders-eu@2.0", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["added"] == ["orders-eu@2.0"] and data["renamed"] == [{"from": "orders@1.0", "to": "orders-eu@2.0"}]
    moved = json.loads(ws.git("show", f"{data['branch']}:flows/orders-eu/2.0.json", cwd=ws.repo))
    assert (moved["name"], moved["version"], moved["retries"]) == ("orders-eu", "2.0", 7)
    assert "retries" not in json.loads(ws.git("show", f"{data['branch']}:flows/orders/1.0.json", cwd=ws.repo))
    merge_with_git(ws, data["branch"])
    assert ws.cli("sync", "production").returncode == 0
    live = ws.live("production")
    assert live[("orders-eu", "2.0")]["steps"][1]["config"]["password"] == PROD_PW
    assert "retries" not in live[("orders", "1.0")]
    assert ws.cli("promote", "acceptance", "production", "--as", "x@1").returncode == 1  # --as needs one --flow
    clash = ws.cli("promote", "acceptance", "production", "--flow", "orders", "--as", "Orders@9")
    assert clash.returncode == 1 and "differs only in case" in clash.stderr


def test_a_pasted_password_refuses_the_promotion_naming_the_pointer_not_the_value(two: Workspace) -> None:
    """The promotion commit must pass the secret scan; nothing is written when it does not."""
    ws = two
    clone = ws.clone("env/acceptance")
    doc = json.loads((clone / "flows/orders/1.0.json").read_text())
    doc["steps"][1]["config"]["password"] = "hunter2-pasted"
    doc["steps"][0]["config"]["note"] = f"db password is {PROD_PW}"
    commit_in_clone(ws, clone, {"flows/orders/1.0.json": doc}, "paste a password", push="env/acceptance")
    refs = ws.git("for-each-ref", cwd=ws.repo)
    out = ws.cli("promote", "acceptance", "production")
    assert out.returncode == 1
    assert "refused by the secret scan" in out.stderr
    assert "flows/orders/1.0.json:/steps/1/config/password: looks like a credential" in out.stderr
    assert "flows/orders/1.0.json:/steps/0/config/note: holds the value of secret 'production:DB_PASSWORD'" in out.stderr
    assert "hunter2-pasted" not in out.stdout + out.stderr and PROD_PW not in out.stdout + out.stderr
    assert ws.git("for-each-ref", cwd=ws.repo) == refs


def test_promote_push_sends_the_branch_to_the_configured_remote(ws: Workspace) -> None:
    """With [repository] remote, --push publishes the promotion branch there (never forced)."""
    server = ws.root / "server.git"
    ws.git("init", "-q", "--bare", str(server))
    setup_two(ws, repository=f'remote = "{server}"')
    ws.git("push", "-q", str(server), "env/acceptance", "env/production", cwd=ws.repo)
    ws.put("acceptance", "orders.json", orders(ACC_API, ACC_PW, retries=3))
    ws.cli("export", "acceptance", check=True)
    ws.git("push", "-q", str(server), "env/acceptance", cwd=ws.repo)
    out = ws.cli("promote", "acceptance", "production", "--push")
    assert out.returncode == 0, out.stdout + out.stderr
    branch = promote_branch(ws)
    assert f"pushed {branch} to {server}" in out.stdout
    assert ws.git("rev-parse", branch, cwd=server) == ws.git("rev-parse", branch, cwd=ws.repo)


# -- rollback ---------------------------------------------------------------------------


@pytest.fixture
def released(two: Workspace) -> tuple[Workspace, str]:
    """production got a promotion (orders changed, fresh added); returns the commit before it."""
    ws = two
    before = ws.git("rev-parse", "env/production", cwd=ws.repo).strip()
    ws.put("acceptance", "orders.json", orders(ACC_API, ACC_PW, retries=3))
    ws.put("acceptance", "fresh.json", billing(name="fresh", version="1"))
    ws.put("acceptance", "billing.json", billing(owner="team-b"))
    ws.cli("export", "acceptance", check=True)
    ws.cli("promote", "acceptance", "production", check=True)
    merge_with_git(ws, promote_branch(ws))
    ws.cli("sync", "production", check=True)
    assert prod_orders(ws)["retries"] == 3
    return ws, before


def test_rollback_of_one_flow_restores_it_and_keeps_history(released) -> None:
    """--flow orders@1.0: a new commit restores orders as it was; billing and fresh stay; sync applies it."""
    ws, before = released
    count = int(ws.git("rev-list", "--count", "env/production", cwd=ws.repo))
    out = ws.cli("rollback", "production", "--to", before, "--flow", "orders@1.0")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "restore  orders@1.0" in out.stdout and "remove" not in out.stdout
    assert int(ws.git("rev-list", "--count", "env/production", cwd=ws.repo)) == count + 1
    message = ws.git("log", "-1", "--format=%B", "env/production", cwd=ws.repo)
    assert message.startswith("production: roll back 1 flow to") and f"Rollback-To: {before}" in message
    assert ws.cli("sync", "production").returncode == 0
    live = ws.live("production")
    assert "retries" not in live[("orders", "1.0")]
    assert live[("orders", "1.0")]["steps"][0]["config"]["url"] == f"{PROD_API}/orders"
    assert live[("billing", "2")]["owner"] == "team-b" and ("fresh", "1") in live


def test_rollback_of_the_whole_environment_removes_flows_added_since(released) -> None:
    """Without --flow every flow is as at REV: changed ones restored, newer ones removed; sync prunes them."""
    ws, before = released
    out = ws.cli("rollback", "production", "--to", before, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["restored"] == ["billing@2", "orders@1.0"] and data["removed"] == ["fresh@1"]
    assert ws.git("rev-parse", "env/production^{tree}", cwd=ws.repo) == ws.git("rev-parse", f"{before}^{{tree}}", cwd=ws.repo)
    assert ws.cli("sync", "production").returncode == 0
    assert set(ws.live("production")) == {("orders", "1.0"), ("billing", "2")}
    assert "owner" not in ws.live("production")[("billing", "2")]
    again = ws.cli("rollback", "production", "--to", before)
    assert again.returncode == 0 and "nothing to roll back" in again.stdout


def test_rollback_retries_when_the_branch_moved_and_keeps_the_concurrent_commit(released) -> None:
    """Compare-and-swap on the tip: a push landing during the rollback is kept, the rollback re-applied on top."""
    ws, before = released
    config = load_config(ws.config)
    pushed: list[str] = []

    class RacingStore(GitStore):
        def commit(self, ref, parent, tree, message, **kw):
            if ref and not pushed:  # someone pushes to env/production right now
                clone = ws.clone("env/production", name="racer")
                commit_in_clone(ws, clone, {"flows/late/1.json": billing(name="late", version="1")}, "late", push="env/production")
                pushed.append(ws.git("rev-parse", "env/production", cwd=ws.repo).strip())
            return super().commit(ref, parent, tree, message, **kw)

    store = RacingStore(config.repository.path, author_name="t", author_email="t@x")
    got = rollback(config, store, "production", before, [FlowSelector("orders", "1.0")])
    assert got.attempts == 2 and got.parent == pushed[0]
    flows = store.flows_at(got.commit, "flows").flows
    assert FlowKey("late", "1") in flows
    assert flows[FlowKey("orders", "1.0")] == store.flows_at(before, "flows").flows[FlowKey("orders", "1.0")]


def test_a_rollback_while_the_service_runs_is_applied_by_the_service(released) -> None:
    """The running service sees the rollback commit land on env/production and applies it."""
    ws, before = released
    with ServiceProcess(ws.config) as svc:
        wait_for(lambda: svc.runs("production") >= 1, what="the startup reconcile")
        out = ws.cli("rollback", "production", "--to", before)
        assert out.returncode == 0, out.stdout + out.stderr
        wait_for(lambda: set(ws.live("production")) == {("orders", "1.0"), ("billing", "2")}
                 and "retries" not in prod_orders(ws), what="the service to apply the rollback")
        commit = ws.git("rev-parse", "env/production", cwd=ws.repo).strip()
        wait_for(lambda: svc.status("production").get("applied") == commit or
                 ws.git("rev-parse", "refs/reconciler/applied/production", cwd=ws.repo).strip() == commit,
                 what="the applied marker to reach the rollback")
    assert prod_orders(ws)["steps"][1]["config"]["password"] == PROD_PW


def test_rollback_to_an_unknown_revision_is_an_error(two: Workspace) -> None:
    """A revision that does not exist exits 1 naming it."""
    out = two.cli("rollback", "production", "--to", "v-none")
    assert out.returncode == 1 and "'v-none' is not a branch, tag or commit" in out.stderr
