"""``reconciler plan ENV --against REF --status``: the plan's verdict as a commit status on REF's commit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reconciler.errors import Problem
from reconciler.notify import plan_status
from reconciler.review import Review
from tests.conftest import Workspace
from tests.promokit import ACC_API, ACC_PW, commit_in_clone, orders, promote_branch, setup_two
from tests.test_notify_fakes import FakeForge

TOKEN = "plan-st4tus-t0ken-0123456789"


@pytest.fixture
def promoted(ws: Workspace) -> tuple[Workspace, str]:
    setup_two(ws)
    ws.put("acceptance", "orders.json", orders(ACC_API, ACC_PW, retries=3))
    ws.cli("export", "acceptance", check=True)
    ws.cli("promote", "acceptance", "production", check=True)
    return ws, promote_branch(ws)


def configure(ws: Workspace, forge: FakeForge, **extra: str) -> None:
    lines = [f'type = "{forge.kind}"', f'api = "{forge.api}"', f'repository = "{forge.repository}"',
             'token_env = "PLAN_STATUS_TOKEN"', *(f"{k} = {v}" for k, v in extra.items())]
    ws.config.write_text(ws.config.read_text() + "\n[[notify]]\n" + "\n".join(lines) + "\n")


def plan(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RECONCILER_CONFIG=str(ws.config), PLAN_STATUS_TOKEN=TOKEN)
    return subprocess.run([sys.executable, "-m", "reconciler", "plan", "production", *args], cwd=ws.root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_an_invalid_flow_in_the_merge_request_sets_failure(promoted) -> None:
    ws, branch = promoted
    clone = ws.clone(branch)
    commit_in_clone(ws, clone, {"flows/orders/1.0.json": '{"name": "orders",'}, "broken", push=branch)
    with FakeForge("gitea", TOKEN, "platform/flows") as gt:
        configure(ws, gt)
        out = plan(ws, "--against", branch, "--status")
        sha = ws.git("rev-parse", branch, cwd=ws.repo).strip()
        assert out.returncode == 1, out.stderr
        assert gt.states(sha, "flow-reconciler/production") == ["failure"]
        assert "problem(s) for production" in gt.statuses[(sha, "flow-reconciler/production")][0]["description"]
    assert f"commit status failure (flow-reconciler/production) on {sha[:12]} by notify 'gitea'" in out.stderr


def test_a_forge_table_for_other_environments_sets_nothing(promoted) -> None:
    """The table's environments filter holds; without a table for ENV, --status says so and the plan goes on."""
    ws, branch = promoted
    with FakeForge("github", TOKEN, "acme/flows") as gh:
        configure(ws, gh, environments='["acceptance"]')
        out = plan(ws, "--against", branch, "--status")
        assert out.returncode == 2 and gh.requests == []
    assert "no github, gitlab or gitea [[notify]] for production" in out.stderr


def test_status_needs_against(promoted) -> None:
    ws, _ = promoted
    out = plan(ws, "--status")
    assert out.returncode == 64 and "--status needs --against REF" in out.stderr


def test_a_merge_that_conflicts_is_a_failure() -> None:
    review = Review("production", "env/production", "a" * 40, "promote/x", "b" * 40, conflicts=("flows/a/1.json",))
    st = plan_status(review, "https://r.example.com/environments/production")
    assert (st.sha, st.state, st.context, st.ref) == ("b" * 40, "failure", "flow-reconciler/production", "promote/x")
    assert st.description == "merging into env/production conflicts in 1 file(s)"


def test_a_clean_merge_that_changes_nothing_is_a_success_and_a_commit_id_is_no_ref() -> None:
    review = Review("production", "env/production", "a" * 40, "b" * 40, "b" * 40)
    st = plan_status(review)
    assert (st.state, st.description, st.ref, st.target_url) == ("success", "the merge changes nothing in production",
                                                                  None, None)
    problem = Review("production", "env/production", None, "x", "b" * 40, problems=(Problem("x:f.json", "bad"),))
    assert plan_status(problem).state == "failure"
