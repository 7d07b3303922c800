"""The mapping (pure, no I/O): a Node-RED configuration (the nodes of ``GET /flows``) <-> flow documents.

One tab is one flow document (see the package docstring for the form); this
module indexes a configuration (:class:`_Index`), derives the document of each
tab (:func:`flow_documents`), parses and checks a document from git back into
nodes (:func:`_incoming`), and builds the configuration a batch of changes
leaves (:func:`_build`, dropping the definitions nothing uses any more).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reconciler.canonical import InvalidJSON, Rules, format_pointer, parse_json
from reconciler.drivers import Change
from reconciler.drivers._common import Refused
from reconciler.errors import Problem
from reconciler.flows import FlowKey, Identity, flow_from_doc
from reconciler.pointers import MISSING

__all__ = ["flow_documents", "NODE_LISTS_BY_ID"]

# Node types that are structure, not installed modules (GET /nodes does not list them).
_BUILTIN_TYPES = frozenset({"tab", "subflow", "group"})
_DOC_KEYS = ("name", "version", "tab", "nodes", "configs", "subflows")
# Properties that never hold a reference to a config node or a subflow.
_NOT_REFS = frozenset({"id", "z", "type", "wires"})
# Sort rules every node-red environment has, on top of its own `sort`.
NODE_LISTS_BY_ID = {"/nodes": "/id", "/configs": "/id", "/subflows": "/id"}


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _by_id(nodes: Iterable[dict]) -> list[dict]:
    return sorted(nodes, key=lambda n: str(n.get("id")))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


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

    def refs(self, node: dict) -> frozenset[str]:
        """Ids of the config nodes and subflows a node refers to directly."""
        got = self._refs.get(id(node))
        if got is None:
            found: set[str] = set()
            kind = node.get("type")
            if isinstance(kind, str) and kind.startswith("subflow:") and kind[8:] in self.subflows:
                found.add(kind[8:])
            if self.configs or self.subflows:
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

    def uses(self, container: str) -> set[str]:
        """Config nodes and subflows a tab (or subflow) uses, transitively."""
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
    """The flow document of one tab (a fresh copy; the index is not modified)."""
    doc_tab = {k: _clone(v) for k, v in tab.items() if k != "label"}
    version: Any = default_version
    env = doc_tab.get("env")
    if isinstance(env, list):
        for i, entry in enumerate(env):
            if isinstance(entry, dict) and entry.get("name") == version_env:
                version = entry.get("value")
                del env[i]
                break
        if not env:
            del doc_tab["env"]
    doc: dict[str, Any] = {"name": tab.get("label"), "version": version, "tab": doc_tab}
    tid = _str(tab.get("id"))
    nodes = index.members.get(tid, []) if tid else []
    uses = index.uses(tid) if tid else set()
    configs = [index.configs[d] for d in uses if d in index.configs]
    subflows = [n for d in uses if d in index.subflows for n in index.definition(d)]
    for key, items in (("nodes", nodes), ("configs", configs), ("subflows", subflows)):
        if items:
            doc[key] = [_clone(n) for n in _by_id(items)]
    if doc["name"] is None:
        del doc["name"]
    return doc


def flow_documents(nodes: list[dict], version_env: str = "FLOW_VERSION", default_version: str = "1") -> dict[str, dict]:
    """Tab id -> flow document, for a Node-RED configuration (pure; see the module docstring)."""
    index = _Index(nodes)
    return {str(t.get("id")): _document(index, t, version_env, default_version) for t in index.tabs}


@dataclass
class _Incoming:
    """A flow document from git, split back into Node-RED nodes."""

    key: FlowKey
    oid: str
    doc: dict
    tab: dict
    nodes: list[dict]
    configs: dict[str, dict]
    subflows: dict[str, list[dict]]  # subflow id -> [definition, its nodes...]

    @property
    def tab_id(self) -> str:
        return self.tab["id"]

    def own_ids(self) -> list[str]:
        return [self.tab_id, *(n["id"] for n in self.nodes)]

    def definition(self, d: str) -> list[dict]:
        """As :meth:`_Index.definition`: a config node, or a subflow and its nodes sorted by id."""
        if d in self.configs:
            return [self.configs[d]]
        return [self.subflows[d][0], *_by_id(self.subflows[d][1:])]

    def definitions(self) -> list[str]:
        return [*self.configs, *self.subflows]

    def types(self) -> set[str]:
        every = [*self.nodes, *self.configs.values(), *(n for ns in self.subflows.values() for n in ns[1:])]
        return {n["type"] for n in every}


def _incoming(change: Change, identity: Identity, rules: Rules, version_env: str) -> _Incoming:
    """Parse and check a document from git; raises :class:`~reconciler.drivers._common.Refused` saying what
    is wrong and where."""
    assert change.data is not None
    try:
        doc = parse_json(change.data)
    except InvalidJSON as exc:
        raise Refused(f"not JSON: {exc}") from exc
    got = flow_from_doc(_clone(doc), identity, rules, where=str(change.key))
    if isinstance(got, Problem):
        raise Refused(got.message)
    if not isinstance(doc, dict):
        raise Refused("a Node-RED flow document must be a JSON object")
    unknown = sorted(set(doc) - set(_DOC_KEYS))
    if unknown:
        raise Refused(f"/{unknown[0]}: unknown key; a Node-RED flow document has {', '.join(_DOC_KEYS)}")
    tab = doc.get("tab")
    if not isinstance(tab, dict) or tab.get("type") != "tab" or not _str(tab.get("id")):
        raise Refused('/tab: must be an object with "type": "tab" and a non-empty "id"')
    seen: set[str] = set()

    def nodes_at(key: str) -> list[dict]:
        items = doc.get(key, [])
        if not isinstance(items, list):
            raise Refused(f"/{key}: must be an array of nodes")
        for i, n in enumerate(items):
            if not isinstance(n, dict) or not _str(n.get("id")) or not _str(n.get("type")):
                raise Refused(f"/{key}/{i}: a node must be an object with a non-empty string id and type")
            if n["id"] in seen or n["id"] == tab["id"]:
                raise Refused(f"/{key}/{i}: id {n['id']!r} appears twice in the flow")
            seen.add(n["id"])
        return items

    nodes, configs, subflow_nodes = nodes_at("nodes"), nodes_at("configs"), nodes_at("subflows")
    for i, n in enumerate(nodes):
        if n.get("z") != tab["id"]:
            raise Refused(f"/nodes/{i}: z is {n.get('z')!r}, not the tab's id {tab['id']!r}")
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
    if not isinstance(tab.get("env", []), list) or not all(isinstance(e, dict) for e in tab.get("env", [])):
        raise Refused("/tab/env: must be an array of {name, value, type} objects")
    tab = dict(tab, label=change.key.name)
    env = [e for e in tab.get("env", []) if e.get("name") != version_env]
    tab["env"] = [{"name": version_env, "value": change.key.version, "type": "str"}, *env]
    return _Incoming(change.key, got.oid, doc, tab, nodes, {n["id"]: n for n in configs}, subflows)


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


def _build(index: _Index, tab_of: dict[FlowKey, str], imports: dict[FlowKey, _Incoming],
           deletes: set[FlowKey]) -> list[dict]:
    """The configuration after the batch: live order kept, replaced tabs and definitions in place, new ones appended.

    ``index`` is the live configuration; ``tab_of`` the tab id of each live flow.
    """
    configs: dict[str, dict] = {}
    subflows: dict[str, list[dict]] = {}
    for inc in imports.values():
        configs.update(inc.configs)
        subflows.update({d: inc.definition(d) for d in inc.subflows})
    replaced = {tab_of[k]: inc for k, inc in imports.items() if k in tab_of}
    removed = set(replaced) | {tab_of[k] for k in deletes if k in tab_of}
    rewritten = set(subflows) & set(index.subflows)  # their old nodes go, the new ones come with the definition
    out: list[dict] = []
    for n in index.nodes:
        kind, nid, z = n.get("type"), _str(n.get("id")), _str(n.get("z"))
        if kind == "tab":
            if nid in removed:
                inc = replaced.get(nid or "")
                if inc is not None:
                    out += [inc.tab, *_by_id(inc.nodes)]
                continue
        elif kind == "subflow":
            if nid in subflows and index.subflows.get(nid) is n:
                out += subflows.pop(nid)
                continue
        elif z:
            if z in removed or z in rewritten:
                continue
        elif nid in configs and index.configs.get(nid) is n:
            out.append(configs.pop(nid))
            continue
        out.append(n)
    for ns in subflows.values():
        out += ns
    out += configs.values()
    for k, inc in imports.items():
        if k not in tab_of:
            out += [inc.tab, *_by_id(inc.nodes)]
    if removed:
        out = _collect_garbage(out, {d for t in removed for d in index.uses(t)})
    return out


def _collect_garbage(nodes: list[dict], candidates: set[str]) -> list[dict]:
    """Drop the definitions that removed tabs used and nothing else uses any more."""
    index = _Index(nodes)
    candidates = {d for d in candidates if d in index.configs or d in index.subflows}
    if not candidates:
        return nodes
    inside = lambda n: n.get("id") in candidates or n.get("z") in candidates  # noqa: E731
    used: set[str] = set()
    stack = [r for n in nodes if not inside(n) for r in index.refs(n)]
    while stack:
        d = stack.pop()
        if d in used:
            continue
        used.add(d)
        for n in index.definition(d):
            stack.extend(index.refs(n))
    drop = candidates - used
    return [n for n in nodes if n.get("id") not in drop and n.get("z") not in drop]

