"""Promotion across environments with different endpoints and secrets, through the CLI and the git CLI.

Acceptance and production each have their own API endpoint (a parameter) and
database password (a secret, in a per-environment secrets folder). The same
flow exported from either gives the same bytes, a merge has no conflicts, and
neither endpoint nor password ever reaches git.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Workspace
from tests.promokit import ACC_API, ACC_PW, PROD_API, PROD_PW, everything_in_git, write_config
from tests.promokit import orders as live_flow


@pytest.fixture
def two(ws: Workspace) -> Workspace:
    for name, pw in (("acceptance", ACC_PW), ("production", PROD_PW)):
        (ws.root / "secrets" / name).mkdir(parents=True)
        (ws.root / "secrets" / name / "DB_PASSWORD").write_text(pw + "\n")
        ws.env_dir(name).mkdir(parents=True)
    write_config(ws)
    return ws


def test_a_promotion_keeps_each_environment_its_endpoint_and_secret_and_git_holds_neither(two: Workspace) -> None:
    """export acceptance -> promote by merge -> sync production: production has its own values."""
    ws = two
    ws.put("acceptance", "orders.json", live_flow(ACC_API, ACC_PW))
    ws.cli("export", "acceptance", check=True)
    stored = ws.git("show", "env/acceptance:flows/orders/1.0.json", cwd=ws.repo)
    assert "${param:API}/orders" in stored and "${secret:DB_PASSWORD}" in stored
    # production exists with an older version of the flow, exported from production itself
    ws.put("production", "orders.json", live_flow(PROD_API, PROD_PW, retries=1))
    ws.cli("export", "production", check=True)
    # a change in acceptance, exported, promoted by a merge with the git CLI
    ws.put("acceptance", "orders.json", live_flow(ACC_API, ACC_PW, retries=3))
    ws.cli("export", "acceptance", check=True)
    clone = ws.clone("env/production")
    ws.git("merge", "-q", "--no-edit", "-X", "theirs", "origin/env/acceptance", "--allow-unrelated-histories", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    out = ws.cli("sync", "production")
    assert out.returncode == 0, out.stdout + out.stderr
    prod = ws.live("production")[("orders", "1.0")]
    assert prod["retries"] == 3
    assert prod["steps"][0]["config"]["url"] == f"{PROD_API}/orders"
    assert prod["steps"][1]["config"]["password"] == PROD_PW
    git_text = everything_in_git(ws)
    for value in (ACC_API, PROD_API, ACC_PW, PROD_PW):
        assert value not in git_text


def test_the_same_flow_exported_from_both_environments_gives_identical_bytes(two: Workspace) -> None:
    """So merging acceptance into production has no conflicts."""
    ws = two
    ws.put("acceptance", "orders.json", live_flow(ACC_API, ACC_PW))
    ws.put("production", "orders.json", live_flow(PROD_API, PROD_PW))
    ws.cli("export", "acceptance", check=True)
    ws.cli("export", "production", check=True)
    a = ws.git("rev-parse", "env/acceptance:flows/orders/1.0.json", cwd=ws.repo)
    p = ws.git("rev-parse", "env/production:flows/orders/1.0.json", cwd=ws.repo)
    assert a == p


def test_a_pasted_password_is_refused_and_the_error_names_where_not_what(two: Workspace) -> None:
    """Exporting a flow whose secret field holds an unknown value commits nothing and exits 1."""
    ws = two
    ws.put("acceptance", "orders.json", live_flow(ACC_API, "pasted-Secret-123"))
    out = ws.cli("export", "acceptance")
    assert out.returncode == 1
    assert "/steps/1/config/password" in out.stdout + out.stderr
    assert "pasted-Secret-123" not in out.stdout + out.stderr
    assert ws.git("branch", "--list", "env/acceptance", cwd=ws.repo).strip() == ""


def test_an_unknown_parameter_in_git_is_an_invalid_flow_naming_flow_pointer_and_name(two: Workspace) -> None:
    """A placeholder production has no value for is refused before import."""
    ws = two
    clone_dir = ws.root / "work"
    ws.git("init", "-q", "-b", "env/production", str(clone_dir))
    doc = live_flow("${param:API}", "${secret:DB_PASSWORD}")
    doc["steps"][0]["config"]["topic"] = "${param:TOPIC}"
    del doc["exportedAt"]
    (clone_dir / "flows" / "orders").mkdir(parents=True)
    (clone_dir / "flows" / "orders" / "1.0.json").write_text(json.dumps(doc, indent=2))
    ws.git("add", "-A", cwd=clone_dir)
    ws.git("commit", "-q", "-m", "orders", cwd=clone_dir)
    if not ws.repo.exists():
        ws.git("init", "-q", "--bare", str(ws.repo))  # the server's repository
    ws.git("push", "-q", str(ws.repo), "env/production", cwd=clone_dir)
    out = ws.cli("sync", "production")
    assert out.returncode == 1
    assert "flows/orders/1.0.json:/steps/0/config/topic" in out.stderr
    assert "unknown parameter 'TOPIC'" in out.stderr
    assert not any(Path(ws.env_dir("production")).glob("*.json"))


def test_logs_never_print_secret_values(two: Workspace) -> None:
    """A verbose sync with secrets logs names and actions only."""
    ws = two
    ws.put("acceptance", "orders.json", live_flow(ACC_API, ACC_PW))
    ws.cli("export", "acceptance", check=True)
    ws.git("branch", "env/production", "env/acceptance", cwd=ws.repo)
    out = ws.cli("sync", "production", "-v", "--log-format", "json")
    assert out.returncode == 0, out.stderr
    assert PROD_PW not in out.stdout + out.stderr and ACC_PW not in out.stdout + out.stderr
    assert ws.live("production")[("orders", "1.0")]["steps"][1]["config"]["password"] == PROD_PW
