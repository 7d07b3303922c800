"""The real service (``reconciler run``) notifying real receivers on 127.0.0.1: commit statuses on a fake GitHub
(checked against its OpenAPI description), a signed webhook, Slack; and no credential in any of its log lines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import Workspace, flow
from tests.servicekit import ServiceProcess, wait_for
from tests.test_notify_config import tables
from tests.test_notify_fakes import FakeForge, OpenAPI, SlackReceiver, WebhookReceiver, github_openapi  # noqa: F401

TOKEN, BAD_TOKEN = "ghp-e2e-t0ken-0123456789abcdef", "ghp-e2e-wr0ng-0123456789abcdef"
KEY = "e2e-hmac-k3y-0123456789abcdef"
SLACK_PATH = "/services/T0E2E/B0E2E/e2e-sl4ck-s3cret"
CONTEXT = "flow-reconciler/production"
PUBLIC = "https://reconciler.example.com"


@pytest.fixture
def receivers(github_openapi: OpenAPI):  # noqa: F811
    with (FakeForge("github", TOKEN, "acme/flows", openapi=github_openapi) as gh, WebhookReceiver(KEY) as hook,
          SlackReceiver(SLACK_PATH) as slack):
        yield gh, hook, slack


@pytest.fixture
def svc(ws: Workspace, receivers):
    gh, hook, slack = receivers
    ws.add_env("production", drift="restore", interval=3600)
    ws.put("production", "orders.json", flow("orders", "1.0"))
    ws.cli("export", "production", check=True)
    (ws.root / "hook-key").write_text(KEY + "\n")
    github = {"type": "github", "api": gh.api, "repository": "acme/flows", "token_env": "E2E_GITHUB_TOKEN"}
    ws.write_config(f'\n[server]\npublic_url = "{PUBLIC}"\n' + tables(
        github,
        {**github, "name": "github-wrong-token", "token_env": "E2E_BAD_TOKEN", "events": ["applied"]},
        {"type": "webhook", "url": f"{hook.url}/hooks/flows", "secret_file": "hook-key"},
        {"type": "slack", "url_env": "E2E_SLACK_URL", "events": ["applied", "invalid"]},
    ))
    env = {"E2E_GITHUB_TOKEN": TOKEN, "E2E_BAD_TOKEN": BAD_TOKEN, "E2E_SLACK_URL": slack.hook}
    with ServiceProcess(ws.config, env=env) as s:
        wait_for(lambda: s.runs("production") >= 1, what="the startup reconcile")
        yield s


def push(ws: Workspace, clone: Path, text: str, message: str) -> str:
    (clone / "flows/orders/1.0.json").write_text(text)
    ws.git("commit", "-q", "-am", message, cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    return ws.git("rev-parse", "HEAD", cwd=clone).strip()


def test_a_push_gets_pending_then_success_and_an_invalid_flow_failure(ws: Workspace, svc: ServiceProcess,
                                                                      receivers) -> None:
    """Statuses on the pushed commits, linking to the status page; the webhook and Slack get the events;
    the log shows no token, key or webhook URL, even for the sink whose token GitHub refuses."""
    gh, hook, slack = receivers
    clone = ws.clone("env/production")
    doc = json.loads((clone / "flows/orders/1.0.json").read_text())
    doc["steps"][0]["config"]["url"] = "/orders/v2"
    good = push(ws, clone, json.dumps(doc, indent=2) + "\n", "orders: v2")
    wait_for(lambda: gh.states(good, CONTEXT) == ["pending", "success"], timeout=20, what="pending then success")
    bad = push(ws, clone, '{"name": "orders", "version": "1.0",\n', "orders: broken")
    wait_for(lambda: gh.states(bad, CONTEXT)[-1:] == ["failure"], timeout=20, what="failure on the broken commit")
    assert gh.states(bad, CONTEXT) == ["pending", "failure"]

    final = gh.statuses[(bad, CONTEXT)][-1]
    assert final["target_url"] == f"{PUBLIC}/environments/production"
    assert "cannot be used" in final["description"] and len(final["description"]) <= 140
    assert gh.invalid == []  # every request as GitHub's OpenAPI description has it
    wait_for(lambda: "invalid" in [e["kind"] for e in hook.events if e["commit"] == bad], what="the webhook")
    assert [e["kind"] for e in hook.events if e["commit"] == good] == ["pending", "applied"]
    wait_for(lambda: any(f"invalid `{bad[:12]}`" in t for t in slack.texts), what="Slack")
    assert any(f"*production* applied `{good[:12]}`" in t for t in slack.texts)
    wait_for(lambda: svc.metric("reconciler_notifications_total", sink="github-wrong-token", result="failed") >= 1,
             what="the refused token to be counted")
    assert svc.metric("reconciler_notifications_total", sink="github", result="delivered") >= 4

    assert svc.terminate() == 0
    assert svc.find("service stopped")[0]["notifications_flushed"] is True
    lines = "\n".join(svc.raw)
    assert svc.find("notification delivered", sink="github", what=f"success {CONTEXT}@{good[:12]}")
    assert "$E2E_BAD_TOKEN" in lines  # the refusal names the variable...
    for secret in (TOKEN, BAD_TOKEN, KEY, slack.hook, SLACK_PATH, "e2e-sl4ck-s3cret"):
        assert secret not in lines  # ...and no line quotes a credential


def test_sigterm_with_a_receiver_that_hangs_stops_within_the_grace(ws: Workspace, receivers) -> None:
    """What cannot be delivered before shutdown_grace runs out is dropped and counted; the service exits 0."""
    gh, _, _ = receivers
    gh.hang = 60.0
    ws.add_env("production", drift="restore", interval=3600)
    ws.put("production", "orders.json", flow("orders", "1.0"))
    ws.cli("export", "production", check=True)
    ws.write_config('\n[server]\nshutdown_grace = 2\n' + tables(
        {"type": "github", "api": gh.api, "repository": "acme/flows", "token_env": "E2E_GITHUB_TOKEN", "timeout": 30}))
    with ServiceProcess(ws.config, env={"E2E_GITHUB_TOKEN": TOKEN}) as svc:
        wait_for(lambda: svc.runs("production") >= 1, what="the startup reconcile")
        clone = ws.clone("env/production")
        push(ws, clone, json.dumps(flow("orders", "1.0", owner="git"), indent=2) + "\n", "orders: owner")
        wait_for(lambda: len(gh.requests) >= 1, timeout=20, what="a status request to hang")
        started = time.monotonic()
        assert svc.terminate() == 0
        assert time.monotonic() - started < 10
        assert svc.find("notifications not delivered before the deadline, dropped")
        assert svc.find("service stopped")[0]["notifications_flushed"] is False
