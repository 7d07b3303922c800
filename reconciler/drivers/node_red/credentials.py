"""Credentials (pure): what git carries, what is sent, what the driver remembers of it.

Node-RED keeps a node's credentials (an MQTT user and password, a bot token,
the ``cred`` env variables of a tab, a group, a subflow or its instances, the
``global-config`` node's ``{"map": {...}}``) apart from its flows: it accepts
them in a node's ``credentials`` object on deploy and never returns them.
So in git a node's ``credentials`` hold ``${secret:NAME}`` placeholders only
(the node-red settings make every ``credentials`` object a secret field: the
scan refuses anything else), the engine renders them, and the driver:

- **sends a node's credentials only when they differ from what it last sent**
  (sending restarts the node), or when the node is new to the instance, or
  when its flow is imported over a version changed outside the reconciler (a
  restore: the editor may have set credentials too, and Node-RED never says
  so); a field dropped from a node's set is sent empty, so the instance holds
  exactly git's set (a subflow instance's and ``global-config``'s set is
  replaced as a whole by Node-RED itself);
- **remembers** (``Remembering``, kept by the engine in git at
  ``refs/reconciler/driver/<env>``) per node a *fingerprint* of the set it
  sent (a SHA-256 of the node id and the values, never the values) and its
  field names, and per flow the id of the document it wrote (with the
  rendered credentials) beside the id of what Node-RED returns (without);
- **reports a live flow with the id of what it wrote** when Node-RED returns
  exactly what was written and holds, by the memory, the credentials of that
  write for every node; otherwise with the id of what it returns. A rotated
  secret changes git's rendered id, so the plan sees the flow differ and
  imports it again, sending the new value.

A ``cred`` env entry with its value inline (Node-RED accepts that, and then
returns the value in clear from ``GET /flows``) is read as a credential of its
node (``credentials.NAME``), so the secret scan refuses it until the value is
in the secret store; imports always send such values as credentials.

What cannot be known: a credential changed in the editor with nothing else
of its flow (Node-RED says nothing of it, so there is no drift to see; with
another change the restore sends git's credentials again, and drift/<env> gets
git's placeholders, never the values typed), credentials lost with the
instance's ``flows_cred.json`` or its ``credentialSecret``, or a node deleted
and re-created under its id while the flows stayed the same. Deleting
``refs/reconciler/driver/<env>`` makes the next sync send every credential
again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["CREDENTIAL_POINTERS", "surface_inline", "stripped", "fingerprint", "Memory", "FlowMemory", "carried"]

#: every place a document holds credentials: secret fields of every node-red environment
CREDENTIAL_POINTERS = ("/tab/credentials", "/nodes/*/credentials", "/configs/*/credentials", "/subflows/*/credentials")
# Node types whose env list holds environment variables (some of type cred).
_ENV_TYPES = frozenset({"tab", "group", "subflow", "global-config"})
GLOBAL_CONFIG = "global-config"


def _has_env_vars(node: dict) -> bool:
    kind = node.get("type")
    return isinstance(kind, str) and (kind in _ENV_TYPES or kind.startswith("subflow:"))


def replaces_whole_set(node: dict) -> bool:
    """Node-RED replaces the whole credential set of these when one is sent (fields of others are merged)."""
    kind = node.get("type")
    return kind == GLOBAL_CONFIG or (isinstance(kind, str) and kind.startswith("subflow:"))


def surface_inline(node: dict) -> dict:
    """``node`` with each ``cred`` env entry's inline value moved into its credentials (a copy if it moves)."""
    env = node.get("env") if _has_env_vars(node) else None
    if not isinstance(env, list) or not any(_inline(e) for e in env):
        return node
    node = dict(node)
    creds = dict(node.get("credentials") or {}) if isinstance(node.get("credentials", {}), dict) else {}
    into = dict(creds.get("map") or {}) if node.get("type") == GLOBAL_CONFIG else creds
    out = []
    for e in env:
        if _inline(e):
            into.setdefault(e["name"], e["value"])
            e = dict(e, value="")
        out.append(e)
    node["env"] = out
    if node.get("type") == GLOBAL_CONFIG:
        creds["map"] = into
    node["credentials"] = creds
    return node


def _inline(entry: Any) -> bool:
    return (isinstance(entry, dict) and entry.get("type") == "cred" and isinstance(entry.get("name"), str)
            and isinstance(entry.get("value"), str) and entry["value"] != "")


def stripped(node: dict) -> dict:
    """The node as ``GET /flows`` returns it: without credentials."""
    return {k: v for k, v in node.items() if k != "credentials"} if "credentials" in node else node


