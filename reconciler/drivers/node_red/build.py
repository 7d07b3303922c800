"""The configuration a batch of changes leaves (pure): what ``POST /flows`` will carry.

The live configuration's order is kept: a replaced tab, config node or subflow
stays where it was, new ones are appended (definitions first, then tabs).
Definitions that only removed tabs used go with them. When the batch carries
the instance document, the definitions of the old one that the new one no
longer carries go, and the tabs take its order; without it, tabs ordered by
name stay so (a new tab takes its place by name), and tabs in an order of
their own keep it (a new tab is appended: the checks then ask for the
instance document's ``/tabs`` to list it).
"""

from __future__ import annotations

from .instance import INSTANCE_KEY, in_default_order, ordered_tabs, orphans, place_tabs, unused
from .mapping import _by_id, _Incoming, _Index, _str

__all__ = ["build"]


def build(index: _Index, tab_of: dict, imports: dict[object, _Incoming], deletes: set, order_key) -> list[dict]:
    """The configuration after the batch (``index``: the live one; ``tab_of``: the tab id of each live flow;
    ``order_key``: the default order of tabs)."""
    inst = imports.get(INSTANCE_KEY)
    configs: dict[str, dict] = {}
    subflows: dict[str, list[dict]] = {}
    for inc in imports.values():
        configs.update(inc.configs)
        subflows.update({d: inc.definition(d) for d in inc.subflows})
    tabs_in = {k: inc for k, inc in imports.items() if inc.tab is not None}
    replaced = {tab_of[k]: inc for k, inc in tabs_in.items() if k in tab_of}
    removed = set(replaced) | {tab_of[k] for k in deletes if k in tab_of}
    rewritten = set(subflows) & set(index.subflows)  # their old nodes go, the new ones come with the definition
    dropped: set[str] = set()  # definitions of the old instance document the new one does not carry
    strays: set[int] = set()  # the old instance document's nodes of no tab or subflow
    if inst is not None or INSTANCE_KEY in deletes:
        dropped = {d for d in unused(index) if d not in configs and d not in subflows}
        strays = {id(n) for n in orphans(index)}
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
            if nid in dropped:
                continue
            if nid in subflows and index.subflows.get(nid) is n:
                out += subflows.pop(nid)
                continue
        elif z:
            if z in removed or z in rewritten or z in dropped or id(n) in strays:
                continue
        elif nid in dropped:
            continue
        elif nid in configs and index.configs.get(nid) is n:
            out.append(configs.pop(nid))
            continue
        out.append(n)
    for ns in subflows.values():
        out += ns
    out += configs.values()
    if inst is not None:
        out += _by_id(inst.nodes)
    new_tabs = [inc for k, inc in tabs_in.items() if k not in tab_of]
    if inst is not None or INSTANCE_KEY in deletes or in_default_order(index.tabs, order_key):
        order = inst.order if inst is not None else None
        final = ordered_tabs([*(n for n in out if n.get("type") == "tab"), *(i.tab for i in new_tabs)], order,
                             order_key)
    else:
        final = None  # an order of the instance's own: kept, new tabs at the end
        new_tabs.sort(key=lambda i: order_key(i.tab))
    at = {id(i.tab): i for i in new_tabs}
    for tab in (final if final is not None else [i.tab for i in new_tabs]):
        if id(tab) in at:
            out += [tab, *_by_id(at[id(tab)].nodes)]
    if removed:
        kept = set(inst.definitions()) if inst is not None else set()
        out = _collect_garbage(out, {d for t in removed for d in index.uses(t)} - kept)
    return place_tabs(out, final) if final is not None else out


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
