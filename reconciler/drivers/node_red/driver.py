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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from reconciler.canonical import Rules, blob_id
from reconciler.drivers import Change, LiveCollector, LiveSet, Progress
from reconciler.drivers._common import DriverBase, Ticker
from reconciler.errors import Problem, RetryableError, StallError
from reconciler.flows import CanonicalFlow, FlowKey, Identity, flow_from_doc

from .api import _AdminAPI
from .build import build
from .checks import INSTANCE_ID, _Checks, _Snapshot
from .comms import Comms, CommsRefused
from .credentials import Memory, carried
from .health import Watch, expect_of, stopped, verdict
from .instance import INSTANCE_KEY
from .mapping import CANONICAL_IGNORE, NODE_LISTS_BY_ID, _Incoming, _Index

__all__ = ["NodeRedDriver"]

log = structlog.get_logger("reconciler.drivers.node_red")


@dataclass
class _Pending:
    """A deploy the health gate has yet to judge: its watch, its rev, what it was made of."""

    watch: Watch
    rev: str
    snap: _Snapshot
    imports: dict[FlowKey, _Incoming]
    deletes: set[FlowKey]
    before: dict[str, object]  # the memory's entries of those flows before the deploy


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
        index = _Index(nodes)
        present = {n["id"] for n in nodes if isinstance(n.get("id"), str)}
        collect = LiveCollector(self.identity, self.rules)
        keys: dict[str, FlowKey] = {}
        signature: dict[str, str] = {}
        found: dict[str, CanonicalFlow] = {}
        tick = Ticker(progress, len(index.tabs))
        for i, tab in enumerate(index.tabs, 1):
            tid = str(tab.get("id"))
            got = self._flow(self.checks.document(index, tab), f"{self.url} tab {tid}", present)
            if isinstance(got, Problem):  # no usable name or version: not a flow, but still compared before every write
                collect.problem(got)
                signature[tid] = f"problem: {got.message}"
            else:
                found[tid], signature[tid] = got, self._live_oid(got)
            tick(i)
        self._add_tabs(collect, found, index)
        instance = self.checks.instance(index)
        if instance is not None:
            got = self._flow(instance, f"{self.url} instance", present)
            assert isinstance(got, CanonicalFlow)  # the reserved name and version are valid
            signature[INSTANCE_ID] = self._live_oid(got)
            if collect.add_flow(got, f"{self.url} instance") is not None:
                keys[INSTANCE_ID] = got.key
        live = collect.result()
        keys.update((t, f.key) for t, f in found.items() if f.key in live.flows)
        self._snapshot = _Snapshot(rev, index, live, keys, signature, {k: t for t, k in keys.items()})
        return live

    def _flow(self, doc: dict, where: str, present: set[str]) -> CanonicalFlow | Problem:
        """A live document as a flow, with the id of the last write when Node-RED still holds it."""
        got = flow_from_doc(doc, self.identity, self.rules, where=where)
        if isinstance(got, Problem):
            return got
        if got.key.name == INSTANCE_KEY.name and "tab" in doc:
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
        nodes = self.checks.settle(snap, imports, deletes, failed)
        if progress is not None:
            progress(len(changes) - len(failed), len(changes))
        if nodes is not None and (imports or deletes):
            self._snapshot = None  # whatever happens next, the next apply reads again
            rev, watch, before = self._deploy(snap, snap.rev, nodes, imports, deletes)
            if watch is not None:
                self._pending = _Pending(watch, rev, snap, imports, deletes, before)
        return failed

    def _deploy(self, snap: _Snapshot, rev: str, nodes: list[dict], imports: dict[FlowKey, _Incoming],
                deletes: set[FlowKey]) -> tuple[str, Watch | None, dict]:
        """POST the nodes (watched on /comms from before, when there are imports to judge); remember what
        was written. Returns the new rev, the watch, and the memory's entries of those flows before."""
        watch = self._watch() if imports and self.health_check else None
        try:
            new_rev = self.api.deploy(rev, self._memory.to_send(nodes, {n.get("id") for n in snap.index.nodes}),
                                      self.deployment_type)
        except BaseException:
            if watch is not None:
                watch.close()
            raise
        before = self._memory.deployed(nodes, [(str(k), i.live_oid, i.oid, i.every_node()) for k, i in imports.items()],
                                       [str(k) for k in deletes])
        log.info("node-red deployed", url=self.url, imported=len(imports), deleted=len(deletes), rev=new_rev[:12],
                 type=self.deployment_type)
        return new_rev, watch, before

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
        deadline = time.monotonic() + timeout
        rev, watch = pending.rev, pending.watch
        bad: dict[FlowKey, str] = {}
        while True:
            try:
                seen = watch.wait(rev, max(0.0, deadline - time.monotonic()), self.health_settle)
            finally:
                watch.close()
            judged = {k: e for k, e in expect.items() if k not in bad}
            found = verdict(seen, judged, rev, timeout)
            bad.update(found)
            log.info("node-red health gate", url=self.url, rev=rev[:12], started=seen.deployed,
                     seconds=round(seen.took, 3), state=(seen.state or {}).get("state"), errors=len(seen.errors),
                     unhealthy=len(found), reconnected=seen.reconnected)
            rest = [k for k in judged if k not in found]
            if not (found and rest and stopped(seen) and self.restore_unhealthy):
                break
            rev, watch = self._without(pending, rev, set(bad))
        if seen.deployed:
            live = self.export()
            if self._snapshot is not None and self._snapshot.rev == rev:
                for key, inc in pending.imports.items():
                    got = live.flows.get(key)
                    if key in expect and key not in bad and (got is None or got.oid != inc.oid):
                        bad[key] = ("Node-RED does not hold the flow as it was deployed (read back after it "
                                    "started); compare the environment with git")
        return bad

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
