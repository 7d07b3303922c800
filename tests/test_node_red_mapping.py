"""The Node-RED driver's pure parts, without a Node-RED: versions in env lists, the instance document,
credentials and their memory, the health gate's verdict."""

from __future__ import annotations

import json

import pytest

from reconciler.drivers._common import Refused
from reconciler.drivers.node_red import instance_document
from reconciler.drivers.node_red.credentials import Memory, fingerprint, surface_inline
from reconciler.drivers.node_red.health import Seen, expect_of, verdict
from reconciler.drivers.node_red.versions import tab_for_git, tab_for_node_red
from reconciler.flows import FlowKey

V = "FLOW_VERSION"
ENTRY = {"name": V, "value": "3", "type": "str"}
A, B = {"name": "A", "value": "a", "type": "str"}, {"name": "B", "value": "b", "type": "str"}


@pytest.mark.parametrize(("env", "git_env", "version"), [
    (None, None, "1"),  # no env list: none is added
    ([], [], "1"),  # an empty one stays empty
    ([A, ENTRY], [A], "3"),  # last, plain, not the default: left out of git, appended again
    ([ENTRY], None, "3"),
    ([ENTRY, A], [{"name": V, "type": "str"}, A], "3"),  # in the middle: kept in place, without its value
    ([A, dict(ENTRY, value="1")], [A, {"name": V, "type": "str"}], "1"),  # the default, last: kept
    ([A, dict(ENTRY, type="env")], [A, {"name": V, "type": "env"}], "3"),  # not a plain string: kept
])
def test_the_version_entry_reads_and_writes_back_in_place(env, git_env, version) -> None:
    """Export gives the env list git holds and the version; import gives back exactly the live env list."""
    live = {"id": "t", "type": "tab", "label": "orders", **({"env": env} if env is not None else {})}
    doc_tab, got = tab_for_git(live, V, "1")
    assert got == version and doc_tab.get("env") == git_env and "label" not in doc_tab
    assert tab_for_node_red(doc_tab, "orders", version, V, "1") == live


def test_a_version_entry_with_a_value_in_git_is_refused() -> None:
    """The value is /version's: an entry carrying one too would say it twice."""
    with pytest.raises(Refused, match="/tab/env/0/value"):
        tab_for_node_red({"id": "t", "type": "tab", "env": [ENTRY]}, "orders", "3", V, "1")


def test_the_instance_document_holds_what_no_tab_uses_and_a_tab_order_not_by_name() -> None:
    """Unused config nodes (z "" dropped) and subflows, nodes of no tab, and /tabs only when not by name."""
    nodes = [
        {"id": "t2", "type": "tab", "label": "b"}, {"id": "t1", "type": "tab", "label": "a"},
        {"id": "used", "type": "mqtt-broker"}, {"id": "n1", "type": "mqtt out", "z": "t1", "broker": "used"},
        {"id": "spare", "type": "mqtt-broker", "z": ""}, {"id": "sf", "type": "subflow", "name": "s"},
        {"id": "sf-1", "type": "function", "z": "sf"}, {"id": "lost", "type": "debug", "z": "gone"},
    ]
    assert instance_document(nodes) == {
        "name": "_instance", "version": "1", "tabs": ["t2", "t1"],
        "configs": [{"id": "spare", "type": "mqtt-broker"}],
        "subflows": [{"id": "sf", "type": "subflow", "name": "s"}, {"id": "sf-1", "type": "function", "z": "sf"}],
        "nodes": [{"id": "lost", "type": "debug", "z": "gone"}],
    }
    assert instance_document([nodes[1], nodes[0], nodes[2], nodes[3]]) is None  # by name, nothing spare


def test_an_inline_cred_value_is_read_as_a_credential() -> None:
    """A cred env entry's inline value moves to credentials (global-config: its map); the entry keeps ""."""
    tab = {"id": "t", "type": "tab", "env": [{"name": "K", "value": "v", "type": "cred"}, A]}
    assert surface_inline(tab) == {"id": "t", "type": "tab", "env": [{"name": "K", "value": "", "type": "cred"}, A],
                                   "credentials": {"K": "v"}}
    gc = {"id": "g", "type": "global-config", "env": [{"name": "K", "value": "v", "type": "cred"}]}
    assert surface_inline(gc)["credentials"] == {"map": {"K": "v"}}
    plain = {"id": "f", "type": "function", "env": [{"name": "K", "value": "v", "type": "cred"}]}
    assert surface_inline(plain) is plain  # not an env list of Node-RED's


