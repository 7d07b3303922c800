"""The checks a batch passes before it is deployed (pure, no I/O).

Given the snapshot the plan was made from (one ``GET /flows``) and a batch of
changes, :class:`_Checks` says which changes may go and builds the configuration
to deploy: each change is checked against ``Change.expect``, each document from
git is parsed, node types the instance lacks refuse their flow, and the
configuration about to be sent is read back as flows: an import that would not
read back as written, a node id another flow already uses, or a flow outside the
batch that would change (a shared config node or subflow edited in one flow
only) refuses the import responsible, and the rest of the batch goes on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.canonical import Rules, parse_json
from reconciler.drivers import Change, LiveSet
from reconciler.drivers._common import Refused, moved
from reconciler.flows import CanonicalFlow, FlowKey, Identity, flow_from_doc

from .mapping import _BUILTIN_TYPES, _build, _clone, _document, _first_difference, _Incoming, _incoming, _Index, _str

@dataclass
class _Snapshot:
    """One GET /flows, as the plan saw it."""

    rev: str
    index: _Index
    live: LiveSet
    keys: dict[str, FlowKey]  # tab id -> key, for the tabs that are valid flows
    signature: dict[str, str]  # tab id -> canonical oid, or the problem it has
    tab_of: dict[FlowKey, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Checks:
    """How one environment reads tabs as flows, and the checks of a batch against the snapshot the plan saw."""

    url: str  # the instance, for messages
    identity: Identity
    rules: Rules
    version_env: str
    default_version: str

    def document(self, index: _Index, tab: dict) -> dict[str, Any]:
        return _document(index, tab, self.version_env, self.default_version)

    def signature(self, index: _Index, tab: dict) -> str:
        """The canonical blob id of a tab's document, or the problem it has."""
        got = flow_from_doc(self.document(index, tab), self.identity, self.rules, where="")
        return got.oid if isinstance(got, CanonicalFlow) else f"problem: {got.message}"

    def signatures(self, index: _Index) -> dict[str, str]:
        return {str(tab.get("id")): self.signature(index, tab) for tab in index.tabs}

    def sort(self, snap: _Snapshot, changes: Sequence[Change],
             failed: dict[FlowKey, str]) -> tuple[dict[FlowKey, _Incoming], set[FlowKey]]:
        """The imports (parsed) and deletes of a batch that pass the checks of one change alone;
        the others go to ``failed`` with the reason."""
        imports: dict[FlowKey, _Incoming] = {}
        deletes: set[FlowKey] = set()
        for change in changes:
            reason = self._precheck(snap, change)
            if reason:
                failed[change.key] = reason
            elif change.data is None:
                if change.key in snap.tab_of:
                    deletes.add(change.key)
            else:
                try:
                    imports[change.key] = _incoming(change, self.identity, self.rules, self.version_env)
                except Refused as exc:
                    failed[change.key] = f"flow {change.key} cannot be imported: {exc}"
        return imports, deletes

    def _precheck(self, snap: _Snapshot, change: Change) -> str | None:
        if change.key in snap.live.invalid:
            return f"{snap.live.invalid[change.key]}; left as it is"
        current = snap.live.flows.get(change.key)
        found = current.oid if current is not None else None
        if found != change.expect:
            return moved(f"flow {change.key}", change.expect, found, where=f"in Node-RED at {self.url}")
        return None

    def drop_unknown_types(self, imports: dict[FlowKey, _Incoming], installed: set[str],
                           failed: dict[FlowKey, str]) -> None:
        """Refuse the imports using node types the instance does not have (``installed``: GET /nodes)."""
        known = installed | _BUILTIN_TYPES
        for key, inc in list(imports.items()):
            missing = sorted(t for t in inc.types() if t not in known and not t.startswith("subflow:"))
            if missing:
                failed[key] = (
                    f"flow {key} uses node types that Node-RED at {self.url} does not have: "
                    f"{', '.join(repr(t) for t in missing)}; install the modules providing them first "
                    "(Node-RED would accept the flow and never start it)"
                )
                del imports[key]

    def settle(self, snap: _Snapshot, imports: dict[FlowKey, _Incoming], deletes: set[FlowKey],
               failed: dict[FlowKey, str]) -> list[dict] | None:
        """Build the configuration to deploy; drop imports until every flow reads back as meant."""
        while imports or deletes:
            nodes = _build(snap.index, snap.tab_of, imports, deletes)
            bad = self._verify(snap, nodes, imports, deletes)
            if not bad:
                return nodes
            for key, why in bad.items():
                failed[key] = why
                imports.pop(key, None)
        return None

    def _verify(self, snap: _Snapshot, nodes: list[dict], imports: dict[FlowKey, _Incoming],
                deletes: set[FlowKey]) -> dict[FlowKey, str]:
        after = _Index(nodes)
        bad: dict[FlowKey, str] = {}
        # Ids are unique per instance.
        counts = Counter(n.get("id") for n in nodes)
        before = Counter(n.get("id") for n in snap.index.nodes)
        for key, inc in imports.items():
            own = [*inc.own_ids(), *inc.configs, *(n["id"] for ns in inc.subflows.values() for n in ns)]
            clash = next((i for i in own if counts[i] > 1 and before[i] <= 1), None)
            if clash is not None:
                bad[key] = (f"flow {key} cannot be imported: node id {clash!r} is already used by "
                            f"{self._owner(snap, clash, inc, imports)} in Node-RED at {self.url}; ids are unique per "
                            "instance (to copy a flow, import it as a copy in the editor, which gives new ids)")
        signature = self.signatures(after)
        # Each import reads back exactly as written.
        for key, inc in imports.items():
            if key in bad:
                continue
            if signature.get(inc.tab_id) != inc.oid:
                bad[key] = self._mismatch(after, inc, imports)
        # Nothing outside the batch changes.
        removed = {snap.tab_of[k] for k in (*imports, *deletes) if k in snap.tab_of}
        for tid, was in snap.signature.items():
            if tid in removed or signature.get(tid) == was:
                continue
            uses = snap.index.uses(tid) | after.uses(tid)
            culprits = [k for k, inc in imports.items() if self._changes(snap, inc) & uses]
            other = snap.keys.get(tid) or f"tab {tid}"
            for k in culprits or list(imports):
                shared = sorted(self._changes(snap, imports[k]) & uses)
                what = ", ".join(snap.index.describe(d) if d in snap.index.configs or d in snap.index.subflows
                                 else d for d in shared) or "the configuration"
                bad.setdefault(k, (
                    f"flow {k} cannot be imported: it changes {what}, which flow {other} also uses and which "
                    "this run does not update; a shared config node or subflow must change in every flow "
                    "that uses it, in the same commit"
                ))
        return bad

    @staticmethod
    def _changes(snap: _Snapshot, inc: _Incoming) -> set[str]:
        """Definitions an import adds or changes."""
        index = snap.index
        return {
            d for d in inc.definitions()
            if (d not in index.configs and d not in index.subflows) or index.definition(d) != inc.definition(d)
        }

    def _mismatch(self, after: _Index, inc: _Incoming, imports: dict[FlowKey, _Incoming]) -> str:
        for d in inc.definitions():
            if (d in after.configs or d in after.subflows) and after.definition(d) != inc.definition(d):
                other = next((o.key for o in imports.values() if o is not inc and d in o.definitions()), None)
                by = f"flow {other}, imported in the same run" if other else f"Node-RED at {self.url}"
                return (f"flow {inc.key} cannot be imported: it carries a copy of {after.describe(d)} that differs "
                        f"from the one in {by}; flows sharing a definition must carry identical copies")
        tab = next((t for t in after.tabs if t.get("id") == inc.tab_id), None)
        derived: Any = self.document(after, tab) if tab else {}
        got = flow_from_doc(derived, self.identity, self.rules, where="")
        have = parse_json(got.data) if isinstance(got, CanonicalFlow) else derived
        want = flow_from_doc(_clone(inc.doc), self.identity, self.rules, where="")
        where = _first_difference(parse_json(want.data), have) if isinstance(want, CanonicalFlow) else "/"
        return (f"flow {inc.key} cannot be imported: Node-RED would not hold it as written (it would differ at "
                f"{where}); a document must be as the driver exports it: the tab's label and version only in "
                "/name and /version, every config node and subflow the flow uses, and no others")

    @staticmethod
    def _owner(snap: _Snapshot, nid: str, inc: _Incoming, imports: dict[FlowKey, _Incoming]) -> str:
        for n in snap.index.nodes:
            if n.get("id") == nid:
                z = _str(n.get("z"))
                if n.get("type") == "tab":
                    return f"the tab of flow {snap.keys.get(nid, nid)}"
                if z in snap.keys:
                    return f"a node of flow {snap.keys[z]}"
                if z in snap.index.subflows:
                    return f"a node of subflow {z}"
                return f"{n.get('type')} node {nid}"
        other = next((o.key for o in imports.values() if o is not inc and nid in o.own_ids()), None)
        return f"flow {other}, imported in the same run" if other else "another node"
