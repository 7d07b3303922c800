"""The semantic diff of :mod:`reconciler.semdiff` shaped for a page (pure): rows grouped by the node they
are in (a step, a Node-RED node), a whole node added or removed as one row, a code change side by side
(:func:`reconciler.codediff.side_by_side`), layout-only changes (as the flow's kind declares them) folded.

Nothing is diffed here: the items are the ones ``plan --against`` shows, already masked where they are
built, so a page can only show what the text and markdown renderings show.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from reconciler.codediff import SideRow, changed_lines, side_by_side
from reconciler.semdiff import DiffItem, NodeRef, render_value, summary

__all__ = ["Row", "Group", "DiffView", "diff_view"]

_WIDTH = 160


@dataclass(frozen=True)
class Row:
    """One difference: ``old`` → ``new`` as one line each, ``full`` the whole value when a one-line
    rendering would cut it (an added or removed node)."""

    op: str  # add | remove | change | reorder
    pointer: str
    old: str = ""
    new: str = ""
    full: str = ""
    file: str = ""  # a code change: the sidecar file holding it (or the pointer)
    code: tuple[SideRow, ...] = ()  # a code change: old and new side by side


@dataclass(frozen=True)
class Group:
    """The rows of one node (``title`` ``steps[s1]``), or of the fields outside any node (``fields``)."""

    title: str
    what: str  # added | removed | changed
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class DiffView:
    summary: str
    groups: tuple[Group, ...]
    layout: tuple[Row, ...]  # layout-only changes, shown folded
    layout_fields: str = ""  # their field names ("x, y")

    @property
    def empty(self) -> bool:
        return not self.groups and not self.layout


def _root(ref: NodeRef) -> NodeRef:
    while ref.parent is not None:
        ref = ref.parent
    return ref


def _row(item: DiffItem) -> Row:
    plain = item.as_dict()
    if item.op == "reorder":
        return Row("reorder", item.pointer, ", ".join(item.old), ", ".join(item.new))
    if item.code is not None:
        added, removed = changed_lines(item.old, item.new)
        return Row("code", item.pointer, f"-{removed}", f"+{added}", file=item.code.rpartition(":")[2] or item.pointer,
                   code=tuple(side_by_side(item.old, item.new)))
    old = render_value(item.old, _WIDTH) if "old" in plain else ""
    new = render_value(item.new, _WIDTH) if "new" in plain else ""
    full = ""
    whole = plain.get("new" if item.op == "add" else "old")
    if item.op in ("add", "remove") and isinstance(whole, (dict, list)):
        full = json.dumps(whole, indent=2, sort_keys=True, ensure_ascii=False)
    return Row(item.op, item.pointer, old, new, full)


def diff_view(items: Iterable[DiffItem]) -> DiffView:
    """Group, fold and render ``items`` (in their order: the diff's own)."""
    items = list(items)
    layout = tuple(_row(i) for i in items if i.layout)
    kept = [i for i in items if not i.layout]
    order: list[tuple[str, str] | None] = []
    rows: dict[tuple[str, str] | None, list[Row]] = {}
    what: dict[tuple[str, str] | None, str] = {}
    for item in kept:
        root = _root(item.node) if item.node is not None else None
        key = (root.collection, root.id) if root is not None else None
        if key not in rows:
            order.append(key)
            rows[key], what[key] = [], "changed"
        if root is not None and item.is_node and item.node == root:
            what[key] = "added" if item.op == "add" else "removed"
        rows[key].append(_row(item))
    groups = tuple(Group(f"{k[0]}[{k[1]}]" if k is not None else "fields", what[k], tuple(rows[k])) for k in order)
    fields = ", ".join(dict.fromkeys(r.pointer.rsplit("/", 1)[-1] for r in layout))
    text = summary(kept) if kept else "no changes"
    if layout:
        text += f" (and {len(layout)} layout-only change{'s' * (len(layout) != 1)}: {fields}; folded)"
    return DiffView(text, groups, layout, fields)