def test_the_memory_keeps_fingerprints_and_ids_never_values() -> None:
    """What is kept in git: per node a salted fingerprint and field names; it loads back the same."""
    memory = Memory()
    node = {"id": "b", "type": "mqtt-broker", "credentials": {"user": "ada-4711", "password": "pw-4711"}}
    memory.deployed([node], [("orders@1", "live-id", "written-id", [node])], [])
    state = memory.dump()
    assert "4711" not in json.dumps(state)
    assert fingerprint("b", node["credentials"]) != fingerprint("c", node["credentials"])  # salted by the node id
    again = Memory.load(state)
    assert again.dump() == state and again.written_id("orders@1", "live-id", {"b"}) == "written-id"
    assert again.written_id("orders@1", "live-id", set()) is None  # the node is gone: its credentials too
    assert again.written_id("orders@1", "other", {"b"}) is None
    assert again.to_send([node], {"b"}) == [{"id": "b", "type": "mqtt-broker"}]  # unchanged: not sent
    rotated = dict(node, credentials={"user": "ada-4711"})
    assert again.to_send([rotated], {"b"}) == [dict(rotated, credentials={"user": "ada-4711", "password": ""})]


def test_the_verdict_names_the_flows_a_missing_type_or_a_failing_node_belongs_to() -> None:
    """Types and modules by flow, node errors by id (a subflow instance's inner nodes too)."""
    orders = expect_of([{"id": "t1", "type": "tab"}, {"id": "x", "type": "no-such-node", "z": "t1"},
                        {"id": "i", "type": "subflow:sf", "z": "t1"}])
    billing = expect_of([{"id": "t2", "type": "tab"}, {"id": "f", "type": "function", "z": "t2",
                                                        "libs": [{"var": "m", "module": "left-pad"}]}])
    expect = {FlowKey("orders", "1"): orders, FlowKey("billing", "1"): billing}
    stop = {"state": "stop", "error": "missing-types", "types": ["no-such-node"]}
    assert verdict(Seen(True, stop), expect, "r" * 64, 5) == {
        FlowKey("orders", "1"): "Node-RED stopped the flows: node types missing: 'no-such-node' (install them, or "
                                "restore the flows)"}
    error = {"id": "i-inner", "type": "function", "level": 20,
             "msg": json.dumps({"__enc__": True, "type": "error", "data": {"name": "TypeError", "message": "boom"}})}
    assert verdict(Seen(True, {"state": "start"}, [error]), expect, "r" * 64, 5) == {
        FlowKey("orders", "1"): "node i-inner (function) reported an error as it started: TypeError: boom"}
    modules = {"state": "stop", "error": "missing-modules", "modules": [{"module": "left-pad", "error": "x"}]}
    assert list(verdict(Seen(True, modules), expect, "r" * 64, 5)) == [FlowKey("billing", "1")]


@pytest.mark.parametrize("variant", ["plain", "credentials", "inline cred", "global z", "empty list", "big int"])
def test_the_id_of_an_import_as_node_red_returns_it_is_computed_when_it_differs(variant: str) -> None:
    """_incoming takes the document's own id as the live one only when nothing is stripped or moved; each
    variant's live id is what canonicalising the document without its credentials gives."""
    from reconciler.canonical import canonicalize
    from reconciler.drivers import Change
    from reconciler.drivers.node_red.mapping import CANONICAL_IGNORE, NODE_LISTS_BY_ID, _incoming, _clone
    from reconciler.canonical import Rules
    from reconciler.flows import Identity, flow_from_doc

    rules = Rules.of(CANONICAL_IGNORE, NODE_LISTS_BY_ID)
    doc = {"name": "f", "version": "1", "tab": {"id": "t", "type": "tab", "label": "f"},
           "nodes": [{"id": "n1", "type": "inject", "z": "t", "x": 2 ** 70 if variant == "big int" else 1}],
           "configs": [{"id": "c1", "type": "mqtt-broker", "name": "b"}]}
    if variant == "credentials":
        doc["configs"][0]["credentials"] = {"user": "u"}
    elif variant == "inline cred":
        doc["tab"]["env"] = [{"name": "K", "value": "v", "type": "cred"}]
    elif variant == "global z":
        doc["configs"][0]["z"] = ""
    elif variant == "empty list":
        doc["subflows"] = []
    inc = _incoming(Change(FlowKey("f", "1"), canonicalize(_clone(doc), rules), None), Identity(), rules, V)
    live = _clone(doc)
    live["tab"] = surface_inline(live["tab"])
    for n in [live["tab"], *live["nodes"], *live["configs"]]:
        n.pop("credentials", None)
    if variant == "global z":
        live["configs"][0].pop("z")
    if variant == "empty list":
        del live["subflows"]
    want = flow_from_doc(live, Identity(), rules, where="")
    assert inc.live_oid == want.oid
    assert (inc.live_oid == inc.oid) == (variant in ("plain", "global z", "big int"))


