"""The mapping (pure, no I/O): a Node-RED configuration (the nodes of ``GET /flows``) <-> flow documents.

One tab is one flow document, and what no tab uses is the instance document
(see the package docstring for both forms); this module indexes a
configuration (:class:`_Index`), derives the documents (:func:`flow_documents`,
:func:`instance_document`) as Node-RED returns them (no credentials, a ``cred``
value written inline read as a credential: :mod:`.credentials`), and parses
and checks a document from git back into nodes (:func:`_incoming`).
:mod:`.build` builds the configuration a batch of changes leaves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from reconciler.canonical import InvalidJSON, Rules, format_pointer, parse_json
from reconciler.drivers import Change
from reconciler.drivers._common import Refused
from reconciler.errors import Problem
from reconciler.flows import CanonicalFlow, FlowInvalid, FlowKey, Identity, flow_from_doc
from reconciler.pointers import MISSING

from .credentials import stripped, surface_inline
from .instance import INSTANCE_KEY, instance_parts
from .versions import tab_for_git, tab_for_node_red, tab_version

__all__ = ["flow_documents", "instance_document", "NODE_LISTS_BY_ID", "CANONICAL_IGNORE"]

# Node types that are structure, not installed modules (GET /nodes does not list them).
_BUILTIN_TYPES = frozenset({"tab", "subflow", "group"})
_DOC_KEYS = ("name", "version", "tab", "nodes", "configs", "subflows")
_INSTANCE_KEYS = ("name", "version", "tabs", "configs", "subflows", "nodes")
# Properties that never hold a reference to a config node or a subflow.
_NOT_REFS = frozenset({"id", "z", "type", "wires", "credentials"})
_FEW_DEFINITIONS = 64  # up to this many config nodes and subflows, a node's JSON text is searched for their ids first
# Sort rules every node-red environment has, on top of its own `sort`.
NODE_LISTS_BY_ID = {"/nodes": "/id", "/configs": "/id", "/subflows": "/id"}
# Ignore rules every node-red environment has: a global config node has no z (Node-RED 1.x wrote "z": "").
CANONICAL_IGNORE = ("/configs/*/z",)


def _clone(value: Any) -> Any:
    """A deep copy of a JSON value (through orjson: a few times faster than walking it in Python)."""
    if isinstance(value, (dict, list)):
        try:
            return orjson.loads(orjson.dumps(value))
        except orjson.JSONEncodeError:  # integers beyond 64 bits
            return _walk_clone(value)
    return value


def _walk_clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _walk_clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk_clone(v) for v in value]
    return value


def _by_id(nodes: Iterable[dict]) -> list[dict]:
    return sorted(nodes, key=lambda n: str(n.get("id")))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _live(node: dict) -> dict:
    """A copy of a node as Node-RED returns it (credentials never; an inline cred value as a credential)."""
    return _clone(surface_inline(stripped(node)))


def _global(node: dict) -> dict:
    """A global config node as its document holds it: no z (an empty one is the same for Node-RED)."""
    return {k: v for k, v in node.items() if k != "z"} if node.get("z") == "" else node


def order_key(version_env: str, default_version: str):
    """The default order of tabs: by label, version, id."""
    def key(tab: dict) -> tuple[str, str, str]:
        label = tab.get("label")
        return (label if isinstance(label, str) else "", str(tab_version(tab, version_env, default_version)),
                str(tab.get("id")))
    return key
class _Index:
    """A Node-RED configuration (the list of nodes of GET /flows), indexed."""

    def __init__(self, nodes: list[dict]):
        self.nodes = nodes
        self.tabs: list[dict] = []
        self.subflows: dict[str, dict] = {}
        self.configs: dict[str, dict] = {}
        self.members: dict[str, list[dict]] = {}
        for n in nodes:
            kind, nid, z = n.get("type"), _str(n.get("id")), _str(n.get("z"))
            if kind == "tab":
                self.tabs.append(n)
            elif kind == "subflow" and nid:
                self.subflows[nid] = n
            elif z:
                self.members.setdefault(z, []).append(n)
            elif nid:
                self.configs[nid] = n
        self._refs: dict[int, frozenset[str]] = {}
        self._uses: dict[str, set[str]] = {}
        self._needles: list[bytes] | None = None  # each definition's id as JSON text, while they are few

    def refs(self, node: dict) -> frozenset[str]:
        """Ids of the config nodes and subflows a node refers to directly."""
        got = self._refs.get(id(node))
        if got is None:
            found: set[str] = set()
            kind = node.get("type")
            if isinstance(kind, str) and kind.startswith("subflow:") and kind[8:] in self.subflows:
                found.add(kind[8:])
            if (self.configs or self.subflows) and self._may_refer(node):
                stack = [v for k, v in node.items() if k not in _NOT_REFS]
                while stack:
                    v = stack.pop()
                    if isinstance(v, str):
                        if v in self.configs or v in self.subflows:
                            found.add(v)
                    elif isinstance(v, dict):
                        stack.extend(v.values())
                    elif isinstance(v, list):
                        stack.extend(v)
            got = self._refs[id(node)] = frozenset(found)
        return got

    def _may_refer(self, node: dict) -> bool:
        """False when no definition's id is in the node's JSON text at all (a C-speed check, while there
        are few definitions); True means: walk it and look."""
        if self._needles is None:
            ids = [*self.configs, *self.subflows]
            self._needles = [orjson.dumps(d) for d in ids] if len(ids) <= _FEW_DEFINITIONS else []
        if not self._needles:
            return True
        try:
            text = orjson.dumps(node)
        except orjson.JSONEncodeError:  # integers beyond 64 bits, keys that are not strings
            return True
        return any(needle in text for needle in self._needles)

    def uses(self, container: str) -> set[str]:
        """Config nodes and subflows a tab (or subflow) uses, transitively."""
        if container in self._uses:
            return self._uses[container]
        seen: set[str] = set()
        stack = [r for n in self.members.get(container, ()) for r in self.refs(n)]
        while stack:
            d = stack.pop()
            if d in seen or d == container:
                continue
            seen.add(d)
            if d in self.configs:
                stack.extend(self.refs(self.configs[d]))
            else:
                stack.extend(self.refs(self.subflows[d]))
                stack.extend(r for n in self.members.get(d, ()) for r in self.refs(n))
        self._uses[container] = seen
        return seen

    def definition(self, d: str) -> list[dict]:
        """A config node, or a subflow with its nodes: what 'the same definition' compares."""
        if d in self.configs:
            return [self.configs[d]]
        return [self.subflows[d], *_by_id(self.members.get(d, ()))]

    def describe(self, d: str) -> str:
        node = self.configs.get(d) or self.subflows.get(d) or {}
        kind = "subflow" if d in self.subflows else f"config node ({node.get('type')})"
        label = node.get("name") or ""
        return f"{kind} {d}" + (f" {label!r}" if label else "")


def _document(index: _Index, tab: dict, version_env: str, default_version: str) -> dict[str, Any]:
    """The flow document of one tab, as Node-RED returns it (a fresh copy; the index is not modified)."""
    doc_tab, version = tab_for_git(_live(tab), version_env, default_version)
    doc: dict[str, Any] = {"name": tab.get("label"), "version": version, "tab": doc_tab}
    tid = _str(tab.get("id"))
    nodes = index.members.get(tid, []) if tid else []
    uses = index.uses(tid) if tid else set()
    configs = [_global(index.configs[d]) for d in uses if d in index.configs]
    subflows = [n for d in uses if d in index.subflows for n in index.definition(d)]
    for key, items in (("nodes", nodes), ("configs", configs), ("subflows", subflows)):
        if items:
            doc[key] = [_live(n) for n in _by_id(items)]
    if doc["name"] is None:
        del doc["name"]
    return doc


def _instance_document(index: _Index, version_env: str, default_version: str) -> dict[str, Any] | None:
    """The instance document (what no tab uses, the tab order), or None when there is nothing of the kind."""
    parts = instance_parts(index, order_key(version_env, default_version))
    if parts is None:
        return None
    doc: dict[str, Any] = {"name": INSTANCE_KEY.name, "version": INSTANCE_KEY.version}
    if "tabs" in parts:
        doc["tabs"] = list(parts["tabs"])
    for key in ("configs", "subflows", "nodes"):
        if key in parts:
            doc[key] = [_live(_global(n) if key == "configs" else n) for n in _by_id(parts[key])]
    return doc


def flow_documents(nodes: list[dict], version_env: str = "FLOW_VERSION", default_version: str = "1") -> dict[str, dict]:
    """Tab id -> flow document, for a Node-RED configuration (pure; see the module docstring)."""
    index = _Index(nodes)
    return {str(t.get("id")): _document(index, t, version_env, default_version) for t in index.tabs}


def instance_document(nodes: list[dict], version_env: str = "FLOW_VERSION",
                      default_version: str = "1") -> dict[str, Any] | None:
    """The instance document of a Node-RED configuration, or None (pure; see :mod:`.instance`)."""
    return _instance_document(_Index(nodes), version_env, default_version)


@dataclass
class _Incoming:
    """A flow document from git, split back into Node-RED nodes (with the credentials to send)."""

    key: FlowKey
    oid: str  # the id of the document as written (credentials rendered): what the plan compares
    live_oid: str  # the id of the document as Node-RED will return it (no credentials)
    doc: dict
    tab: dict | None  # None for the instance document
    nodes: list[dict]  # the tab's nodes; for the instance document, nodes of no tab or subflow
    configs: dict[str, dict]
    subflows: dict[str, list[dict]]  # subflow id -> [definition, its nodes...]
    order: list[str] | None = None  # the instance document's tab order
    live: CanonicalFlow | None = None  # the document as Node-RED will return it, canonical (id live_oid)

    @property
    def tab_id(self) -> str | None:
        return self.tab["id"] if self.tab is not None else None

    def own_ids(self) -> list[str]:
        return [*([self.tab_id] if self.tab is not None else []), *(n["id"] for n in self.nodes)]

    def definition(self, d: str) -> list[dict]:
        """As :meth:`_Index.definition`: a config node, or a subflow and its nodes sorted by id."""
        if d in self.configs:
            return [self.configs[d]]
        return [self.subflows[d][0], *_by_id(self.subflows[d][1:])]

    def definitions(self) -> list[str]:
        return [*self.configs, *self.subflows]

    def every_node(self) -> Iterator[dict]:
        """Every node the document carries (the tab too)."""
        if self.tab is not None:
            yield self.tab
        yield from self.nodes
        yield from self.configs.values()
        for ns in self.subflows.values():
            yield from ns

    def types(self) -> set[str]:
        every = [*self.nodes, *self.configs.values(), *(n for ns in self.subflows.values() for n in ns[1:])]
        return {n["type"] for n in every}


def _parse(change: Change, identity: Identity, rules: Rules) -> tuple[dict, CanonicalFlow]:
    assert change.data is not None
    try:
        doc = parse_json(change.data)
    except InvalidJSON as exc:
        raise Refused(f"not JSON: {exc}") from exc
    got = _as_given(change, doc, identity)
    if got is None:
        got = flow_from_doc(_clone(doc), identity, rules, where=str(change.key))
    if isinstance(got, Problem):
        raise Refused(got.message)
    if not isinstance(doc, dict):
        raise Refused("a Node-RED flow document must be a JSON object")
    return doc, got


def _as_given(change: Change, doc: Any, identity: Identity) -> CanonicalFlow | None:
    """The canonical flow of ``change.data`` without canonicalising it again, when the caller computed its
    blob id from these very bytes (``Change.oid``: git held exactly the canonical bytes the read derived,
    see ``apply._version``) and the document says it is the flow it is written as; else None (the full
    derivation, which also says what is wrong). ~50 µs a tab: 1,000 tabs' sync spent ~55 ms here."""
    if change.oid is None or change.data is None or not isinstance(doc, dict):
        return None
    try:
        if identity.key_of(doc) != change.key:
            return None
    except FlowInvalid:
        return None
    return CanonicalFlow(change.key, change.data, change.oid)


