"""The health gate: did Node-RED start what was just deployed? (the contract tests are the research:
``tests/test_node_red_runtime.py``).

``GET /flows/state`` says what a person asked for, not what runs, so the
gate reads ``/comms``:

1. **before the POST** a :class:`Watch` connects, authenticates with the
   driver's token, subscribes to ``notification/#`` and reads the retained
   messages up to ``runtime-deploy`` (always retained: after it everything is
   new). A connection that cannot be made is a ``RetryableError`` before
   anything is deployed;
2. **after the POST** it reads until ``notification/runtime-deploy`` carries the
   revision the POST answered (the runtime has started the configuration),
   then for a settle window more (a function's "On Start" fails within
   microtasks; asynchronous work fails later, and is only caught if it fails
   within the window), all bounded by the environment's ``health_timeout``.
   When every node the flows carry is of a kind that starts at once
   (:func:`starts_at_once`: core nodes that start nothing asynchronous, a
   function without "On Start" code or modules, an inject that does not fire
   on its own at start), the window ends early, at a barrier: a subscription
   sent once ``runtime-deploy`` arrived is answered (with the retained
   ``runtime-deploy``) through the same queue as every message Node-RED sent
   before it, so whatever those nodes logged as they started has arrived.
   If the connection drops it reconnects once: the retained ``runtime-deploy``
   and ``runtime-state`` then tell the current revision and state (errors
   logged during the gap are lost);
3. :func:`verdict` names the flows that do not run: the last
   ``runtime-state`` before that ``runtime-deploy`` says ``stop`` with
   ``missing-types`` / ``missing-modules`` (the flows using those types or
   modules), a ``debug`` message of level 20 (an error) from one of their
   nodes (a subflow instance's inner nodes run as ``<instance id>-<node id>``;
   a config node's error counts for every flow carrying it), or no
   ``runtime-deploy`` for the revision within the timeout (every flow).

Flows a person stopped (``POST /flows/state``) stay stopped: the deploy then
brings no state, which is not a failure of the flows. A missing type in a tab
outside the batch stops the runtime too, but restoring the batch would not
help: it is logged, not reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from reconciler.logsetup import get_logger
from .comms import Comms

__all__ = ["Watch", "Seen", "Expect", "verdict", "stopped", "expect_of", "starts_at_once"]

log = get_logger("reconciler.drivers.node_red")
ERROR_LEVEL = 20  # Node-RED's log level of an error, as the debug messages carry it
_RETAINED_WAIT = 5.0  # seconds for the retained messages after a subscription


@dataclass
class Seen:
    """What /comms said about one deploy."""

    deployed: bool = False  # runtime-deploy with the revision arrived
    state: Mapping[str, Any] | None = None  # the last runtime-state before it
    errors: list[Mapping[str, Any]] = field(default_factory=list)  # debug messages of level error
    took: float = 0.0  # seconds from the end of the POST to runtime-deploy
    reconnected: bool = False
    barrier: bool = False  # the settle window ended at the barrier's answer (the flows start at once)


class Watch:
    """A /comms connection opened before a deploy (see the module docstring)."""

    def __init__(self, connect: Callable[[], Comms], timeout: float):
        self._connect = connect
        self.comms = self._subscribed(time.monotonic() + min(timeout, _RETAINED_WAIT))

    def _subscribed(self, deadline: float) -> Comms:
        comms = self._connect()
        self.retained: dict[str, Any] = {}
        try:
            comms.subscribe("notification/#")
            while time.monotonic() < deadline:
                got = comms.messages(deadline)
                if got is None:
                    break
                for topic, data in got:
                    self.retained[topic] = data
                if "notification/runtime-deploy" in self.retained:
                    break
        except BaseException:
            comms.close()
            raise
        return comms

    def wait(self, rev: str, timeout: float, settle: float, *, at_once: bool = False) -> Seen:
        """Read until runtime-deploy names ``rev`` (within ``timeout``), then ``settle`` seconds more; with
        ``at_once`` (the flows start at once: :func:`starts_at_once`), at most until the barrier's answer."""
        seen = Seen()
        started = time.monotonic()
        deadline = started + timeout
        stop_at = deadline
        barrier = False  # a subscription sent after runtime-deploy, whose answer ends the window
        while True:
            now = time.monotonic()
            if now >= stop_at:
                break
            try:
                got = self.comms.messages(stop_at)
            except (OSError, EOFError) as exc:
                if seen.reconnected:
                    log.warning("node-red /comms lost again; the health gate stops listening", error=str(exc))
                    break
                seen.reconnected = True
                self.close()
                try:
                    self.comms = self._subscribed(min(stop_at, time.monotonic() + _RETAINED_WAIT))
                except (OSError, EOFError) as again:
                    log.warning("node-red /comms cannot be reached again; the health gate stops listening",
                                error=str(again))
                    break
                got = [(t, d) for t, d in self.retained.items()]
            if got is None:
                break
            answered = False
            for topic, data in got:
                if topic == "debug" and isinstance(data, Mapping) and data.get("level") == ERROR_LEVEL:
                    seen.errors.append(data)
                elif seen.deployed:
                    answered = answered or (barrier and topic == "notification/runtime-deploy")
                elif topic == "notification/runtime-state":
                    seen.state = data
                elif topic == "notification/runtime-deploy" and isinstance(data, Mapping) and data.get("revision") == rev:
                    seen.deployed, seen.took = True, time.monotonic() - started
                    stop_at = min(deadline, time.monotonic() + settle)
                    if at_once and settle > 0:
                        try:
                            self.comms.subscribe("notification/runtime-deploy")
                            barrier = True
                        except OSError:  # the window then runs its course (or the reconnect ends it)
                            pass
            if answered:
                seen.barrier = True
                break
        return seen

    def close(self) -> None:
        self.comms.close()


