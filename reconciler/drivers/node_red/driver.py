"""The Node-RED driver: the whole :class:`~reconciler.drivers.Driver` port over one instance, with its
health gate (``HealthChecked``) and its memory of the credentials it sent (``Remembering``).

``export`` is one ``GET /flows`` (the tabs and the instance document as flows,
and the snapshot the next ``apply`` is guarded by); ``apply`` is one ``POST
/flows`` per batch carrying the rev of that snapshot, after the checks of
:mod:`.checks`, with the credentials that changed (:mod:`.credentials`), watched
on ``/comms`` from before it is sent (:mod:`.health`); ``check_health`` reads
what that watch saw and the flows back; ``load`` and ``reread`` read the whole
configuration again (one request is all Node-RED needs); ``close`` releases the
connections.

Right after a deploy, Node-RED's answer can prove what it holds: its rev is the
SHA-256 of ``JSON.stringify`` of the flows it keeps (the nodes sent, less
their credentials). When our JSON of those nodes hashes to it, ``reread`` and
the health gate's read-back take them as read (a GET then would only wait
for Node-RED to finish starting the flows); otherwise (another encoding of a
number, another Node-RED) they read ``GET /flows``. An export whose ``GET
/flows`` is, byte for byte, the configuration deployed at that rev reuses what
the checks derived from it before the deploy instead of reading every tab again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from reconciler.canonical import Rules, blob_id
from reconciler.drivers import Change, LiveCollector, LiveSet, Progress
from reconciler.drivers._common import DriverBase, Ticker
from reconciler.errors import Problem, RetryableError, StallError
from reconciler.flows import CanonicalFlow, FlowKey, Identity, flow_from_doc

from reconciler.logsetup import get_logger
from .api import _AdminAPI
from .build import build
from .checks import INSTANCE_ID, _Checks, _Snapshot
from .comms import Comms, CommsRefused
from .credentials import Memory, carried
from .health import Watch, expect_of, starts_at_once, stopped, verdict
from .instance import INSTANCE_KEY
from .mapping import CANONICAL_IGNORE, NODE_LISTS_BY_ID, _Incoming, _Index

__all__ = ["NodeRedDriver"]

log = get_logger("reconciler.drivers.node_red")


@dataclass
class _Pending:
    """A deploy the health gate has yet to judge: its watch, its rev, what it was made of."""

    watch: Watch
    rev: str
    snap: _Snapshot
    imports: dict[FlowKey, _Incoming]
    deletes: set[FlowKey]
    before: dict[str, object]  # the memory's entries of those flows before the deploy


@dataclass
class _Written:
    """What the last deploy left in Node-RED: its rev, the nodes as Node-RED holds them (it deletes a
    node's credentials when they are set, in JavaScript's sense), and what they read as (``derived``, from
    the checks before the deploy; None when not derived). ``proven``: the rev Node-RED answered is the
    SHA-256 of exactly these nodes as JSON (Node-RED >= 4 computes the rev so: ``JSON.stringify`` of the
    flows it keeps), so they are what it holds at that rev, without reading them back."""

    rev: str
    nodes: list[dict]
    derived: Mapping[str, CanonicalFlow | Problem] | None
    proven: bool
    body: bytes | None  # the nodes as JSON (None: they cannot be encoded)

    @classmethod
    def of(cls, rev: str, sent: list[dict], derived: Mapping[str, CanonicalFlow | Problem] | None) -> "_Written":
        held = [_as_held(n) for n in sent]
        try:
            body: bytes | None = orjson.dumps(held)
        except orjson.JSONEncodeError:  # e.g. a lone surrogate: Node-RED's JSON cannot be reproduced
            body = None
        proven = body is not None and bool(rev) and hashlib.sha256(body).hexdigest() == rev
        return cls(rev, held, derived, proven, body)

    def holds(self, nodes: list[dict]) -> bool:
        """``nodes`` (a GET /flows at ``rev``) are exactly the ones written: as JSON, byte for byte (in
        Python 300 == 300.0 and 1 == True, which canonical JSON tells apart)."""
        if self.body is None:
            return False
        try:
            return orjson.dumps(nodes) == self.body
        except orjson.JSONEncodeError:
            return False


def _as_held(node: dict) -> dict:
    """A node as Node-RED keeps it after a deploy: ``credentials`` deleted when truthy (in JavaScript)."""
    if "credentials" not in node:
        return node
    creds = node["credentials"]
    truthy = isinstance(creds, (dict, list)) or creds not in (None, False, 0, "")
    return {k: v for k, v in node.items() if k != "credentials"} if truthy else node


class NodeRedDriver(DriverBase):
    """The Driver protocol over Node-RED's Admin HTTP API (see the package docstring)."""

    def __init__(self, url: str, identity: Identity = Identity(), rules: Rules | None = None, *,
                 token_env: str | None = None, username_env: str | None = None, password_env: str | None = None,
                 timeout: float = 30.0, attempts: int = 3, backoff: float = 0.5, check_types: bool = True,
                 version_env: str = "FLOW_VERSION", default_version: str = "1", deploy: str = "flows",
                 health_check: bool = True, health_settle: float = 0.5, restore_unhealthy: bool = True,
                 environ: Mapping[str, str] | None = None, sleep: Callable[[float], None] | None = None):
        self.url = url.rstrip("/")
        self.location = self.url
        self.identity = identity
        self.rules = rules if rules is not None else Rules.of(CANONICAL_IGNORE, NODE_LISTS_BY_ID)
        self.check_types, self.version_env, self.default_version = check_types, version_env, default_version
        self.deployment_type = deploy
        self.health_check, self.health_settle, self.timeout = health_check, health_settle, timeout
        self.restore_unhealthy = restore_unhealthy  # the environment's on_unhealthy is "restore"
        self.api = _AdminAPI(self.url, timeout=timeout, attempts=attempts, backoff=backoff, token_env=token_env,
                             username_env=username_env, password_env=password_env, environ=environ, sleep=sleep)
        self.checks = _Checks(self.url, identity, self.rules, version_env, default_version)
        self._snapshot: _Snapshot | None = None
        self._memory = Memory()
        self._pending: _Pending | None = None
        self._written: _Written | None = None

    # -- memory (Remembering) ------------------------------------------------------------

    def carry_write_only(self, live: Any, git: Any) -> Any:
        """WriteOnly: Node-RED never returns credentials; git's placeholders for them are kept."""
        return carried(live, git)

    def recall(self, memory: Mapping | None) -> None:
        self._memory = Memory.load(memory)

    def memory(self) -> Mapping | None:
        return self._memory.dump()

    # -- export --------------------------------------------------------------------------

    def export(self, progress: Progress | None = None) -> LiveSet:
        rev, nodes = self.api.get_flows()
        written = self._written
        if written is not None and written.rev != rev:
            self._written = written = None  # Node-RED moved on: nothing of that deploy is of use (or kept)
        derived = written.derived if written is not None and written.holds(nodes) else None
        return self._read(rev, nodes, derived, progress)

    def _read(self, rev: str, nodes: list[dict], derived: Mapping[str, CanonicalFlow | Problem] | None = None,
              progress: Progress | None = None) -> LiveSet:
        """The flows of a configuration (``nodes`` at ``rev``), and the snapshot of it; ``derived``: what
        :meth:`_Checks.derive` made of these very nodes (taken instead of reading each tab again)."""
        index = _Index(nodes)
        present = {n["id"] for n in nodes if isinstance(n.get("id"), str)}
        collect = LiveCollector(self.identity, self.rules)
        keys: dict[str, FlowKey] = {}
        signature: dict[str, str] = {}
        found: dict[str, CanonicalFlow] = {}
        tick = Ticker(progress, len(index.tabs))
        for i, tab in enumerate(index.tabs, 1):
            tid = str(tab.get("id"))
            known = derived.get(tid) if derived is not None else None
            got = self._flow(known if isinstance(known, CanonicalFlow) else self.checks.document(index, tab),
                             f"{self.url} tab {tid}", present)
            if isinstance(got, Problem):  # no usable name or version: not a flow, but still compared before every write
                collect.problem(got)
                signature[tid] = f"problem: {got.message}"
            else:
                found[tid], signature[tid] = got, self._live_oid(got)
            tick(i)
        self._add_tabs(collect, found, index)
        # derived holds the instance document exactly when these nodes have one (computing it walks every tab)
        known = derived.get(INSTANCE_ID) if derived is not None else None
        instance = known if isinstance(known, CanonicalFlow) else (
            self.checks.instance(index) if derived is None or known is not None else None)
        if instance is not None:
            got = self._flow(instance, f"{self.url} instance", present, tab=False)
            assert isinstance(got, CanonicalFlow)  # the reserved name and version are valid
            signature[INSTANCE_ID] = self._live_oid(got)
            if collect.add_flow(got, f"{self.url} instance") is not None:
                keys[INSTANCE_ID] = got.key
        live = collect.result()
        keys.update((t, f.key) for t, f in found.items() if f.key in live.flows)
        self._snapshot = _Snapshot(rev, index, live, keys, signature, {k: t for t, k in keys.items()})
        return live

    def _flow(self, doc: dict | CanonicalFlow, where: str, present: set[str], tab: bool = True) -> CanonicalFlow | Problem:
        """A live document (or the flow already made of it) as a flow, with the id of the last write when
        Node-RED still holds it."""
        got = doc if isinstance(doc, CanonicalFlow) else flow_from_doc(doc, self.identity, self.rules, where=where)
        if isinstance(got, Problem):
            return got
        if got.key.name == INSTANCE_KEY.name and tab:
            return Problem(where, f"the label {INSTANCE_KEY.name!r} is reserved for the instance document "
                                  "(flows/_instance/1.json); rename the tab", "/name", str(got.key))
        written = self._memory.written_id(str(got.key), got.oid, present)
        return CanonicalFlow(got.key, got.data, written) if written is not None else got

    @staticmethod
    def _live_oid(flow: CanonicalFlow) -> str:
        """The id of what Node-RED returns (a flow's ``oid`` may be that of the last write, credentials in)."""
        assert flow.data is not None
        return blob_id(flow.data)

    def _add_tabs(self, collect: LiveCollector, found: dict[str, CanonicalFlow], index: _Index) -> None:
        """Add the tabs' flows; tabs sharing a name and version are all left out, with a problem naming them."""
        by_key: dict[FlowKey, list[str]] = {}
        for tid, f in found.items():
            by_key.setdefault(f.key, []).append(tid)
        for key, tids in by_key.items():
            if len(tids) == 1:
                collect.add_flow(found[tids[0]], f"{self.url} tab {tids[0]}")
                continue
            why = (f"tabs {', '.join(repr(t) for t in tids)} of Node-RED at {self.url} are all labelled "
                   f"{key.name!r} with version {key.version!r}; rename all but one in the editor, or give each its "
                   f"own {self.version_env} (Edit flow -> Environment variables): until then none of them is "
                   "synced or exported, and they are left as they are")
            collect.invalid[key] = why
            collect.problems.extend(Problem(f"{self.url} tab {t}", why, "/name", str(key)) for t in tids)

    # -- apply ---------------------------------------------------------------------------

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> dict[FlowKey, str]:
        """One deploy for the batch, guarded by the rev of the export the plan saw."""
        self._forget_pending()
        if self._snapshot is None:
            self.export()
        snap = self._snapshot
        assert snap is not None
        failed: dict[FlowKey, str] = {}
        imports, deletes = self.checks.sort(snap, changes, failed)
        if imports and self.check_types:
            self.checks.drop_unknown_types(imports, self.api.node_types(), failed)
        self.checks.drop_credential_conflicts(snap, imports, deletes, self._memory, failed)
        settled = self.checks.settle(snap, imports, deletes, failed)
        if progress is not None:
            progress(len(changes) - len(failed), len(changes))
        if settled is not None and (imports or deletes):
            self._snapshot = None  # whatever happens next, the next apply reads again
            nodes, derived = settled
            rev, watch, before = self._deploy(snap, snap.rev, nodes, imports, deletes, derived)
            if watch is not None:
                self._pending = _Pending(watch, rev, snap, imports, deletes, before)
        return failed

    def _deploy(self, snap: _Snapshot, rev: str, nodes: list[dict], imports: dict[FlowKey, _Incoming],
                deletes: set[FlowKey], derived: Mapping[str, CanonicalFlow | Problem] | None = None,
                ) -> tuple[str, Watch | None, dict]:
        """POST the nodes (watched on /comms from before, when there are imports to judge); remember what
        was written. Returns the new rev, the watch, and the memory's entries of those flows before."""
        watch = self._watch() if imports and self.health_check else None
        self._written = None
        there = {n.get("id") for n in snap.index.nodes} - self._edited_elsewhere(snap, imports)
        sent = self._memory.to_send(nodes, there)  # only credentials differ, or no longer known
        try:
            new_rev = self.api.deploy(rev, sent, self.deployment_type)
        except BaseException:
            if watch is not None:
                watch.close()
            raise
        self._written = _Written.of(new_rev, sent, derived)
        before = self._memory.deployed(nodes, [(str(k), i.live_oid, i.oid, i.every_node()) for k, i in imports.items()],
                                       [str(k) for k in deletes])
        log.info("node-red deployed", url=self.url, imported=len(imports), deleted=len(deletes), rev=new_rev[:12],
                 type=self.deployment_type)
        return new_rev, watch, before

    def _edited_elsewhere(self, snap: _Snapshot, imports: Mapping[FlowKey, _Incoming]) -> set[str]:
        """Nodes with credentials in imported flows that Node-RED holds, but not as our last write (edited in
        the editor: a restore). An edit may have set their credentials too and Node-RED never says, so the
        memory of what was sent proves nothing of them: their credentials are sent again."""
        out: set[str] = set()
        for key, inc in imports.items():
            got = snap.live.flows.get(key)
            last = self._memory.flows.get(str(key))
            if got is not None and (last is None or got.oid != last.written):
                out.update(n["id"] for n in inc.every_node() if isinstance(n.get("credentials"), dict))
        return out

    # -- the health gate (HealthChecked) -----------------------------------------------------

    def _watch(self) -> Watch:
        """A /comms watch, before the deploy: unreachable is retryable (nothing was deployed yet)."""
        def connect() -> Comms:
            return Comms(self.url, self.api.bearer(), timeout=self.timeout)
        try:
            return Watch(connect, self.timeout)
        except CommsRefused as exc:
            raise StallError(f"Node-RED at {self.url}: /comms refused the token ({exc}); check the token or "
                             "login variables (the user needs read access), or set health_check = false") from exc
        except (OSError, EOFError) as exc:
            raise RetryableError(f"Node-RED at {self.url}: /comms (the health gate's websocket) is unreachable "
                                 f"({exc}); nothing was deployed, retrying later") from exc

    def check_health(self, keys: Sequence[FlowKey], timeout: float) -> dict[FlowKey, str]:
        """Judge the last deploy by what /comms said (:mod:`.health`), then read the flows back.

        When Node-RED stopped the whole deploy for the types or modules some flows lack, the others never
        started, so nothing can be said of them: with ``on_unhealthy = "restore"`` the driver deploys the
        batch again without those flows (their previous versions: the restore the engine does next) and
        judges the others by that deploy."""
        pending, self._pending = self._pending, None
        if pending is None:
            return {}
        expect = {k: expect_of(inc.every_node()) for k, inc in pending.imports.items() if k in keys}
        at_once = all(starts_at_once(inc.every_node()) for k, inc in pending.imports.items() if k in keys)
        deadline = time.monotonic() + timeout
        rev, watch = pending.rev, pending.watch
        bad: dict[FlowKey, str] = {}
        while True:
            try:
                seen = watch.wait(rev, max(0.0, deadline - time.monotonic()), self.health_settle, at_once=at_once)
            finally:
                watch.close()
            judged = {k: e for k, e in expect.items() if k not in bad}
            found = verdict(seen, judged, rev, timeout)
            bad.update(found)
            log.info("node-red health gate", url=self.url, rev=rev[:12], started=seen.deployed,
                     seconds=round(seen.took, 3), state=(seen.state or {}).get("state"), errors=len(seen.errors),
                     unhealthy=len(found), reconnected=seen.reconnected, barrier=seen.barrier)
            rest = [k for k in judged if k not in found]
            if not (found and rest and stopped(seen) and self.restore_unhealthy):
                break
            rev, watch = self._without(pending, rev, set(bad))
        if seen.deployed:
            live = self._proven(rev) or self.export()
            if self._snapshot is not None and self._snapshot.rev == rev:
                for key, inc in pending.imports.items():
                    got = live.flows.get(key)
                    if key in expect and key not in bad and (got is None or got.oid != inc.oid):
                        bad[key] = ("Node-RED does not hold the flow as it was deployed (read back after it "
                                    "started); compare the environment with git")
        return bad

    def reread(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        """The ids now live: right after a deploy whose answer proves what Node-RED holds (see
        :class:`_Written`), those of what was written, without reading it back; else one GET /flows."""
        live = self._proven() or self.export()
        return {k: (f.oid if (f := live.flows.get(k)) else None) for k in keys}

    def _proven(self, rev: str | None = None) -> LiveSet | None:
        """The flows of the last deploy (at ``rev``, if given) when its answer proved them, with the
        snapshot the next apply is guarded by; None when it did not."""
        w = self._written
        if w is None or not w.proven or (rev is not None and w.rev != rev):
            return None
        if self._snapshot is not None and self._snapshot.rev == w.rev:
            return self._snapshot.live
        return self._read(w.rev, w.nodes, w.derived)

    def _without(self, pending: "_Pending", rev: str, culprits: set[FlowKey]) -> tuple[str, Watch]:
        """Deploy the batch again without ``culprits`` (back to what they were), watched."""
        imports = {k: inc for k, inc in pending.imports.items() if k not in culprits}
        nodes = build(pending.snap.index, pending.snap.tab_of, imports, pending.deletes, self.checks.order_key)
        self._memory.forget_writes({str(k): pending.before.get(str(k)) for k in culprits})
        new_rev, watch, _ = self._deploy(pending.snap, rev, nodes, imports, pending.deletes)
        assert watch is not None
        return new_rev, watch

    def _forget_pending(self) -> None:
        if self._pending is not None:
            self._pending.watch.close()
            self._pending = None

    def close(self) -> None:
        self._forget_pending()
        self.api.close()