def fingerprint(node_id: str, creds: Any) -> str:
    """A SHA-256 of a node's credential set (salted with its id): compares sets, never reveals them."""
    raw = orjson.dumps({"node": node_id, "credentials": creds}, option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def field_names(creds: Any) -> list[str]:
    return sorted(k for k in creds if isinstance(k, str)) if isinstance(creds, dict) else []


@dataclass(frozen=True)
class FlowMemory:
    """One flow as last written: the id of what Node-RED returns, of what was written, the credentials sent."""

    live: str
    written: str
    credentials: Mapping[str, str]  # node id -> fingerprint

    def as_dict(self) -> dict:
        return {"live": self.live, "written": self.written, "credentials": dict(sorted(self.credentials.items()))}


@dataclass
class Memory:
    """What the driver keeps in git (no value ever): per node the credentials Node-RED holds from us, per flow
    the ids of its last write."""

    nodes: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # id -> (fingerprint, fields)
    flows: dict[str, FlowMemory] = field(default_factory=dict)  # "name@version" -> ids

    @classmethod
    def load(cls, state: Mapping | None) -> "Memory":
        """The memory from git's state; anything malformed is forgotten (credentials are sent again)."""
        memory = cls()
        if not isinstance(state, Mapping) or state.get("format") != 1:
            return memory
        for nid, got in (state.get("nodes") or {}).items():
            if isinstance(got, Mapping) and isinstance(got.get("fingerprint"), str):
                memory.nodes[nid] = (got["fingerprint"], tuple(str(f) for f in got.get("fields") or ()))
        for key, got in (state.get("flows") or {}).items():
            if isinstance(got, Mapping) and isinstance(got.get("live"), str) and isinstance(got.get("written"), str):
                creds = got.get("credentials") or {}
                memory.flows[key] = FlowMemory(got["live"], got["written"],
                                               {str(k): str(v) for k, v in creds.items()})
        return memory

    def dump(self) -> dict | None:
        if not self.nodes and not self.flows:
            return None
        return {"format": 1,
                "nodes": {nid: {"fingerprint": h, "fields": list(f)} for nid, (h, f) in sorted(self.nodes.items())},
                "flows": {k: m.as_dict() for k, m in sorted(self.flows.items())}}

    def written_id(self, key: str, live_oid: str, present: Iterable[str]) -> str | None:
        """The id of the last write of flow ``key`` if Node-RED holds it still (``live_oid``: what it returns
        now; ``present``: node ids it holds), credentials included as far as the memory knows; else None."""
        got = self.flows.get(key)
        if got is None or got.live != live_oid:
            return None
        here = set(present)
        for nid, h in got.credentials.items():
            if nid not in here or self.nodes.get(nid, ("",))[0] != h:
                return None
        return got.written

    def holds(self, node_id: str, h: str) -> bool:
        return self.nodes.get(node_id, ("",))[0] == h

    def to_send(self, nodes: Iterable[dict], there: set) -> list[dict]:
        """The nodes to post: a node's credentials only when they differ from those it holds from us (sending
        restarts it) or it is new (``there``: ids Node-RED has now); a field dropped from a node's set is sent
        empty (Node-RED merges a node's fields, but replaces a subflow instance's or global-config's set)."""
        out = []
        for n in nodes:
            creds = n.get("credentials")
            if isinstance(creds, dict):
                nid = n["id"]
                if nid in there and self.holds(nid, fingerprint(nid, creds)):
                    n = stripped(n)
                elif not replaces_whole_set(n) and nid in self.nodes:
                    gone = [f for f in self.nodes[nid][1] if f not in creds]
                    if gone:
                        n = dict(n, credentials={**creds, **{f: "" for f in gone}})
            out.append(n)
        return out

    def deployed(self, nodes: list[dict], written: Iterable[tuple[str, str, str, Iterable[dict]]],
                 deleted: Iterable[str]) -> dict[str, FlowMemory | None]:
        """After a deploy of ``nodes``: the credentials Node-RED now holds from us, and for each flow written
        (key, id as returned, id as written, its nodes) what it reads as. Returns the flows' entries before."""
        present = {n.get("id") for n in nodes}
        for n in nodes:
            creds = n.get("credentials")
            if isinstance(creds, dict):
                self.nodes[n["id"]] = (fingerprint(n["id"], creds), tuple(field_names(creds)))
        for nid in [i for i in self.nodes if i not in present]:
            del self.nodes[nid]  # Node-RED deletes the credentials of a node that goes
        before: dict[str, FlowMemory | None] = {}
        for key in deleted:
            before[key] = self.flows.pop(key, None)
        for key, live, oid, flow_nodes in written:
            before[key] = self.flows.get(key)
            sent = {n["id"]: fingerprint(n["id"], n["credentials"]) for n in flow_nodes
                    if isinstance(n.get("credentials"), dict)}
            if sent or live != oid:
                self.flows[key] = FlowMemory(live, oid, sent)
            else:
                self.flows.pop(key, None)
        return before

    def forget_writes(self, before: Mapping[str, FlowMemory | None]) -> None:
        """Put these flows' entries back as they were (their write was undone)."""
        for key, entry in before.items():
            if entry is None:
                self.flows.pop(key, None)
            else:
                self.flows[key] = entry


def carried(live: Any, git: Any) -> Any:
    """``live`` (as Node-RED returns it: no credentials) with each node's ``credentials`` from ``git``'s
    version of the flow (placeholders), matched by node id, where the live node has none: what an adopt,
    an export or a drift save commits, so the next sync into another instance still sends them."""
    held: dict[str, Any] = {}

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("id"), str) and isinstance(node.get("credentials"), dict):
                held.setdefault(node["id"], node["credentials"])
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)

    def put(node: Any) -> None:
        if isinstance(node, dict):
            nid = node.get("id")
            if isinstance(nid, str) and "credentials" not in node and nid in held:
                node["credentials"] = held[nid]
            for v in node.values():
                put(v)
        elif isinstance(node, list):
            for v in node:
                put(v)

    collect(git)
    if held:
        put(live)
    return live
