"""Contract tests: what a real Node-RED (4 and 5, ids ``nr4``/``nr5``) does, as the driver relies on it.

No reconciler code runs here. Each test pins one behaviour of Node-RED's Admin API or
its ``/comms`` websocket that the driver's health gate, credentials and whole-instance
export are built on, so an upgrade of Node-RED that changes it fails here first, with
the behaviour named.

What they establish (see also the module's helpers):
- ``GET /flows/state`` is the *intended* state: it says ``start`` while flows are stopped
  by missing types or modules. Only ``/comms`` tells whether a deploy started: a
  retained ``notification/runtime-state`` and then ``notification/runtime-deploy``
  ``{revision}`` (= the rev POST /flows answered) once the runtime finished starting
  the deployed configuration.
- A node failing at start is only reported as a log entry (and a ``debug`` message on
  /comms, level 20, with the node's id); nothing in the REST API shows it.
- Credentials are merged per node id: a node sent without ``credentials`` keeps its
  stored ones; a subflow instance or a ``global-config`` node sent *with* credentials
  replaces the whole set.

The instance runs the test node types of ``tests/data/node_red/nodes`` (a node that
throws in its constructor, one that reports an error, one slow to close, a probe
with credentials) and may not install modules (``externalModules.modules.allowInstall``
is false), so a ``libs`` entry for a missing module fails without network access.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.nodered import Comms, NodeRed, node_red_fixture

TEST_NODES = Path(__file__).parent / "data/node_red/nodes"
EXTRA_SETTINGS = {
    "nodesDir": json.dumps(str(TEST_NODES)),
    "externalModules": "{modules: {allowInstall: false}}",
}
ERROR = 20  # Node-RED's log level numbers, as in the debug messages: 20 error, 30 warn


instance = node_red_fixture("node-red-runtime", EXTRA_SETTINGS)


@pytest.fixture
def nr(instance: NodeRed) -> NodeRed:
    """The instance, emptied, with flows started, and nothing of that still on its way to /comms."""
    if instance.admin("GET", "/flows/state")[1].get("state") != "start":
        instance.set_state("start")  # answers once the flows have started
    Deploy(instance, [], "full")
    return instance


# -- building blocks ---------------------------------------------------------------------------


def tab(tid: str, label: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": tid, "type": "tab", "label": label or tid, "disabled": False, "info": "", "env": [], **extra}


def inject(nid: str, z: str, topic: str = "") -> dict[str, Any]:
    """An inject node: POST /inject/<id> answers 200 while it runs and 404 when it does not."""
    return {"id": nid, "type": "inject", "z": z, "name": "", "props": [{"p": "payload"}], "repeat": "", "crontab": "",
            "once": False, "topic": topic, "payload": "", "payloadType": "date", "x": 100, "y": 100, "wires": [[]]}


def function(nid: str, z: str, *, func: str = "return msg;", initialize: str = "", libs: list | None = None) -> dict[str, Any]:
    return {"id": nid, "type": "function", "z": z, "name": "", "func": func, "outputs": 1, "timeout": 0, "noerr": 0,
            "initialize": initialize, "finalize": "", "libs": libs or [], "x": 300, "y": 100, "wires": [[]]}


def shows_env(nid: str, z: str, expression: str) -> dict[str, Any]:
    """A function node whose status (on /comms, status/<id>) is ``expression``, evaluated when it starts."""
    return function(nid, z, initialize=f"node.status({{text: String({expression})}});")


def node(nid: str, kind: str, z: str, **props: Any) -> dict[str, Any]:
    return {"id": nid, "type": kind, "z": z, "x": 100, "y": 200, "wires": [], **props}


def broker(cid: str, **extra: Any) -> dict[str, Any]:
    # The name differs from the id: a string property equal to a config node's id is read as a
    # reference to it (see test_a_config_node_property_equal_to_its_own_id_...).
    return {"id": cid, "type": "mqtt-broker", "name": f"broker {cid}", "broker": "mqtt.invalid", "port": "1883",
            "clientid": "", "autoConnect": False, "usetls": False, "protocolVersion": "4", "keepalive": "60",
            "cleansession": True, **extra}


def mqtt_out(nid: str, z: str, cid: str) -> dict[str, Any]:
    return node(nid, "mqtt out", z, topic="t", qos="", retain="", broker=cid)


def running(nr: NodeRed, *inject_ids: str) -> dict[str, bool]:
    return {i: nr.admin("POST", f"/inject/{i}", {})[0] == 200 for i in inject_ids}


def post(nr: NodeRed, nodes: list[dict], kind: str = "full", *, rev: str | None = None) -> str:
    body: dict[str, Any] = {"flows": nodes}
    if rev is not None:
        body["rev"] = rev
    status, answer = nr.admin("POST", "/flows", body, {"Node-RED-Deployment-Type": kind})
    assert status == 200, answer
    return answer["rev"]


class Deploy:
    """One POST /flows watched on /comms from before it was sent until Node-RED said it started.

    ``messages`` are the (topic, data) received after the POST up to and including the
    ``notification/runtime-deploy`` whose revision is the rev the POST answered; ``state``
    is the last ``notification/runtime-state`` among them (the outcome of this deploy).
    """

    def __init__(self, nr: NodeRed, nodes: list[dict], kind: str = "flows", *, settle: float = 0.0, timeout: float = 30):
        with nr.comms("status/#") as comms:
            comms.subscribe("notification/#")
            # The retained messages come in answer to each subscription, in order, and
            # runtime-deploy is always retained: once it is here, the rest is new.
            assert comms.wait_for(lambda t, d: t == "notification/runtime-deploy", 5) is not None
            comms.log.clear()
            sent = time.monotonic()
            self.rev = post(nr, nodes, kind, rev=nr.flows()[0])
            self.answered = time.monotonic() - sent
            got = comms.wait_for(lambda t, d: t == "notification/runtime-deploy" and d.get("revision") == self.rev, timeout)
            assert got is not None, f"no runtime-deploy for rev {self.rev[:12]} within {timeout} s: {comms.log}"
            self.started = comms.log[-1][0] - sent
            self.messages = [(t, d) for _, t, d in comms.log]
            self.later = comms.messages(settle) if settle else []
        states = [d for t, d in self.messages if t == "notification/runtime-state"]
        self.state = states[-1] if states else None

    def errors(self, messages: list[tuple[str, Any]] | None = None) -> dict[str, Any]:
        """Node id -> the debug message of each error a node logged."""
        return {d.get("id"): d for t, d in (self.messages if messages is None else messages)
                if t == "debug" and d.get("level") == ERROR}

    def status(self, nid: str) -> Any:
        return next((d for t, d in reversed(self.messages + self.later) if t == f"status/{nid}"), None)


def until(check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    return check()


# -- /comms and the runtime state -------------------------------------------------------------------


def test_comms_needs_the_auth_message_first_and_retains_only_for_subscriptions(nr: NodeRed) -> None:
    """A socket that subscribes before {"auth"} is answered auth fail and closed; "#" matches nothing;
    "notification/#" gets the retained runtime-state, then runtime-deploy."""
    with Comms(nr) as anonymous:
        anonymous.subscribe("notification/#")
        assert anonymous.frame(5) == {"auth": "fail"}
        with pytest.raises(EOFError):
            anonymous.frame(5)
    with nr.comms("#") as everything:
        assert everything.messages(0.4) == []  # the runtime's matcher only knows "topic/#", not a bare "#"
    with nr.comms("notification/#") as comms:
        got = comms.messages(0.4)
    assert [t for t, _ in got] == ["notification/runtime-state", "notification/runtime-deploy"]
    assert got[0][1]["state"] == "start" and got[1][1] == {"revision": nr.flows()[0]}


def test_comms_refuses_a_wrong_token(nr: NodeRed) -> None:
    """{"auth": wrong} is answered {"auth": "fail"} and the socket is closed."""
    with Comms(nr) as comms:
        assert comms.auth("not-the-token") == {"auth": "fail"}


def test_runtime_deploy_carries_the_rev_of_the_deploy_after_runtime_state_start(nr: NodeRed) -> None:
    """The deploy's own messages: state stop, state start (deploy: true), then runtime-deploy {revision: rev}."""
    d = Deploy(nr, [tab("a"), inject("a-in", "a")])
    assert [t for t, _ in d.messages] == ["notification/runtime-state", "notification/runtime-state",
                                          "notification/runtime-deploy"]
    assert d.messages[0][1] == {"state": "stop", "deploy": True}
    assert d.state == {"state": "start", "deploy": True}
    assert d.messages[-1][1] == {"revision": d.rev} and d.rev == nr.flows()[0]
    assert running(nr, "a-in") == {"a-in": True}


