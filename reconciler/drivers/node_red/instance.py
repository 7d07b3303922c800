"""The instance document (pure): what belongs to no tab, and the order of the tabs.

Each environment branch may hold one document that is no tab,
``flows/_instance/1.json`` (name ``_instance``, version ``1``; a tab labelled
``_instance`` is refused: the name is reserved)::

    {"name": "_instance", "version": "1",
     "tabs":     [tab ids, in the editor's order]      (only when it is not by name),
     "configs":  [global config nodes no tab uses: global-config, dashboard base, pages and groups
                  with nothing on them yet, brokers not used yet...],
     "subflows": [subflow definitions no tab uses, with their nodes],
     "nodes":    [nodes whose z is neither a tab nor a subflow]}

It is promoted and merged like any flow, and takes ``${param:}`` and
``${secret:}`` placeholders like any flow. Without it (no such definitions,
tabs ordered by name and version) the branch holds tabs only.

**Tab order.** Node-RED's tab order is the order of the tab nodes in its
configuration (the editor's, and the order flows start in). The default order
is by (label, version, tab id); an instance ordered otherwise has ``/tabs``,
listing every tab id. Import orders the tabs by it (tabs it does not list come
after, by name); a tab added to or removed from git while ``/tabs`` is there
must be added to or removed from that list in the same commit (an export
writes both), otherwise the import is refused saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reconciler.flows import FlowKey

__all__ = ["INSTANCE_KEY", "INSTANCE_PATH", "unused", "orphans", "instance_parts", "ordered_tabs"]

INSTANCE_KEY = FlowKey("_instance", "1")
INSTANCE_PATH = "flows/_instance/1.json"

OrderKey = Callable[[dict], tuple]


def unused(index: Any) -> list[str]:
    """Ids of the config nodes and subflows no tab uses (in configuration order)."""
    used: set[str] = set()
    for tab in index.tabs:
        tid = tab.get("id")
        if isinstance(tid, str):
            used |= index.uses(tid)
    return [d for d in (*index.subflows, *index.configs) if d not in used]


def orphans(index: Any) -> list[dict]:
    """Nodes whose z names neither a tab nor a subflow (nothing else would carry them)."""
    tabs = {t.get("id") for t in index.tabs}
    return [n for z, ns in index.members.items() if z not in tabs and z not in index.subflows for n in ns]


def in_default_order(tabs: Sequence[dict], order_key: OrderKey) -> bool:
    keys = [order_key(t) for t in tabs]
    return keys == sorted(keys)


def instance_parts(index: Any, order_key: OrderKey) -> dict[str, list] | None:
    """The parts of the instance document (``tabs``, ``configs``, ``subflows``, ``nodes``; empty ones left
    out), or None when the instance has nothing of the kind."""
    parts: dict[str, list] = {}
    if not in_default_order(index.tabs, order_key):
        parts["tabs"] = [t.get("id") for t in index.tabs]
    spare = unused(index)
    configs = [index.configs[d] for d in spare if d in index.configs]
    subflows = [n for d in spare if d in index.subflows for n in index.definition(d)]
    for name, items in (("configs", configs), ("subflows", subflows), ("nodes", orphans(index))):
        if items:
            parts[name] = items
    return parts or None


def ordered_tabs(tabs: Sequence[dict], order: Sequence[str] | None, order_key: OrderKey) -> list[dict]:
    """Tabs in ``order`` (tab ids; None: the default order); tabs it does not list after, by name."""
    if order is None:
        return sorted(tabs, key=order_key)
    at = {tid: i for i, tid in enumerate(order)}
    return sorted(tabs, key=lambda t: (0, at[t.get("id")], ()) if t.get("id") in at else (1, 0, order_key(t)))


def place_tabs(nodes: list[dict], tabs: Sequence[dict]) -> list[dict]:
    """``nodes`` with its tab nodes, where they stand, replaced by ``tabs`` in turn (the same tabs, reordered)."""
    it = iter(tabs)
    return [next(it) if n.get("type") == "tab" else n for n in nodes]
