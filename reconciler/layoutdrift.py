"""``layout = "ignore"`` in a plan: the versions a step compares are read (from git and the environment)
and compared without their layout fields (:func:`reconciler.layout.relax` decides).

Only steps where the environment changed are looked at, and each comparison is remembered by the
pair of canonical ids, so a reconcile where nothing changed reads nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collections.abc import MutableMapping

from reconciler.canonical import InvalidJSON, parse_json
from reconciler.codefields import layout_only, layout_patterns
from reconciler.drivers import Driver, Rendering
from reconciler.errors import ReconcilerError
from reconciler.flows import CanonicalFlow, FlowKey
from reconciler.gitform import read_git_flow
from reconciler.gitstore import GitStore
from reconciler.layout import relax
from reconciler.outcome import Snapshot
from reconciler.plan import Plan, Policy

if TYPE_CHECKING:
    from reconciler.envconfig import EnvironmentConfig

__all__ = ["ignore_layout"]

_REMEMBERED = 4096


def ignore_layout(env: EnvironmentConfig, snap: Snapshot, p: Plan, policy: Policy, *, store: GitStore, driver: Driver,
                  memory: MutableMapping[tuple[str, str], bool]) -> Plan:
    """``p`` with layout-only differences of the live versions not counted."""
    declared = env.declarations()
    changed = False
    steps = []
    for s in p.steps:
        versions: dict[str, bytes | None] = {}

        def data(oid: str, key: FlowKey = s.key) -> bytes | None:
            if oid not in versions:
                versions[oid] = _read(env, snap, store, driver, key, oid)
            return versions[oid]

        def same(x: str, y: str) -> bool:
            if (x, y) not in memory:
                if len(memory) >= _REMEMBERED:
                    memory.clear()
                a, b = data(x), data(y)
                try:
                    docs = (parse_json(a), parse_json(b)) if a is not None and b is not None else None
                except InvalidJSON:
                    docs = None
                memory[(x, y)] = docs is not None and layout_only(*docs, layout_patterns(docs, declared))
            return memory[(x, y)]

        new = relax(s, policy, same)
        changed |= new is not s
        steps.append(new)
    return Plan(tuple(steps)) if changed else p


def _read(env: EnvironmentConfig, snap: Snapshot, store: GitStore, driver: Driver, key: FlowKey, oid: str) -> bytes | None:
    """The canonical bytes of the version of ``key`` whose id is ``oid``: live, at the tip or at the marker."""
    live = snap.live.flows.get(key)
    if live is not None and live.oid == oid:
        if live.data is not None:
            return live.data
        try:
            loaded = driver.load(key)
        except ReconcilerError:
            return None
        return loaded.data if loaded is not None and loaded.oid == oid else None
    for entries, ids in ((snap.tip_blobs, snap.desired_ids), (snap.base_blobs, snap.base_ids)):
        if ids.get(key) == oid and key in entries:
            got = read_git_flow(store, entries[key], env, where=str(key), key=key, templating=snap.templating)
            if isinstance(got, CanonicalFlow) and isinstance(driver, Rendering):
                got = driver.present(got, str(key))
            return got.data if isinstance(got, CanonicalFlow) and got.oid == oid else None
    return None