@dataclass(frozen=True)
class Expect:
    """What one deployed flow consists of, to tell which failures are its own."""

    nodes: frozenset[str]  # ids of every node it carries (tab, nodes, configs, subflows)
    instances: frozenset[str]  # its subflow instances' ids (their inner nodes run as <id>-<node id>)
    types: frozenset[str]
    modules: frozenset[str]  # modules its function nodes load (libs)

    def owns(self, node_id: str) -> bool:
        return node_id in self.nodes or any(node_id.startswith(i + "-") for i in self.instances)


# Core node types that start nothing asynchronous: what fails as they start is logged before Node-RED reads
# the next message of /comms (see the module docstring). Anything else (contrib nodes, config nodes that
# connect, files, sockets) gets the whole settle window.
_AT_ONCE = frozenset({
    "tab", "subflow", "group", "junction", "comment", "debug", "change", "switch", "range", "template", "json",
    "link in", "link out", "link call", "catch", "status", "complete", "delay", "trigger", "split", "join", "sort",
    "batch", "rbe", "function", "inject",
})


def starts_at_once(nodes: Iterable[dict]) -> bool:
    """Every node is of a kind that starts at once: a core type of ``_AT_ONCE``, a subflow instance (its
    inner nodes are among ``nodes``), a function without "On Start" code or modules to load, an inject that
    does not fire on its own (not once at start, no interval or cron)."""
    for n in nodes:
        kind = n.get("type")
        if isinstance(kind, str) and kind.startswith("subflow:"):
            continue
        if kind not in _AT_ONCE:
            return False
        if kind == "function" and (str(n.get("initialize") or "").strip() or n.get("libs")):
            return False
        if kind == "inject" and (n.get("once") or str(n.get("repeat") or "").strip() or
                                 str(n.get("crontab") or "").strip()):
            return False
    return True


def stopped(seen: Seen) -> bool:
    """Node-RED stopped the deploy for missing types or modules (so the flows it did not blame never started)."""
    return _missing(seen.state) is not None


def _missing(state: Mapping[str, Any] | None) -> tuple[str, set[str]] | None:
    if not isinstance(state, Mapping) or state.get("state") != "stop":
        return None
    if state.get("error") == "missing-types":
        return "node types", {str(t) for t in state.get("types") or ()}
    if state.get("error") == "missing-modules":
        return "modules", {str(m.get("module")) for m in state.get("modules") or () if isinstance(m, Mapping)}
    return None


def verdict(seen: Seen, expect: Mapping[Any, Expect], rev: str, timeout: float) -> dict[Any, str]:
    """Flow key -> why it does not run (see the module docstring); {} when every flow started."""
    if not seen.deployed:
        why = f"Node-RED did not report the deploy (rev {rev[:12]}) started within {timeout:g} s"
        return {k: why for k in expect}
    bad: dict[Any, str] = {}
    missing = _missing(seen.state)
    if missing is not None:
        what, names = missing
        for key, e in expect.items():
            mine = sorted(names & (e.types if what == "node types" else e.modules))
            if mine:
                bad[key] = (f"Node-RED stopped the flows: {what} missing: {', '.join(repr(m) for m in mine)} "
                            "(install them, or restore the flows)")
        if not bad:
            log.error("node-red stopped every flow for missing types or modules of tabs outside this sync",
                      missing=sorted(names))
    for err in seen.errors:
        nid = str(err.get("id") or "")
        for key, e in expect.items():
            if key not in bad and nid and e.owns(nid):
                bad[key] = f"node {nid} ({err.get('type') or 'node'}) reported an error as it started: {_text(err)}"
    return bad


def _text(err: Mapping[str, Any]) -> str:
    """A debug message's text: an error object arrives encoded ({"__enc__": true, "data": {name, message}})."""
    msg = err.get("msg")
    if isinstance(msg, str) and msg.startswith('{"__enc__"'):
        try:
            data = orjson.loads(msg).get("data") or {}
            msg = f"{data.get('name') or 'Error'}: {data.get('message') or ''}"
        except (orjson.JSONDecodeError, AttributeError):
            pass
    return str(msg or "")[:300]


def expect_of(nodes: Iterable[dict]) -> Expect:
    """The :class:`Expect` of a flow from every node it carries."""
    ids, instances, types, modules = set(), set(), set(), set()
    for n in nodes:
        nid, kind = n.get("id"), n.get("type")
        if isinstance(nid, str):
            ids.add(nid)
            if isinstance(kind, str) and kind.startswith("subflow:"):
                instances.add(nid)
        if isinstance(kind, str):
            types.add(kind)
        for lib in n.get("libs") or () if isinstance(n.get("libs"), list) else ():
            if isinstance(lib, Mapping) and isinstance(lib.get("module"), str):
                modules.add(lib["module"])
    return Expect(frozenset(ids), frozenset(instances), frozenset(types), frozenset(modules))
