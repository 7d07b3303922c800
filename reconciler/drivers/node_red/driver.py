"""The Node-RED driver: the whole :class:`~reconciler.drivers.Driver` port over one instance.

``export`` is one ``GET /flows`` (the tabs as flows, and the snapshot the next
``apply`` is guarded by); ``apply`` is one ``POST /flows`` per batch carrying the
rev of that snapshot, after the checks of :mod:`.checks`; ``load`` and ``reread``
read the whole configuration again (one request is all Node-RED needs, and the
documents of the other tabs are needed anyway to find the one asked for);
``close`` releases the connections.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import structlog

from reconciler.canonical import Rules
from reconciler.drivers import Change, LiveCollector, LiveSet, Progress
from reconciler.drivers._common import DriverBase, Ticker
from reconciler.flows import CanonicalFlow, FlowKey, Identity

from .api import _AdminAPI
from .checks import _Checks, _Snapshot
from .mapping import NODE_LISTS_BY_ID, _Index

__all__ = ["NodeRedDriver"]

log = structlog.get_logger("reconciler.drivers.node_red")


class NodeRedDriver(DriverBase):
    """The Driver protocol over Node-RED's Admin HTTP API (see the package docstring)."""

    def __init__(self, url: str, identity: Identity = Identity(), rules: Rules | None = None, *,
                 token_env: str | None = None, username_env: str | None = None, password_env: str | None = None,
                 timeout: float = 30.0, attempts: int = 3, backoff: float = 0.5, check_types: bool = True,
                 version_env: str = "FLOW_VERSION", default_version: str = "1", deploy: str = "flows",
                 environ: Mapping[str, str] | None = None, sleep: Callable[[float], None] | None = None):
        self.url = url.rstrip("/")
        self.location = self.url
        self.identity = identity
        self.rules = rules if rules is not None else Rules.of((), NODE_LISTS_BY_ID)
        self.check_types, self.version_env, self.default_version = check_types, version_env, default_version
        self.deployment_type = deploy
        self.api = _AdminAPI(self.url, timeout=timeout, attempts=attempts, backoff=backoff, token_env=token_env,
                             username_env=username_env, password_env=password_env, environ=environ, sleep=sleep)
        self.checks = _Checks(self.url, identity, self.rules, version_env, default_version)
        self._snapshot: _Snapshot | None = None

    # -- export --------------------------------------------------------------------------

    def export(self, progress: Progress | None = None) -> LiveSet:
        rev, nodes = self.api.get_flows()
        index = _Index(nodes)
        collect = LiveCollector(self.identity, self.rules)
        keys: dict[str, FlowKey] = {}
        signature: dict[str, str] = {}
        tick = Ticker(progress, len(index.tabs))
        for i, tab in enumerate(index.tabs, 1):
            tid = str(tab.get("id"))
            got = collect.add(self.checks.document(index, tab), f"{self.url} tab {tid}")
            if isinstance(got, CanonicalFlow):  # a duplicate name+version too: dropped from the live set below
                keys[tid], signature[tid] = got.key, got.oid
            else:  # no usable name or version: not a flow, but still compared before every write
                signature[tid] = f"problem: {got.message}"
            tick(i)
        live = collect.result()
        keys = {t: k for t, k in keys.items() if k in live.flows}
        self._snapshot = _Snapshot(rev, index, live, keys, signature, {k: t for t, k in keys.items()})
        return live

    # -- apply ---------------------------------------------------------------------------

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> dict[FlowKey, str]:
        """One deploy for the batch, guarded by the rev of the export the plan saw."""
        if self._snapshot is None:
            self.export()
        snap = self._snapshot
        assert snap is not None
        failed: dict[FlowKey, str] = {}
        imports, deletes = self.checks.sort(snap, changes, failed)
        if imports and self.check_types:
            self.checks.drop_unknown_types(imports, self.api.node_types(), failed)
        nodes = self.checks.settle(snap, imports, deletes, failed)
        if progress is not None:
            progress(len(changes) - len(failed), len(changes))
        if nodes is not None and (imports or deletes):
            self._snapshot = None  # whatever happens next, the next apply reads again
            new_rev = self.api.deploy(snap.rev, nodes, self.deployment_type)
            log.info("node-red deployed", url=self.url, imported=len(imports), deleted=len(deletes),
                     rev=new_rev[:12], type=self.deployment_type)
        return failed

    def close(self) -> None:
        self.api.close()
