"""The checks a batch passes before it is deployed (pure, no I/O).

Given the snapshot the plan was made from (one ``GET /flows``) and a batch of
changes, :class:`_Checks` says which changes may go and builds the configuration
to deploy: each change is checked against ``Change.expect``, each document from
git is parsed, node types the instance lacks refuse their flow, and the
configuration about to be sent is read back as flows: an import that would not
read back as written, a node id another flow already uses, a flow outside the
batch that would change (a shared config node or subflow edited in one flow
only, its credentials too), or an instance document (tab order, unused
definitions) that would change without being part of the batch refuses the
change responsible, and the rest of the batch goes on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.canonical import Rules, already_canonical, parse_json
from reconciler.drivers import Change, LiveSet
from reconciler.drivers._common import Refused, moved
from reconciler.errors import Problem
from reconciler.flows import CanonicalFlow, FlowKey, Identity, flow_from_doc

from .build import build
from .credentials import Memory, fingerprint, stripped
from .instance import INSTANCE_KEY, INSTANCE_PATH, unused
from .mapping import (_BUILTIN_TYPES, _clone, _document, _first_difference, _Incoming, _incoming, _Index,
                      _instance_document, _str, order_key)

INSTANCE_ID = ""  # the instance document's place among the tab ids of a snapshot (no tab has an empty id)


@dataclass
class _Snapshot:
    """One GET /flows, as the plan saw it."""

    rev: str
    index: _Index
    live: LiveSet
    keys: dict[str, FlowKey]  # tab id (INSTANCE_ID for the instance document) -> key, for valid flows
    signature: dict[str, str]  # tab id -> canonical oid as Node-RED returns it, or the problem it has
    tab_of: dict[FlowKey, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Checks:
    """How one environment reads tabs as flows, and the checks of a batch against the snapshot the plan saw."""

    url: str  # the instance, for messages
    identity: Identity
    rules: Rules
    version_env: str
    default_version: str

    @property
    def order_key(self):
        return order_key(self.version_env, self.default_version)

    def document(self, index: _Index, tab: dict) -> dict[str, Any]:
        return _document(index, tab, self.version_env, self.default_version)

    def instance(self, index: _Index) -> dict[str, Any] | None:
        return _instance_document(index, self.version_env, self.default_version)

    def derive(self, index: _Index, meant: Mapping[str, CanonicalFlow] | None = None) -> dict[str, CanonicalFlow | Problem]:
        """Tab id -> its document as Node-RED returns it, as a flow (or its problem), and the instance
        document's under INSTANCE_ID: what an export of this configuration reads (before the driver's
        memory of credentials). ``meant``: tab id -> the flow an import means it to read as (canonical
        under these rules); a tab whose document is already written out as its bytes is that flow,
        without canonicalising it again (:func:`~reconciler.canonical.already_canonical`)."""
        out: dict[str, CanonicalFlow | Problem] = {}
        for tab in index.tabs:
            tid, doc = str(tab.get("id")), self.document(index, tab)
            known = meant.get(tid) if meant else None
            if known is not None and known.data is not None and already_canonical(doc, known.data):
                out[tid] = known  # the same JSON as the bytes it was made of: the same key, bytes and id
                continue
            out[tid] = flow_from_doc(doc, self.identity, self.rules, where="")
        doc = self.instance(index)
        if doc is not None:
            out[INSTANCE_ID] = flow_from_doc(doc, self.identity, self.rules, where="")
        return out

    def signatures(self, index: _Index) -> dict[str, str]:
        """Tab id -> the canonical id of its document as Node-RED returns it (or its problem), and the
        instance document's under INSTANCE_ID."""
        return _signatures(self.derive(index))

    def sort(self, snap: _Snapshot, changes: Sequence[Change],
             failed: dict[FlowKey, str]) -> tuple[dict[FlowKey, _Incoming], set[FlowKey]]:
        """The imports (parsed) and deletes of a batch that pass the checks of one change alone;
        the others go to ``failed`` with the reason."""
        imports: dict[FlowKey, _Incoming] = {}
        deletes: set[FlowKey] = set()
        for change in changes:
            reason = self._precheck(snap, change)
            inc = None
            if change.data is not None and change.key not in snap.live.invalid:
                try:
                    inc = _incoming(change, self.identity, self.rules, self.version_env, self.default_version)
                except Refused as exc:
                    if reason is None:
                        failed[change.key] = f"flow {change.key} cannot be imported: {exc}"
                        continue
            if reason is not None:
                if not self._holds_already(snap, change, inc):
                    failed[change.key] = reason
            elif change.data is None:
                if change.key in snap.tab_of:
                    deletes.add(change.key)
            elif inc is not None:
                imports[change.key] = inc
        return imports, deletes

    @staticmethod
    def _holds_already(snap: _Snapshot, change: Change, inc: _Incoming | None) -> bool:
        """The live flow moved since the plan, but to what the change writes: nothing to do (a restore
        the health gate made already, a deploy of the same version in the editor)."""
        if change.key in snap.live.invalid:
            return False
        current = snap.live.flows.get(change.key)
        if change.data is None:
            return current is None
        return inc is not None and current is not None and current.oid == inc.oid

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

    def drop_credential_conflicts(self, snap: _Snapshot, imports: dict[FlowKey, _Incoming], deletes: set[FlowKey],
                                  memory: Memory, failed: dict[FlowKey, str]) -> None:
        """Refuse an import that changes the credentials of a node another flow, outside the batch, carries
        with the ones last sent (a shared config node's credentials change in every flow, or not at all)."""
        batch = {str(k) for k in (*imports, *deletes)}
        carried: dict[str, list[tuple[str, str]]] = {}
        for other, m in memory.flows.items():
            if other not in batch:
                for nid, h in m.credentials.items():
                    carried.setdefault(nid, []).append((other, h))
        if not carried:
            return
        for key, inc in list(imports.items()):
            for n in inc.every_node():
                creds = n.get("credentials")
                if creds is None or n["id"] not in carried:
                    continue
                h = fingerprint(n["id"], creds)
                other = next((o for o, oh in carried[n["id"]] if oh != h), None)
                if other is not None:
                    failed[key] = (f"flow {key} cannot be imported: it changes the credentials of {n['type']} node "
                                   f"{n['id']}, which flow {other} also carries with the ones sent before; change "
                                   "them in every flow that uses it, in the same commit")
                    del imports[key]
                    break

    def settle(self, snap: _Snapshot, imports: dict[FlowKey, _Incoming], deletes: set[FlowKey],
               failed: dict[FlowKey, str]) -> tuple[list[dict], dict[str, CanonicalFlow | Problem]] | None:
        """Build the configuration to deploy; drop changes until every flow reads back as meant. Returns
        the nodes and what they read as (:meth:`derive`), or None when no change is left."""
        while imports or deletes:
            nodes = build(snap.index, snap.tab_of, imports, deletes, self.order_key)
            bad, derived = self._verify(snap, nodes, imports, deletes)
            if not bad:
                return nodes, derived
            for key, why in bad.items():
                failed[key] = why
                imports.pop(key, None)
                deletes.discard(key)
        return None

    def _verify(self, snap: _Snapshot, nodes: list[dict], imports: dict[FlowKey, _Incoming],
                deletes: set[FlowKey]) -> tuple[dict[FlowKey, str], dict[str, CanonicalFlow | Problem]]:
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
        derived = self.derive(after, {inc.tab_id: inc.live for inc in imports.values()
                                      if inc.tab_id is not None and inc.live is not None})
        signature = _signatures(derived)
        # Each import reads back exactly as written.
        for key, inc in imports.items():
            if key not in bad and signature.get(inc.tab_id if inc.tab is not None else INSTANCE_ID) != inc.live_oid:
                bad[key] = self._mismatch(after, inc, imports)
        if INSTANCE_KEY in deletes and INSTANCE_ID in signature:
            bad[INSTANCE_KEY] = (f"{INSTANCE_KEY} cannot be deleted: Node-RED at {self.url} would still have tabs in "
                                 "an order of their own or definitions no tab uses, which that document holds")
        # Nothing outside the batch changes.
        removed = {snap.tab_of[k] for k in (*imports, *deletes) if k in snap.tab_of}
        for tid, was in snap.signature.items():
            if tid in removed or tid == INSTANCE_ID or signature.get(tid) == was:
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
        in_batch = INSTANCE_KEY in imports or INSTANCE_KEY in deletes
        if not in_batch and snap.signature.get(INSTANCE_ID) != signature.get(INSTANCE_ID):
            for k, why in self._instance_culprits(snap, after, imports, deletes).items():
                bad.setdefault(k, why)
        return bad, derived

    def _instance_culprits(self, snap: _Snapshot, after: _Index, imports: dict[FlowKey, _Incoming],
                           deletes: set[FlowKey]) -> dict[FlowKey, str]:
        """Why each change of the batch would change the instance document, which the batch does not carry."""
        out: dict[FlowKey, str] = {}
        then, now = self.instance(snap.index) or {}, self.instance(after) or {}
        if then.get("tabs") != now.get("tabs"):
            for k, inc in imports.items():
                if inc.tab is not None and k not in snap.tab_of:
                    out[k] = (f"flow {k} cannot be imported: the tab order ({INSTANCE_PATH} /tabs) does not list its "
                              f"tab {inc.tab_id!r}; add it there in the same commit (an export writes both), or "
                              "remove /tabs to order the tabs by name")
            for k in deletes:
                out[k] = (f"flow {k} cannot be deleted: the tab order ({INSTANCE_PATH} /tabs) lists its tab "
                          f"{snap.tab_of.get(k)!r}; remove it there in the same commit")
        spare_then, spare_now = set(unused(snap.index)), set(unused(after))
        for d in spare_then - spare_now:  # used now
            for k, inc in imports.items():
                if inc.tab is not None and d in after.uses(inc.tab_id or ""):
                    out.setdefault(k, f"flow {k} cannot be imported: it uses {snap.index.describe(d)}, which "
                                      f"{INSTANCE_PATH} holds (no tab used it); take it out of that document in "
                                      "the same commit")
        for d in spare_now - spare_then:  # left unused
            for k in (*imports, *deletes):
                if k in snap.tab_of and d in snap.index.uses(snap.tab_of[k]):
                    out.setdefault(k, f"flow {k} cannot be {'deleted' if k in deletes else 'imported'}: it leaves "
                                      f"{after.describe(d)} used by no tab; add it to {INSTANCE_PATH} in the same "
                                      "commit")
        if not out:
            for k in (*imports, *deletes):
                out[k] = (f"flow {k} cannot be {'deleted' if k in deletes else 'imported'}: it changes "
                          f"{INSTANCE_PATH}, which this run does not update; change both in the same commit")
        return out

    @staticmethod
    def _changes(snap: _Snapshot, inc: _Incoming) -> set[str]:
        """Definitions an import adds or changes (credentials aside: Node-RED does not return them)."""
        index = snap.index
        return {
            d for d in inc.definitions()
            if (d not in index.configs and d not in index.subflows)
            or index.definition(d) != [stripped(n) for n in inc.definition(d)]
        }

    def _mismatch(self, after: _Index, inc: _Incoming, imports: dict[FlowKey, _Incoming]) -> str:
        for d in inc.definitions():
            if (d in after.configs or d in after.subflows) and after.definition(d) != inc.definition(d):
                other = next((o.key for o in imports.values() if o is not inc and d in o.definitions()), None)
                by = f"flow {other}, imported in the same run" if other else f"Node-RED at {self.url}"
                return (f"flow {inc.key} cannot be imported: it carries a copy of {after.describe(d)} that differs "
                        f"from the one in {by}; flows sharing a definition must carry identical copies")
        if inc.tab is None:
            derived: Any = self.instance(after) or {}
            rule = ("the instance document holds exactly the config nodes and subflows no tab uses, and /tabs "
                    "lists every tab in order when the order is not by name")
        else:
            tab = next((t for t in after.tabs if t.get("id") == inc.tab_id), None)
            derived = self.document(after, tab) if tab else {}
            rule = ("a document must be as the driver exports it: the tab's label and version only in /name and "
                    "/version, every config node and subflow the flow uses, and no others")
        got = flow_from_doc(derived, self.identity, self.rules, where="")
        have = parse_json(got.data) if isinstance(got, CanonicalFlow) else derived
        want_doc = {k: ([stripped(n) for n in v] if k in ("nodes", "configs", "subflows") else v)
                    for k, v in _clone(inc.doc).items()}
        if isinstance(want_doc.get("tab"), dict):
            want_doc["tab"] = stripped(want_doc["tab"])
        want = flow_from_doc(want_doc, self.identity, self.rules, where="")
        where = _first_difference(parse_json(want.data), have) if isinstance(want, CanonicalFlow) else "/"
        return (f"flow {inc.key} cannot be imported: Node-RED would not hold it as written (it would differ at "
                f"{where}); {rule}")

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


def _signatures(derived: dict[str, CanonicalFlow | Problem]) -> dict[str, str]:
    return {t: got.oid if isinstance(got, CanonicalFlow) else f"problem: {got.message}" for t, got in derived.items()}
