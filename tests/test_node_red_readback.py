"""The read after a deploy, against a real Node-RED (4 and 5): when Node-RED's answer proves what it holds
(its rev is the SHA-256 of the flows it keeps, as JSON) the driver does not read them back, and what it
reports is what a GET /flows reads; when the answer does not prove it, the driver reads them back. What an
export made of the nodes it deployed is reused only for exactly those nodes at that rev."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.canonical import canonicalize
from reconciler.drivers import Change
from reconciler.drivers.node_red import NodeRedDriver
from reconciler.flows import FlowKey
from tests.nodered import NodeRed, node_red_fixture
from tests.test_node_red import broker, mqtt_out, tab_flow

TOKEN_VAR = "RECONCILER_TEST_NR_READBACK_TOKEN"
ORDERS, BILLING = FlowKey("orders", "1"), FlowKey("billing", "1")

instance = node_red_fixture("nr-readback")


@pytest.fixture
def nr(instance: NodeRed, monkeypatch: pytest.MonkeyPatch) -> NodeRed:
    instance.reset()
    monkeypatch.setenv(TOKEN_VAR, instance.token)
    return instance


class Counted(NodeRedDriver):
    """The driver, counting its GET /flows."""

    def __init__(self, url: str, **kw: Any):
        super().__init__(url, token_env=TOKEN_VAR, check_types=False, **kw)
        self.gets = 0
        get = self.api.get_flows

        def counted():
            self.gets += 1
            return get()

        self.api.get_flows = counted  # type: ignore[method-assign]


def fresh(nr: NodeRed, driver: NodeRedDriver | None = None) -> dict[FlowKey, tuple[str, bytes | None]]:
    """What another driver (with ``driver``'s memory of the credentials it sent) reads with one GET /flows:
    id and bytes of every flow."""
    d = NodeRedDriver(nr.url, token_env=TOKEN_VAR)
    if driver is not None:
        d.recall(driver.memory())
    try:
        return {k: (f.oid, f.data) for k, f in d.export().flows.items()}
    finally:
        d.close()


def awkward() -> dict[str, Any]:
    """A flow whose JSON is no everyday ASCII: unicode, control characters, an escaped slash, credentials
    (which Node-RED keeps apart), a cred env entry of the tab."""
    doc = tab_flow("orders", code="// \u00e9t\u00e9 \u2028 \U0001F600 \x01\x1f \"q\" \\ </script>\nreturn msg;",
                   extra=[mqtt_out("orders", "c-b")],
                   configs=[dict(broker("c-b"), credentials={"user": "u\u00e9", "password": "p"})])
    doc["tab"]["env"] = [{"name": "KEY", "value": "", "type": "cred"}]
    doc["tab"]["credentials"] = {"KEY": "k-1"}
    return doc


def test_a_deploy_whose_answer_proves_what_node_red_holds_is_not_read_back(nr: NodeRed) -> None:
    driver = Counted(nr.url)
    driver.export()
    assert driver.apply([Change(ORDERS, canonicalize(awkward()), None),
                         Change(BILLING, canonicalize(tab_flow("billing")), None)]) == {}
    before = driver.gets
    now = driver.reread([ORDERS, BILLING, FlowKey("gone", "1")])
    assert driver.gets == before, "the deploy's answer proved what Node-RED holds: no GET /flows"
    live = fresh(nr, driver)
    assert live[ORDERS][0] != fresh(nr)[ORDERS][0]  # the id of what was written, credentials in
    assert now == {ORDERS: live[ORDERS][0], BILLING: live[BILLING][0], FlowKey("gone", "1"): None}
    # the snapshot the next apply is guarded by is Node-RED's rev: an edit made since is a conflict
    assert driver._snapshot is not None and driver._snapshot.rev == nr.flows()[0]
    assert {k: (f.oid, f.data) for k, f in driver._snapshot.live.flows.items()} == live
    driver.close()


def test_a_deploy_node_red_writes_in_other_words_is_read_back(nr: NodeRed) -> None:
    """A number JavaScript writes otherwise (100.0 is 100 there): the rev is not the hash of our JSON, so the
    flows are read back, and what the driver reports is still what Node-RED holds."""
    doc = tab_flow("orders")
    doc["nodes"][0]["x"] = 100.5
    doc["nodes"][1]["x"] = 300.0
    driver = Counted(nr.url)
    assert driver.apply([Change(ORDERS, canonicalize(doc), None)]) == {}
    assert driver._written is not None and not driver._written.proven
    before = driver.gets
    assert driver.reread([ORDERS]) == {ORDERS: fresh(nr)[ORDERS][0]}
    assert driver.gets == before + 1
    driver.close()


def test_what_was_derived_before_a_deploy_is_taken_only_for_the_same_nodes(nr: NodeRed) -> None:
    """An export after the deploy reads the same as a fresh driver's; after an edit in the editor, it reads
    the edit (nothing derived before is taken for other nodes)."""
    driver = Counted(nr.url)
    assert driver.apply([Change(ORDERS, canonicalize(tab_flow("orders")), None)]) == {}
    assert {k: (f.oid, f.data) for k, f in driver.export().flows.items()} == fresh(nr)
    nr.edit(lambda nodes: [n.update(func="return null;") for n in nodes if n.get("type") == "function"])
    got = driver.export().flows[ORDERS]
    assert (got.oid, got.data) == fresh(nr)[ORDERS] and b"return null;" in (got.data or b"")
    driver.close()


def test_the_health_gate_judges_the_proven_deploy_without_reading_it_back(nr: NodeRed) -> None:
    driver = Counted(nr.url, health_settle=0.1)
    assert driver.apply([Change(ORDERS, canonicalize(tab_flow("orders")), None)]) == {}
    before = driver.gets
    assert driver.reread([ORDERS]) == {ORDERS: fresh(nr)[ORDERS][0]}
    assert driver.check_health([ORDERS], 15) == {}
    assert driver.gets == before
    driver.close()