def test_the_rev_is_a_hash_of_the_configuration(nr: NodeRed) -> None:
    """The same nodes give the same rev: a rev names content, not a deploy (two deploys can share one)."""
    nodes = [tab("a"), inject("a-in", "a")]
    first = post(nr, nodes)
    post(nr, [tab("b")])
    assert post(nr, nodes) == first


def test_the_rev_is_the_sha256_of_the_stored_nodes_as_javascript_writes_them(nr: NodeRed) -> None:
    """rev = sha256(JSON.stringify(nodes without credentials)): for plain JSON, compact UTF-8 JSON of what
    was sent (JavaScript writes 100.0 as 100 and puts integer-like keys first, so it is a fast path only)."""
    nodes = [tab("a"), dict(broker("b1", name="é ☃ \u2028"), credentials={"user": "ada"})]
    rev = post(nr, nodes)
    sent = [{k: v for k, v in n.items() if k != "credentials"} for n in nodes]
    assert rev == hashlib.sha256(json.dumps(sent, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    assert nr.flows() == (rev, sent)


def test_integers_beyond_2_to_the_53_come_back_rounded(nr: NodeRed) -> None:
    """Node-RED holds numbers as JavaScript doubles and writes them in the shortest form that reads back
    as the same double: 2**60 + 1 returns as 1152921504606847000. Only a read-back shows it."""
    post(nr, [tab("a"), node("c", "comment", "a", count=2**60 + 1)])
    assert nr.node("c")["count"] == 1152921504606847000


def test_flows_state_says_start_while_missing_types_keep_the_flows_stopped(nr: NodeRed) -> None:
    """GET /flows/state is the intended state; the deploy's runtime-state says stop, missing-types, and which."""
    d = Deploy(nr, [tab("a"), inject("a-in", "a"), node("x", "no-such-node", "a")], "full")
    assert d.state == {"state": "stop", "error": "missing-types", "type": "warning",
                       "text": "notification.warnings.missing-types", "types": ["no-such-node"]}
    assert nr.admin("GET", "/flows/state")[1] == {"state": "start"}
    assert running(nr, "a-in") == {"a-in": False}
    assert any(n["type"] == "no-such-node" for n in nr.flows()[1])  # accepted and stored as sent


def test_a_flows_deploy_with_a_missing_type_leaves_the_changed_nodes_stopped(nr: NodeRed) -> None:
    """Unchanged nodes go on running; changed ones were stopped and are not started again."""
    post(nr, [tab("a"), inject("a-in", "a"), tab("b"), inject("b-in", "b")])
    d = Deploy(nr, [tab("a"), inject("a-in", "a"), tab("b"), inject("b-in", "b", topic="changed"),
                    tab("c"), node("x", "no-such-node", "c")], "flows")
    assert d.state is not None and d.state["error"] == "missing-types"
    assert running(nr, "a-in", "b-in") == {"a-in": True, "b-in": False}


def test_a_missing_module_is_reported_like_a_missing_type(nr: NodeRed) -> None:
    """A function's libs module that is not installed (and may not be): state stop, missing-modules."""
    d = Deploy(nr, [tab("a"), inject("a-in", "a"),
                    function("f", "a", libs=[{"var": "m", "module": "reconciler-no-such-module"}])], "full")
    assert d.state == {"state": "stop", "error": "missing-modules", "type": "warning",
                       "text": "notification.warnings.missing-modules",
                       "modules": [{"module": "reconciler-no-such-module", "error": "install_not_allowed"}]}
    assert running(nr, "a-in") == {"a-in": False}


def test_a_deploy_recovers_from_missing_types_by_deploying_without_them(nr: NodeRed) -> None:
    """What a restore does: the next deploy without the missing type starts everything."""
    Deploy(nr, [tab("a"), inject("a-in", "a"), node("x", "no-such-node", "a")], "full")
    d = Deploy(nr, [tab("a"), inject("a-in", "a")], "flows")
    assert d.state == {"state": "start", "deploy": True}
    assert running(nr, "a-in") == {"a-in": True}


def test_a_deploy_while_flows_are_stopped_sends_runtime_deploy_and_no_start(nr: NodeRed) -> None:
    """Flows stopped by a person (POST /flows/state stop) stay stopped: runtime-deploy comes without a state."""
    nr.set_state("stop")
    d = Deploy(nr, [tab("a"), inject("a-in", "a")], "full")
    assert d.state is None and [t for t, _ in d.messages] == ["notification/runtime-deploy"]
    assert nr.admin("GET", "/flows/state")[1] == {"state": "stop"}
    with nr.comms("notification/#") as comms:
        retained = dict(comms.messages(0.4))
    assert retained["notification/runtime-state"]["state"] == "stop"
    assert running(nr, "a-in") == {"a-in": False}


def test_post_flows_waits_for_the_old_nodes_to_close_but_get_flows_has_the_new_rev_already(nr: NodeRed) -> None:
    """During the stop phase GET /flows already answers the new rev and flows/state says stop."""
    post(nr, [tab("a"), node("slow", "test-slow-close", "a", ms=1500)])
    done: dict[str, Any] = {}

    def deploy() -> None:
        started = time.monotonic()
        done["rev"] = post(nr, [tab("a"), node("slow", "test-slow-close", "a", ms=1)], "full")
        done["took"] = time.monotonic() - started

    writer = threading.Thread(target=deploy)
    writer.start()
    try:
        during = until(lambda: nr.admin("GET", "/flows/state")[1] == {"state": "stop"} and nr.flows()[0], 5)
    finally:
        writer.join(30)
    assert during == done["rev"]  # the new configuration is saved (and served) before the old one has stopped
    assert done["took"] >= 1.4


# -- a node that fails when it starts ------------------------------------------------------------------


def test_a_node_whose_constructor_throws_is_reported_only_as_a_logged_error(nr: NodeRed) -> None:
    """The deploy "starts" (state start); the error reaches /comms as debug level 20 with the node's id, before runtime-deploy."""
    d = Deploy(nr, [tab("a"), inject("a-in", "a"), node("bad", "test-throws", "a", reason="on purpose")])
    assert d.state == {"state": "start", "deploy": True}
    err = d.errors()["bad"]
    assert (err["type"], err["level"]) == ("test-throws", ERROR)
    assert "test-throws: on purpose" in err["msg"]
    assert nr.admin("GET", "/flows/state")[1] == {"state": "start"}
    assert any(n["id"] == "bad" for n in nr.flows()[1])
    assert "[test-throws:bad] Error: test-throws: on purpose" in nr.log.read_text()


def test_a_node_reporting_an_error_in_its_constructor_is_reported_the_same_way(nr: NodeRed) -> None:
    """node.error() at start: debug level 20 with id, z and the text; its red status is retained on /comms."""
    d = Deploy(nr, [tab("a"), node("bad", "test-errors", "a", reason="no config")])
    err = d.errors()["bad"]
    assert (err["msg"], err["z"], err["type"]) == ("test-errors: no config", "a", "test-errors")
    assert d.status("bad") == {"text": "error", "fill": "red", "shape": "ring"}
    with nr.comms("status/#") as comms:
        assert dict(comms.messages(0.4))["status/bad"]["fill"] == "red"


def test_a_function_whose_on_start_throws_is_reported_as_the_flow_starts(nr: NodeRed) -> None:
    """A synchronous throw in "On Start" (initialize) is logged within microtasks of the start
    (seen between runtime-state start and runtime-deploy): a gate needs a short settle window."""
    d = Deploy(nr, [tab("a"), function("f", "a", initialize="throw new Error('init failed');")], settle=0.5)
    assert d.state == {"state": "start", "deploy": True}
    assert "init failed" in d.errors(d.messages + d.later)["f"]["msg"]


def test_a_function_whose_on_start_fails_after_an_await_is_reported_after_runtime_deploy(nr: NodeRed) -> None:
    """Asynchronous start-up work is not awaited by the runtime: its failure comes after runtime-deploy."""
    init = "await new Promise(r => setTimeout(r, 300));\nthrow new Error('late init failure');"
    d = Deploy(nr, [tab("a"), function("f", "a", initialize=init)], settle=1.5)
    assert "f" not in d.errors()
    assert "late init failure" in d.errors(d.later)["f"]["msg"]


def test_a_function_with_a_syntax_error_is_reported_as_the_flow_starts(nr: NodeRed) -> None:
    """The body does not compile: logged while the flow starts; the node then drops every message."""
    d = Deploy(nr, [tab("a"), function("f", "a", func="return msg;;; }{")], settle=0.5)
    assert "SyntaxError" in d.errors(d.messages + d.later)["f"]["msg"]


def test_a_config_node_property_equal_to_its_own_id_stops_its_users_from_finding_it(nr: NodeRed) -> None:
    """name == id reads as a reference to itself: the global flow stops at a 'circular dependency'
    (printed to stdout only) and every user of that config node logs that it is missing."""
    d = Deploy(nr, [tab("a"), dict(broker("b1"), name="b1"), mqtt_out("m1", "a", "b1")], "full")
    assert d.state == {"state": "start", "deploy": True}
    assert d.errors()["m1"]["msg"] == "missing broker configuration"
    assert "Circular config node dependency detected: b1" in nr.log.read_text()
    fine = Deploy(nr, [tab("a"), broker("b1"), mqtt_out("m1", "a", "b1")], "full")
    assert "m1" not in fine.errors()


# -- the configuration as stored ----------------------------------------------------------------------


def test_get_flows_returns_the_nodes_in_the_order_posted(nr: NodeRed) -> None:
    """Tab order (the editor's) is the order of the tab nodes in the list, kept by full and flows deploys."""
    nodes = [tab("c"), inject("c-in", "c"), tab("a"), tab("b"), inject("a-in", "a"), inject("b-in", "b")]
    post(nr, nodes)
    assert [n["id"] for n in nr.flows()[1]] == [n["id"] for n in nodes]
    reordered = [nodes[3], nodes[2], nodes[0], nodes[5], nodes[4], nodes[1]]
    post(nr, reordered, "flows", rev=nr.flows()[0])
    assert [n["id"] for n in nr.flows()[1]] == [n["id"] for n in reordered]


def test_two_tabs_with_the_same_label_are_both_kept(nr: NodeRed) -> None:
    """Labels are not identities to Node-RED: nothing is merged or refused."""
    Deploy(nr, [tab("t1", "same"), tab("t2", "same"), inject("i1", "t1"), inject("i2", "t2")], "full")
    assert [(n["id"], n["label"]) for n in nr.flows()[1] if n["type"] == "tab"] == [("t1", "same"), ("t2", "same")]
    assert running(nr, "i1", "i2") == {"i1": True, "i2": True}


def test_a_config_node_with_an_empty_z_is_stored_as_posted_and_used(nr: NodeRed) -> None:
    """Node-RED 1.x exports config nodes with "z": "": kept as sent, and global for the runtime."""
    legacy = dict(broker("b1"), z="")
    d = Deploy(nr, [tab("a"), legacy, mqtt_out("m1", "a", "b1")], "full")
    assert next(n for n in nr.flows()[1] if n["id"] == "b1") == legacy
    assert "m1" not in d.errors()


def test_wires_are_stored_and_returned_exactly_as_posted(nr: NodeRed) -> None:
    """node-red#5967 (wires truncated by a full deploy) does not reproduce here: odd wires read back as sent."""
    nodes = [tab("a"), tab("b"),
             dict(function("f", "a"), wires=[["b-dbg"], ["nowhere"], []]),  # more outputs wired than it has
             node("b-dbg", "debug", "b", active=False),
             dict(node("ch", "change", "a", rules=[]), wires=[["missing", "f", "f"]])]
    for kind in ("full", "flows", "nodes", "full"):
        post(nr, nodes, kind, rev=nr.flows()[0])
        assert {n["id"]: n["wires"] for n in nr.flows()[1] if "wires" in n} == \
               {n["id"]: n["wires"] for n in nodes if "wires" in n}, kind


def test_global_config_env_vars_reach_every_tab(nr: NodeRed) -> None:
    """The global-config node (no z, env list) is stored as sent; env.get() in any tab sees its variables."""
    gc = {"id": "gc", "type": "global-config", "env": [{"name": "REGION", "value": "eu", "type": "str"}], "modules": {}}
    d = Deploy(nr, [gc, tab("a"), shows_env("f", "a", "env.get('REGION') + '/' + env.get('$parent.REGION')")], "full", settle=0.5)
    assert next(n for n in nr.flows()[1] if n["id"] == "gc") == gc
    assert d.status("f") == {"text": "eu/eu"}


# -- credentials ------------------------------------------------------------------------------------


def creds(nr: NodeRed, kind: str, nid: str) -> Any:
    status, body = nr.admin("GET", f"/credentials/{kind}/{nid}")
    assert status == 200, body
    return body


def test_credentials_posted_with_a_node_are_kept_and_never_returned(nr: NodeRed) -> None:
    """GET /flows has no credentials; GET /credentials shows text fields and has_<password field>."""
    post(nr, [tab("a"), broker("b1", credentials={"user": "ada", "password": "pw-4711"}), mqtt_out("m", "a", "b1")])
    assert creds(nr, "mqtt-broker", "b1") == {"user": "ada", "has_password": True}
    assert "pw-4711" not in json.dumps(nr.flows()[1]) and "credentials" not in nr.node("b1")
    assert "pw-4711" not in (nr.userdir / "flows_cred.json").read_text()  # encrypted with credentialSecret


@pytest.mark.parametrize("kind", ["flows", "full"])
def test_a_node_posted_without_credentials_keeps_its_stored_ones(nr: NodeRed, kind: str) -> None:
    """No credentials property (or an empty one): the stored credentials stay, whatever the deploy type."""
    post(nr, [tab("a"), broker("b1", credentials={"user": "ada", "password": "pw"}), mqtt_out("m", "a", "b1")])
    post(nr, [tab("a"), broker("b1", port="1884"), mqtt_out("m", "a", "b1")], kind)
    post(nr, [tab("a"), broker("b1", credentials={}), mqtt_out("m", "a", "b1")], kind)
    assert creds(nr, "mqtt-broker", "b1") == {"user": "ada", "has_password": True}


def test_credentials_are_merged_field_by_field(nr: NodeRed) -> None:
    """A field sent replaces that field; '__PWRD__' keeps a password; '' deletes; unknown fields are dropped."""
    nodes = lambda c: [tab("a"), broker("b1", credentials=c), mqtt_out("m", "a", "b1")]  # noqa: E731
    post(nr, nodes({"user": "ada", "password": "pw"}))
    post(nr, nodes({"user": "bob"}))
    assert creds(nr, "mqtt-broker", "b1") == {"user": "bob", "has_password": True}
    post(nr, nodes({"password": "__PWRD__", "bogus": "x"}))
    assert creds(nr, "mqtt-broker", "b1") == {"user": "bob", "has_password": True}
    post(nr, nodes({"password": ""}))
    assert creds(nr, "mqtt-broker", "b1") == {"user": "bob", "has_password": False}


def test_a_node_removed_from_the_configuration_loses_its_credentials(nr: NodeRed) -> None:
    """Deploying without the node deletes its credentials; the same id coming back has none."""
    post(nr, [tab("a"), broker("b1", credentials={"user": "ada", "password": "pw"}), mqtt_out("m", "a", "b1")])
    post(nr, [tab("a")])
    post(nr, [tab("a"), broker("b1"), mqtt_out("m", "a", "b1")])
    assert creds(nr, "mqtt-broker", "b1") == {}


def test_posting_credentials_restarts_the_node_even_when_they_are_unchanged(nr: NodeRed) -> None:
    """A node carrying credentials counts as changed: send them only when they change."""
    nodes = [tab("a"), node("p", "test-probe", "a"), tab("b"), inject("b-in", "b")]
    post(nr, [dict(n, credentials={"user": "u", "secret": "s"}) if n["id"] == "p" else n for n in nodes])
    again = Deploy(nr, [dict(n, credentials={"user": "u", "secret": "s"}) if n["id"] == "p" else n for n in nodes])
    assert again.status("p") is not None  # restarted: its constructor set its status again
    quiet = Deploy(nr, nodes)
    assert quiet.status("p") is None
    assert creds(nr, "test-probe", "p") == {"user": "u", "has_secret": True}


def test_tab_env_vars_of_type_cred_take_their_value_from_the_tab_credentials(nr: NodeRed) -> None:
    """env entry {type: cred, value: ""} + tab.credentials {NAME: value}: GET /flows shows "", /credentials has_NAME."""
    t = tab("a", env=[{"name": "API_KEY", "value": "", "type": "cred"}], credentials={"API_KEY": "k-4711"})
    d = Deploy(nr, [t, shows_env("f", "a", "env.get('API_KEY') === 'k-4711' ? 'key ok' : 'no key'")], "full", settle=0.5)
    assert d.status("f") == {"text": "key ok"}
    assert nr.tabs()["a"]["env"] == [{"name": "API_KEY", "value": "", "type": "cred"}]
    assert creds(nr, "tab", "a") == {"has_API_KEY": True}
    without = {k: v for k, v in t.items() if k != "credentials"}
    d = Deploy(nr, [dict(without, info="edited"), shows_env("f", "a", "env.get('API_KEY') === 'k-4711' ? 'kept' : 'lost'")], settle=0.5)
    assert d.status("f") == {"text": "kept"}


def test_a_cred_env_var_with_an_inline_value_is_used_and_returned_in_clear(nr: NodeRed) -> None:
    """Not what the editor writes, but accepted: the value stays in GET /flows (and so would reach git)."""
    t = tab("a", env=[{"name": "API_KEY", "value": "inline-4711", "type": "cred"}])
    d = Deploy(nr, [t, shows_env("f", "a", "env.get('API_KEY')")], "full", settle=0.5)
    assert d.status("f") == {"text": "inline-4711"}
    assert nr.tabs()["a"]["env"][0]["value"] == "inline-4711"
    assert creds(nr, "tab", "a") == {}


def test_subflow_instance_credentials_sent_replace_the_whole_set(nr: NodeRed) -> None:
    """For a subflow instance a credential left out of a post that has credentials is deleted."""
    sf = {"id": "sf", "type": "subflow", "name": "sf", "info": "", "in": [{"x": 50, "y": 30, "wires": [{"id": "sf-f"}]}],
          "out": [], "env": [{"name": "TOKEN", "type": "cred", "value": ""}, {"name": "OTHER", "type": "cred", "value": ""}]}
    inner = shows_env("sf-f", "sf", "env.get('TOKEN') + '/' + env.get('OTHER')")
    instance = {"id": "i", "type": "subflow:sf", "z": "a", "x": 100, "y": 100, "wires": [],
                "env": [{"name": "TOKEN", "type": "cred", "value": ""}]}
    d = Deploy(nr, [tab("a"), sf, inner, dict(instance, credentials={"TOKEN": "t1", "OTHER": "o1"})], "full",
               settle=0.5)
    assert d.status("i-sf-f") == {"text": "t1/o1"}  # an inner node runs as <instance id>-<node id>
    assert creds(nr, "subflow:sf", "i") == {"has_TOKEN": True, "has_OTHER": True}
    post(nr, [tab("a"), sf, inner, dict(instance, x=120)], "flows")
    assert creds(nr, "subflow:sf", "i") == {"has_TOKEN": True, "has_OTHER": True}
    post(nr, [tab("a"), sf, inner, dict(instance, credentials={"TOKEN": "t2"})], "flows")
    assert creds(nr, "subflow:sf", "i") == {"has_TOKEN": True}


def test_global_config_credentials_are_a_map_replaced_as_a_whole_and_not_shown(nr: NodeRed) -> None:
    """global-config credentials {map: {NAME: value}}: used by env.get; GET /credentials shows nothing;
    no credentials property keeps them; a map without a name deletes it."""
    gc = {"id": "gc", "type": "global-config", "modules": {},
          "env": [{"name": "PLAIN", "value": "p", "type": "str"}, {"name": "SECRET", "value": "", "type": "cred"}]}
    probe = shows_env("f", "a", "env.get('PLAIN') + '/' + (env.get('SECRET') === 's-4711' ? 'secret ok' : env.get('SECRET'))")
    d = Deploy(nr, [dict(gc, credentials={"map": {"SECRET": "s-4711"}}), tab("a"), probe], "full", settle=0.5)
    assert d.status("f") == {"text": "p/secret ok"}
    assert creds(nr, "global-config", "gc") == {}
    d = Deploy(nr, [gc, tab("a"), probe], "full", settle=0.5)
    assert d.status("f") == {"text": "p/secret ok"}
    d = Deploy(nr, [dict(gc, credentials={"map": {}}), tab("a"), probe], "full", settle=0.5)
    assert d.status("f") == {"text": "p/"}


# -- the Admin API itself ---------------------------------------------------------------------------


def test_post_flows_v1_answers_204_and_checks_no_rev(nr: NodeRed) -> None:
    """Without Node-RED-API-Version: v2 a deploy is a bare list, answered 204, never refused as stale."""
    status, _ = nr.admin("POST", "/flows", [tab("a")], {"Node-RED-API-Version": "v1", "Node-RED-Deployment-Type": "full"})
    assert status == 204
    stale = nr.admin("POST", "/flows", {"flows": [tab("b")], "rev": "0" * 64}, {"Node-RED-Deployment-Type": "full"})
    assert stale[0] == 409 and stale[1]["code"] == "version_mismatch"
    assert nr.admin("GET", "/flows", headers={"Node-RED-API-Version": "v3"})[0] == 400


def test_get_nodes_lists_node_sets_with_their_types_as_json(nr: NodeRed) -> None:
    """GET /nodes with Accept: application/json: [{id, name, types, enabled, module, version, ...}]."""
    status, sets = nr.admin("GET", "/nodes", headers={"Accept": "application/json"})
    assert status == 200 and isinstance(sets, list)
    types = {t for s in sets if s["enabled"] for t in s["types"]}
    assert {"inject", "function", "mqtt-broker", "global-config", "test-throws"} <= types
    core = next(s for s in sets if s["id"] == "node-red/inject")
    assert core["module"] == "node-red" and core["version"] == nr.install.version
