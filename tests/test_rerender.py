"""A parameter or secret changed in the config or the secret store, git unchanged: the flow is deployed
with the new value whatever the drift policy, and a real edit in the environment is still drift."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Workspace


def _params(ws: Workspace, api: str) -> None:
    ws.write_config()
    text = ws.config.read_text().replace('name = "production"\n', f'name = "production"\nparams = {{ API = "{api}" }}\n')
    ws.config.write_text(text)


def _setup(ws: Workspace, drift: str) -> None:
    ws.add_env("production", drift=drift, secrets_dir="secrets")
    _params(ws, "https://old.example.com")
    (ws.root / "secrets").mkdir()
    (ws.root / "secrets" / "DB_PASSWORD").write_text("first-pa55word")
    ws.init_repo()
    clone = ws.clone()
    ws.git("checkout", "-q", "-b", "env/production", cwd=clone)
    (clone / "flows/orders").mkdir(parents=True)
    (clone / "flows/orders/1.json").write_text(json.dumps({
        "name": "orders", "version": "1",
        "steps": [{"id": "in", "config": {"url": "${param:API}/orders"}},
                  {"id": "db", "config": {"password": "${secret:DB_PASSWORD}"}}]}, indent=2))
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-qm", "orders", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    assert ws.cli("sync", "production").returncode == 0


def _live(ws: Workspace) -> dict:
    return ws.live("production")[("orders", "1")]


@pytest.mark.parametrize("drift", ["report", "restore", "adopt"])
def test_a_new_parameter_value_is_deployed_not_taken_for_drift(ws: Workspace, drift: str) -> None:
    _setup(ws, drift)
    _params(ws, "https://new.example.com")
    plan = ws.cli("plan", "production")
    assert plan.returncode == 2 and "a parameter or secret value changed since it was applied" in plan.stdout
    assert "drifted 0" in plan.stdout
    out = ws.cli("sync", "production")
    assert out.returncode == 0, out.stdout + out.stderr
    assert _live(ws)["steps"][0]["config"]["url"] == "https://new.example.com/orders"
    assert ws.git("branch", "--list", "drift/production", cwd=ws.repo).strip() == "" or drift == "restore"
    assert ws.cli("plan", "production").returncode == 0


def test_a_rotated_secret_is_deployed_and_never_reaches_git(ws: Workspace) -> None:
    _setup(ws, "report")
    (ws.root / "secrets" / "DB_PASSWORD").write_text("second-pa55word")
    out = ws.cli("sync", "production")
    assert out.returncode == 0 and "secret value changed" in out.stdout
    assert _live(ws)["steps"][1]["config"]["password"] == "second-pa55word"
    history = ws.git("log", "--all", "-p", cwd=ws.repo)
    assert "first-pa55word" not in history and "second-pa55word" not in history


def test_an_edit_made_together_with_a_new_value_is_still_drift(ws: Workspace) -> None:
    """The environment edited by hand *and* a parameter changed: the live flow is not git's version with
    old values, so it is drift (reported here), not silently overwritten."""
    _setup(ws, "report")
    path = next((ws.env_dir("production")).glob("*.json"))
    doc = json.loads(path.read_text())
    doc["steps"].append({"id": "audit", "config": {}})
    path.write_text(json.dumps(doc))
    _params(ws, "https://new.example.com")
    out = ws.cli("sync", "production")
    assert "drifted 1" in out.stdout and "audit" in path.read_text()
