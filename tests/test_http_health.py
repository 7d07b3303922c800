"""The http driver's health gate ([environment.health]): against the in-process DPM-like platform on
127.0.0.1, whose status route says "starting", then "running", or "failed" for a flow that cannot start.
A flow that fails is restored to its previous version and its commit quarantined; one that never settles
is unhealthy at the deadline; a healthy one is applied; a new commit lifts the quarantine."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.drivers import HealthChecked
from reconciler.drivers.http import HttpDriver
from reconciler.flows import FlowKey
from reconciler.plan import State
from tests.conftest import Workspace, flow
from tests.dpm_server import DpmServer
from tests.test_http_driver import TOKEN, engine, mapping, push, use_example

HEALTH = {"path": "/flows/{name}/versions/{version}/status", "state": "/status/state", "healthy": ["running"],
          "unhealthy": ["failed"], "message": "/status/error", "interval": 0.02}
ORDERS, BILLING = FlowKey("orders", "1.0"), FlowKey("billing", "1")


@pytest.fixture
def dpm():
    with DpmServer(TOKEN) as server:
        yield server


def test_only_a_mapping_with_a_health_route_makes_a_health_checked_driver(dpm: DpmServer) -> None:
    plain = mapping(dpm.url).build_driver()
    assert type(plain) is HttpDriver and not isinstance(plain, HealthChecked)
    assert isinstance(mapping(dpm.url, health=HEALTH).build_driver(), HealthChecked)


def test_a_health_route_by_id_needs_list_id_and_a_state_pointer(dpm: DpmServer) -> None:
    with pytest.raises(ValidationError, match="set list.id"):
        mapping(dpm.url, health={**HEALTH, "path": "/flows/{id}/status"})
    with pytest.raises(ValidationError, match="state"):
        mapping(dpm.url, health={k: v for k, v in HEALTH.items() if k != "state"})
    with pytest.raises(ValidationError, match="healthy"):
        mapping(dpm.url, health={**HEALTH, "healthy": []})


def test_the_gate_waits_through_starting_and_reports_failed_and_never_settling_flows(
        dpm: DpmServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPM_TOKEN", TOKEN)
    dpm.put(flow("ok", "1"))
    dpm.put(flow("broken", "1", start="fails"))
    dpm.put(flow("stuck", "1", start="hangs"))
    d = mapping(dpm.url, health=HEALTH).build_driver()
    bad = d.check_health([FlowKey("ok", "1"), FlowKey("broken", "1"), FlowKey("stuck", "1"), FlowKey("gone", "1")],
                         timeout=0.5)
    assert set(bad) == {FlowKey("broken", "1"), FlowKey("stuck", "1"), FlowKey("gone", "1")}
    assert bad[FlowKey("broken", "1")] == 'state "failed": step \'load\' could not start: connection refused'
    assert bad[FlowKey("stuck", "1")] == 'not reported healthy within 0.5 s (state "starting")'
    assert bad[FlowKey("gone", "1")] == "not reported healthy within 0.5 s (HTTP 404 (not deployed yet))"
    assert dpm.polls[("ok", "1")] == 2  # "starting" once, then "running": read no more


@pytest.fixture
def prod(ws: Workspace, dpm: DpmServer, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The shipped DPM example with a health route and a short gate; orders and billing synced."""
    monkeypatch.setenv("DPM_TOKEN", TOKEN)
    use_example(ws, dpm)
    text = ws.config.read_text()
    env_at = text.index('name = "production"')
    text = text[:env_at] + 'health_timeout = 2\n' + text[env_at:]
    health = "\n[environment.health]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in HEALTH.items()) + "\n"
    ws.config.write_text(text + health)  # production is the example's last environment
    ws.put("acceptance", "orders.json", flow("orders", "1.0"))
    ws.put("acceptance", "billing.json", flow("billing", "1"))
    engine(ws).export("acceptance")
    ws.git("branch", "env/production", "env/acceptance", cwd=ws.repo)
    out = engine(ws).sync("production")
    assert not out.failed and not out.problems and out.health_checked == 2
    return ws


def test_a_flow_that_fails_to_start_is_restored_and_quarantined_and_a_new_commit_lifts_it(
        prod: Workspace, dpm: DpmServer) -> None:
    push(prod, "flows/orders/1.0.json", lambda d: d.update(start="fails", retries=5))
    push(prod, "flows/billing/1.json", lambda d: d.update(retries=2))
    out = engine(prod).sync("production")
    assert set(out.failed) == set(out.quarantined) == {ORDERS}
    assert "could not start: connection refused" in out.failed[ORDERS]
    assert "the previous version was deployed again" in out.failed[ORDERS]
    assert [s.key for s in out.done] == [BILLING] and dpm.get("billing", "1")["retries"] == 2
    live = dpm.get("orders", "1.0")
    assert "start" not in live and "retries" not in live  # the previous version runs again
    quarantined = json.loads(prod.git("show", "refs/reconciler/quarantine/production:state.json", cwd=prod.repo))
    assert sorted(quarantined["flows"]) == ["orders@1.0"]

    again = engine(prod).sync("production")
    assert not again.done and again.plan.counts()[State.QUARANTINED.value] == 1  # not applied in a loop

    push(prod, "flows/orders/1.0.json", lambda d: d.pop("start"))
    fixed = engine(prod).sync("production")
    assert [s.key for s in fixed.done] == [ORDERS] and not fixed.failed
    assert dpm.get("orders", "1.0")["retries"] == 5


def test_with_on_unhealthy_report_the_failing_version_stays_and_is_quarantined(prod: Workspace, dpm: DpmServer) -> None:
    text = prod.config.read_text()
    env_at = text.index('name = "production"')
    prod.config.write_text(text[:env_at] + 'on_unhealthy = "report"\n' + text[env_at:])
    push(prod, "flows/orders/1.0.json", lambda d: d.update(start="fails"))
    out = engine(prod).sync("production")
    assert set(out.quarantined) == {ORDERS}
    assert dpm.get("orders", "1.0")["start"] == "fails"  # reported, not restored