def _configuration(i: int, port: object = 1883) -> list[dict]:
    """Two tabs sharing a broker (with credentials), one using a subflow; ids that need escaping."""
    return [
        {"id": f"t{i}", "type": "tab", "label": f"tab {i}"},
        {"id": f"t{i}-in", "type": "mqtt in", "z": f"t{i}", "broker": 'b"\u00fc', "wires": [[f"t{i}-sf"]]},
        {"id": f"t{i}-sf", "type": "subflow:sf", "z": f"t{i}", "wires": [[]]},
        {"id": "u", "type": "tab", "label": "user"},
        {"id": "u-in", "type": "mqtt out", "z": "u", "broker": 'b"\u00fc', "opts": {"deep": [["b\"\u00fc"]]}},
        {"id": 'b"\u00fc', "type": "mqtt-broker", "port": port, "credentials": {"user": "x"}},
        {"id": "sf", "type": "subflow", "name": "s", "in": [], "out": []},
        {"id": "sf-fn", "type": "function", "z": "sf", "func": "return msg;", "wires": [["sf"]]},
    ]


@pytest.mark.parametrize("few", [64, 0])
def test_the_definitions_a_tab_uses_are_found_with_or_without_the_text_search(monkeypatch, few: int) -> None:
    """The search of a node's JSON text for definition ids only skips nodes the walk would find nothing
    in: the same uses with it (up to 64 definitions) as with the walk alone; an id only in z, wires or a
    key is no reference."""
    from reconciler.drivers.node_red import mapping

    monkeypatch.setattr(mapping, "_FEW_DEFINITIONS", few)
    nodes = _configuration(1)
    nodes.append({"id": "k", "type": "tab", "label": "keys only"})
    nodes.append({"id": "k-n", "type": "change", "z": "k", "rules": [{'b"\u00fc': 1}], "wires": [['b"\u00fc', "sf"]]})
    index = mapping._Index(nodes)
    assert index.uses("t1") == {'b"\u00fc', "sf"}
    assert index.uses("u") == {'b"\u00fc'}
    assert index.uses("k") == set()


@pytest.mark.parametrize("port", [1883, 1883.0, True])
def test_the_read_back_form_of_an_import_is_taken_as_meant_only_when_it_is_those_bytes(port) -> None:
    """derive with the flows the imports mean gives what derive without them gives; a meant flow that
    differs from the configuration (a shared broker with another port, even 1883.0 or true for 1883) is
    not taken: the tab reads as the configuration says, and the check that follows sees the difference."""
    from reconciler.canonical import Rules
    from reconciler.drivers.node_red.checks import _Checks
    from reconciler.drivers.node_red.mapping import CANONICAL_IGNORE, NODE_LISTS_BY_ID, _Index
    from reconciler.flows import Identity

    checks = _Checks("http://x", Identity(), Rules.of(CANONICAL_IGNORE, NODE_LISTS_BY_ID), V, "1")
    meant = checks.derive(_Index(_configuration(1)))  # as the import was written
    after = _Index(_configuration(1, port))
    full = checks.derive(after)
    got = checks.derive(after, {t: f for t, f in meant.items() if t})
    assert got == full
    assert (got["t1"] is meant["t1"]) == (type(port) is int)
    assert (full["t1"].oid == meant["t1"].oid) == (type(port) is int)
