"""The health gate against a real Node-RED (4 and 5): a deploy Node-RED accepts but does not run is restored
to the previous version and its commit quarantined; the flows that run are applied."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import structlog

from reconciler.config import load_config
from reconciler.drivers import Change
from reconciler.drivers.node_red import NodeRedDriver
from reconciler.engine import Engine
from reconciler.errors import RetryableError
from reconciler.flows import FlowKey
from reconciler.plan import State
from tests.conftest import Workspace
from tests.nodered import NodeRed, node_red_fixture
from tests.test_node_red import ONE_TAB, Scripted, push, tab_flow
from tests.test_node_red_instance import SETTINGS, fn, n
from tests.test_node_red_runtime import until

TOKEN_VAR = "RECONCILER_TEST_NR_HEALTH_TOKEN"
MISSING, THROWS, HEALTHY = FlowKey("missing", "1"), FlowKey("throws", "1"), FlowKey("healthy", "1")


instance = node_red_fixture("nr-health", SETTINGS)


@pytest.fixture
def site(ws: Workspace, instance: NodeRed, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    instance.reset()
    monkeypatch.setenv(TOKEN_VAR, instance.token)
    ws.config.write_text(
        '[repository]\npath = "state/flows.git"\n\n'
        f'[[environment]]\nname = "production"\ndriver = "node-red"\nurl = "{instance.url}"\n'
        f'token_env = "{TOKEN_VAR}"\ndrift = "restore"\nprune = true\ncheck_types = false\nhealth_timeout = 15\n')
    return ws


def engine(ws: Workspace) -> Engine:
    return Engine(load_config(ws.config), create_repository=True)


def flow(name: str, *nodes: dict[str, Any]) -> dict[str, Any]:
    tid = f"t-{name}"
    return {"name": name, "version": "1", "tab": {"id": tid, "type": "tab", "disabled": False, "info": "", "env": []},
            "nodes": [dict(x, z=tid) for x in nodes]}


def inject(nid: str, topic: str = "") -> dict[str, Any]:
    return n(nid, "inject", "", props=[{"p": "payload"}], repeat="", crontab="", once=False, topic=topic, payload="",
             payloadType="date")


def files(*docs: dict[str, Any]) -> dict[str, Any]:
    return {f"flows/{d['name']}/1.json": d for d in docs}


def running(nr: NodeRed, node_id: str) -> bool:
    return nr.admin("POST", f"/inject/{node_id}", {})[0] == 200


def test_flows_that_do_not_start_are_restored_and_quarantined_and_the_healthy_one_is_applied(
        site: Workspace, instance: NodeRed, capsys: pytest.CaptureFixture[str]) -> None:
    """A node type the instance lacks (check_types = false) and a function throwing in On Start: both back to
    their previous version, the commit quarantined for them (not applied again); the third flow lands; a new
    commit lifts the quarantine."""
    nr = instance
    v1 = files(flow("missing", inject("m-in")), flow("throws", inject("t-in"), fn("t-fn", "")),
               flow("healthy", inject("h-in")))
    engine(site)
    push(site, v1)
    assert not engine(site).sync("production").failed
    bad_init = dict(fn("t-fn", ""), initialize="throw new Error('init failed on purpose');")
    push(site, files(flow("missing", inject("m-in"), n("m-x", "no-such-node", "")),
                     flow("throws", inject("t-in"), bad_init), flow("healthy", inject("h-in", topic="v2"))))
    with structlog.testing.capture_logs() as logs:
        started = time.monotonic()
        out = engine(site).sync("production")
        took = time.monotonic() - started
    assert set(out.failed) == set(out.quarantined) == {MISSING, THROWS}
    assert "'no-such-node'" in out.failed[MISSING] and "the previous version was deployed again" in out.failed[MISSING]
    assert "t-fn" in out.failed[THROWS] and "init failed on purpose" in out.failed[THROWS]
    assert [s.key for s in out.done] == [HEALTHY]
    assert nr.node("m-x") is None and nr.node("t-fn")["initialize"] == "" and nr.node("h-in")["topic"] == "v2"
    assert until(lambda: running(nr, "m-in") and running(nr, "t-in") and running(nr, "h-in"))  # all started again
    quarantined = json.loads(site.git("show", "refs/reconciler/quarantine/production:state.json", cwd=site.repo))
    assert sorted(quarantined["flows"]) == ["missing@1", "throws@1"]
    gate = next(e for e in logs if e["event"] == "node-red health gate")
    with capsys.disabled():
        print(f"\nnode-red {nr.install.version} health gate: runtime-deploy {gate['seconds']:.3f} s after the POST "
              f"answered; the whole sync (deploy, gate, restore) {took:.2f} s")

    rev = nr.flows()[0]
    again = engine(site).sync("production")
    assert not again.done and again.plan.counts()[State.QUARANTINED.value] == 2
    assert nr.flows()[0] == rev  # nothing deployed again

    push(site, files(flow("throws", inject("t-in"), fn("t-fn", ""), inject("t-in2"))))
    fixed = engine(site).sync("production")
    assert [s.key for s in fixed.done] == [THROWS] and not fixed.failed
    assert fixed.plan.counts()[State.QUARANTINED.value] == 1


def test_a_missing_module_is_unhealthy_naming_the_module(site: Workspace, instance: NodeRed) -> None:
    """A function loading a module the instance may not install: Node-RED stops the flows, the gate says which."""
    engine(site)
    push(site, files(flow("lib", inject("l-in"))))
    assert not engine(site).sync("production").failed
    uses = dict(fn("l-fn", ""), libs=[{"var": "m", "module": "reconciler-no-such-module"}])
    push(site, files(flow("lib", inject("l-in"), uses)))
    out = engine(site).sync("production")
    why = out.failed[FlowKey("lib", "1")]
    assert "modules missing: 'reconciler-no-such-module'" in why
    assert instance.node("l-fn") is None and until(lambda: running(instance, "l-in"))


def test_flows_stopped_by_a_person_are_not_a_failed_deploy(site: Workspace, instance: NodeRed) -> None:
    """POST /flows/state stop: the deploy lands and stays stopped, as the person asked; nothing is restored."""
    instance.set_state("stop")
    engine(site)
    push(site, files(flow("calm", inject("c-in"))))
    out = engine(site).sync("production")
    assert not out.failed and not out.quarantined and out.health_checked == 1
    assert instance.node("c-in") is not None


def test_comms_unreachable_is_retryable_before_anything_is_deployed() -> None:
    """A Node-RED whose /comms is no websocket: a RetryableError naming it, and no POST /flows sent."""
    with Scripted(lambda m, p, a: (200, ONE_TAB)) as fake:
        driver = NodeRedDriver(fake.url, check_types=False, sleep=lambda s: None, timeout=2)
        driver.export()
        with pytest.raises(RetryableError, match="/comms .* is unreachable.*nothing was deployed"):
            driver.apply([Change(FlowKey("billing", "1"), _data(tab_flow("billing")), None)])
    assert ("POST", "/flows") not in fake.seen


def test_a_watch_whose_connection_keeps_dropping_gives_up_within_the_timeout() -> None:
    """The gate's wait is bounded: a /comms connection that drops is opened again once, then the watch gives
    up, and the flows count as not started within the timeout."""
    from reconciler.drivers.node_red.health import Seen, Watch, verdict

    class Dropping:
        """A connection that gives the retained messages, then drops."""

        def __init__(self) -> None:
            self.calls = 0

        def subscribe(self, topic: str) -> None:
            pass

        def messages(self, deadline: float):
            self.calls += 1
            if self.calls == 1:
                return [("notification/runtime-deploy", {"revision": "an older one"})]
            raise EOFError("dropped")

        def close(self) -> None:
            pass

    watch = Watch(Dropping, 0.5)  # type: ignore[arg-type]
    seen = watch.wait("r" * 64, 0.5, 0.1)
    assert isinstance(seen, Seen) and seen.reconnected and not seen.deployed
    assert verdict(seen, {HEALTHY: None}, "r" * 64, 0.5) == {
        HEALTHY: f"Node-RED did not report the deploy (rev {'r' * 12}) started within 0.5 s"}


def _data(doc: dict[str, Any]) -> bytes:
    from reconciler.canonical import canonicalize

    return canonicalize(doc)


def test_flows_that_start_at_once_end_the_window_at_the_barrier_and_their_errors_are_still_caught(
        ws: Workspace, instance: NodeRed, monkeypatch: pytest.MonkeyPatch) -> None:
    """Core nodes that start nothing asynchronous: the gate stops listening once Node-RED answered a message
    sent after runtime-deploy (not after the whole settle window), and a function whose body does not compile
    (logged in a microtask of its start) is still caught and restored."""
    instance.reset()
    monkeypatch.setenv(TOKEN_VAR, instance.token)
    ws.config.write_text(
        '[repository]\npath = "state/flows.git"\n\n'
        f'[[environment]]\nname = "production"\ndriver = "node-red"\nurl = "{instance.url}"\n'
        f'token_env = "{TOKEN_VAR}"\ndrift = "restore"\nprune = true\nhealth_timeout = 30\nhealth_settle = 20\n')
    engine(ws)
    push(ws, files(flow("compiles", inject("c-in"), fn("c-fn", "")), flow("healthy", inject("h-in"))))
    with structlog.testing.capture_logs() as logs:
        assert not engine(ws).sync("production").failed
    assert next(e for e in logs if e["event"] == "node-red health gate")["barrier"] is True
    broken = dict(fn("c-fn", ""), func="return msg;;; }{")
    push(ws, files(flow("compiles", inject("c-in"), broken), flow("healthy", inject("h-in", topic="v2"))))
    with structlog.testing.capture_logs() as logs:
        out = engine(ws).sync("production")
    gate = next(e for e in logs if e["event"] == "node-red health gate")
    assert gate["barrier"] is True and gate["unhealthy"] == 1
    why = out.failed[FlowKey("compiles", "1")]
    assert "c-fn" in why and "SyntaxError" in why and "the previous version was deployed again" in why
    assert [s.key for s in out.done] == [HEALTHY]
    assert instance.node("c-fn")["func"] != broken["func"]


def test_what_starts_at_once() -> None:
    """Only core kinds that start nothing asynchronous skip the rest of the settle window."""
    from reconciler.drivers.node_red.health import starts_at_once

    plain = [{"id": "t", "type": "tab"}, inject("i"), fn("f", ""), n("d", "debug", ""),
             {"id": "s", "type": "subflow:sf"}, {"id": "sf", "type": "subflow"}]
    assert starts_at_once(plain)
    assert not starts_at_once([dict(fn("f", ""), initialize="await x();")])  # On Start runs asynchronously
    assert not starts_at_once([dict(fn("f", ""), libs=[{"var": "m", "module": "m"}])])  # modules load first
    assert not starts_at_once([dict(inject("i"), once=True)])  # fires by itself right after the start
    assert not starts_at_once([dict(inject("i"), repeat="1")])
    assert not starts_at_once([n("m", "mqtt in", "")])  # connects: its errors come later
    assert not starts_at_once([{"id": "b", "type": "mqtt-broker"}])