def _incoming(change: Change, identity: Identity, rules: Rules, version_env: str,
              default_version: str = "1") -> _Incoming:
    """Parse and check a document from git; raises :class:`~reconciler.drivers._common.Refused` saying what
    is wrong and where."""
    doc, written = _parse(change, identity, rules)
    oid = written.oid
    instance = change.key.name == INSTANCE_KEY.name
    if instance and change.key != INSTANCE_KEY:
        raise Refused(f"/version: the instance document is {INSTANCE_KEY} (flows/_instance/1.json); "
                      f"the name {INSTANCE_KEY.name!r} is reserved for it")
    allowed = _INSTANCE_KEYS if instance else _DOC_KEYS
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        what = "the instance document" if instance else "a Node-RED flow document"
        raise Refused(f"/{unknown[0]}: unknown key; {what} has {', '.join(allowed)}")
    tab, order = None, None
    if instance:
        order = doc.get("tabs")
        if order is not None and (not isinstance(order, list) or not all(_str(t) for t in order)):
            raise Refused("/tabs: must be an array of tab ids")
    else:
        tab = doc.get("tab")
        if not isinstance(tab, dict) or tab.get("type") != "tab" or not _str(tab.get("id")):
            raise Refused('/tab: must be an object with "type": "tab" and a non-empty "id"')
        if not isinstance(tab.get("env", []), list) or not all(isinstance(e, dict) for e in tab.get("env", [])):
            raise Refused("/tab/env: must be an array of {name, value, type} objects")
    own = {tab["id"]} if tab is not None else set()
    seen: set[str] = set()

    def nodes_at(key: str) -> list[dict]:
        items = doc.get(key, [])
        if not isinstance(items, list):
            raise Refused(f"/{key}: must be an array of nodes")
        for i, n in enumerate(items):
            if not isinstance(n, dict) or not _str(n.get("id")) or not _str(n.get("type")):
                raise Refused(f"/{key}/{i}: a node must be an object with a non-empty string id and type")
            if n["id"] in seen or n["id"] in own:
                raise Refused(f"/{key}/{i}: id {n['id']!r} appears twice in the flow")
            seen.add(n["id"])
        return [surface_inline(_global(n) if key == "configs" else n) for n in items]

    nodes, configs, subflow_nodes = nodes_at("nodes"), nodes_at("configs"), nodes_at("subflows")
    for i, n in enumerate(nodes):
        if tab is not None and n.get("z") != tab["id"]:
            raise Refused(f"/nodes/{i}: z is {n.get('z')!r}, not the tab's id {tab['id']!r}")
        if tab is None and not _str(n.get("z")):
            raise Refused(f"/nodes/{i}: has no z; a node without one is a global config node (in /configs)")
    for i, n in enumerate(configs):
        if "z" in n or n["type"] in _BUILTIN_TYPES:
            raise Refused(f"/configs/{i}: a global config node has no z and is not a {n['type']}")
    subflows: dict[str, list[dict]] = {n["id"]: [n] for n in subflow_nodes if n["type"] == "subflow"}
    for i, n in enumerate(subflow_nodes):
        if n["type"] != "subflow":
            if n.get("z") not in subflows:
                raise Refused(f"/subflows/{i}: z {n.get('z')!r} is not a subflow of this document")
            subflows[n["z"]].append(n)
    for where, items in (("nodes", nodes), ("subflows", subflow_nodes)):
        for i, n in enumerate(items):
            kind = n["type"]
            if kind.startswith("subflow:") and kind[8:] not in subflows:
                raise Refused(f"/{where}/{i}: uses subflow {kind[8:]!r}, which the document does not carry")
    live_doc = {k: v for k, v in doc.items() if k not in ("nodes", "configs", "subflows", "tab")}
    same = True  # the document as Node-RED returns it is the document itself (no credentials, nothing moved)
    for key, items in (("nodes", nodes), ("configs", configs), ("subflows", subflow_nodes)):
        if items:
            live_doc[key] = [stripped(n) for n in items]
            same = same and all(a is b and "credentials" not in a for a, b in zip(live_doc[key], doc[key]))
        elif key in doc:
            same = False  # an empty list is left out
    if tab is not None:
        live_tab = surface_inline(tab)
        live_doc["tab"] = stripped(live_tab)
        same = same and live_doc["tab"] is doc["tab"]
        tab = tab_for_node_red(live_tab, change.key.name, change.key.version, version_env, default_version)
    if same:
        live = written  # the same content: the same canonical flow
    else:
        got = flow_from_doc(live_doc, identity, rules, where=str(change.key))
        assert not isinstance(got, Problem)  # the same document as above, less its credentials
        live = got
    return _Incoming(change.key, oid, live.oid, doc, tab, nodes, {n["id"]: n for n in configs}, subflows,
                     list(order) if order is not None else None, live)


def _first_difference(a: Any, b: Any, path: tuple[str, ...] = ()) -> str:
    """The JSON pointer of the first place (keys in order) where two documents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k, MISSING) != b.get(k, MISSING):
                return _first_difference(a.get(k, MISSING), b.get(k, MISSING), (*path, k))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, (*path, str(i)))
    return format_pointer(path) or "/"
