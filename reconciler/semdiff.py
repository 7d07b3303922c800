"""A semantic diff of two flow documents (pure): what changed, by JSON pointer.

A line diff of two JSON exports tells a reviewer that line 212 changed; this
tells them that step ``s1``'s ``config.url`` went from ``"/orders"`` to
``"/orders/v2"`` and that step ``s3`` was added:

- objects are compared key by key;
- arrays whose elements are all objects with a unique scalar ``id`` (steps,
  Node-RED nodes) are matched by ``id``, so inserting a step does not show
  every later step as changed; a changed order of the same ids is one
  ``reorder`` item;
- other arrays are compared index by index.

Items are frozen :class:`DiffItem` values ``(op, pointer, old, new, node)``. Two kinds of change are
told apart as they are built: ``layout`` (a field that only places a node, by the layout pointers
the caller passes: :func:`reconciler.codefields.layout_patterns`), shown folded; and ``code`` (a
change of text held in a sidecar file, or of any text over several lines), shown as a unified diff
(:mod:`reconciler.codediff`).
Values are masked when they are built, so nothing secret can leak from any
rendering: a value in a secret field (as :class:`reconciler.secretrule.SecretRule`
defines them) becomes :data:`MASKED`, and every ``${secret:NAME}`` inside a string becomes
``***``. Renderings truncate long values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from reconciler.canonical import format_pointer, parse_pointer
from reconciler.codediff import changed_lines, unified
from reconciler.secretrule import SECRET_PLACEHOLDER, SecretRule

__all__ = ["DiffItem", "NodeRef", "MASKED", "diff", "masked", "summary", "render_value", "render_item", "render_text"]

Op = Literal["add", "remove", "change", "reorder"]



class _Masked:
    """Stands for a value that must not be shown; rendered as ``***``."""

    _instance: "_Masked | None" = None

    def __new__(cls) -> "_Masked":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "***"


MASKED = _Masked()


class NodeRef(NamedTuple):
    """The id-matched array element an item is in (or is): ``steps`` / ``s1`` at ``/steps/0``."""

    collection: str  # the array's key ("steps", "nodes"), or its pointer when it has no key
    id: str
    pointer: str  # the element's pointer (new side; old side for a removed element)
    parent: "NodeRef | None" = None  # the element this one is nested in

    def __str__(self) -> str:
        return f"{self.collection}[{self.id}]"


@dataclass(frozen=True)
class DiffItem:
    """One difference. ``old``/``new`` are masked values (None where not applicable)."""

    op: Op
    pointer: str
    old: Any = None
    new: Any = None
    node: NodeRef | None = None
    layout: bool = False  # a field that only places a node (x, y, w, h)
    code: str | None = None  # a change of code: the sidecar file holding it ("" for other text over lines)

    @property
    def is_node(self) -> bool:
        """True when the item is a whole id-matched element added or removed."""
        return self.node is not None and self.pointer == self.node.pointer and self.op in ("add", "remove")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "pointer": self.pointer}
        if self.op in ("remove", "change", "reorder"):
            out["old"] = _plain(self.old)
        if self.op in ("add", "change", "reorder"):
            out["new"] = _plain(self.new)
        if self.node is not None:
            out["node"] = {"in": self.node.collection, "id": self.node.id}
        if self.layout:
            out["layout"] = True
        if self.code is not None:
            out["code"] = self.code
        return out


# -- the diff -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    secret: SecretRule
    layout: tuple[tuple[str, ...], ...]
    code: Mapping[str, str]

    def is_layout(self, path: list[Any]) -> bool:
        return any(len(p) == len(path) and all(s == "*" or s == str(x) for s, x in zip(p, path)) for p in self.layout)


def diff(old: Any, new: Any, *, secret: SecretRule = SecretRule(), layout: Sequence[str] = (),
         code: Mapping[str, str] | None = None) -> tuple[DiffItem, ...]:
    """The differences from ``old`` to ``new``.

    ``None`` on either side means the whole flow is absent. A new flow is
    shown field by field and node by node (as if its id-matched arrays had
    been empty); a removed one is one ``remove`` item at the root pointer ``""``.
    ``layout``: pointers (``*`` wildcards) of layout fields; ``code``: pointer -> the sidecar file of
    fields held as code.
    """
    ctx = _Ctx(secret, tuple(parse_pointer(p) for p in layout), code or {})
    if old is None and new is None:
        return ()
    if old is None:
        if isinstance(new, dict):
            skeleton = {k: [] for k, v in new.items() if isinstance(v, list) and v and _by_id(v)}
            return diff(skeleton, new, secret=secret, layout=layout, code=code)
        return (DiffItem("add", "", new=_mask(new, [], secret)),)
    if new is None:
        return (DiffItem("remove", "", old=_mask(old, [], secret)),)
    out: list[DiffItem] = []
    _walk(old, new, [], None, ctx, out)
    return tuple(out)


def _item(op: Op, path: list[Any], ctx: _Ctx, node: NodeRef | None, old: Any = None, new: Any = None) -> DiffItem:
    """An item at ``path`` (values masked), marked as layout or code where it is one."""
    where = format_pointer(path)
    o = _mask(old, path, ctx.secret) if op != "add" else None
    n = _mask(new, path, ctx.secret) if op != "remove" else None
    code = None
    if op == "change" and isinstance(o, str) and isinstance(n, str) and (where in ctx.code or "\n" in o or "\n" in n):
        code = ctx.code.get(where, "")
    return DiffItem(op, where, o, n, node, layout=ctx.is_layout(path), code=code)


def _walk(old: Any, new: Any, path: list[Any], node: NodeRef | None, ctx: _Ctx, out: list[DiffItem]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            path.append(key)
            if key not in new:
                out.append(_item("remove", path, ctx, node, old=old[key]))
            elif key not in old:
                out.append(_item("add", path, ctx, node, new=new[key]))
            else:
                _walk(old[key], new[key], path, node, ctx, out)
            path.pop()
        return
    if isinstance(old, list) and isinstance(new, list):
        if (old or new) and _by_id(old) and _by_id(new):
            _walk_by_id(old, new, path, node, ctx, out)
        else:
            _walk_by_index(old, new, path, node, ctx, out)
        return
    if not _same(old, new):
        out.append(_item("change", path, ctx, node, old, new))


def _walk_by_index(old: list, new: list, path: list[Any], node, ctx: _Ctx, out: list[DiffItem]) -> None:
    for i in range(max(len(old), len(new))):
        path.append(i)
        if i >= len(new):
            out.append(_item("remove", path, ctx, node, old=old[i]))
        elif i >= len(old):
            out.append(_item("add", path, ctx, node, new=new[i]))
        else:
            _walk(old[i], new[i], path, node, ctx, out)
        path.pop()


def _walk_by_id(old: list, new: list, path: list[Any], node, ctx: _Ctx, out: list[DiffItem]) -> None:
    secret = ctx.secret
    collection = str(path[-1]) if path else ""
    if not collection or isinstance(path[-1], int):
        collection = format_pointer(path) or "/"
    old_at = {_id(e): i for i, e in enumerate(old)}
    new_at = {_id(e): i for i, e in enumerate(new)}
    for ident, i in old_at.items():
        if ident not in new_at:
            path.append(i)
            where = format_pointer(path)
            out.append(DiffItem("remove", where, old=_mask(old[i], path, secret), node=NodeRef(collection, ident, where, node)))
            path.pop()
    for ident, j in new_at.items():
        path.append(j)
        where = format_pointer(path)
        ref = NodeRef(collection, ident, where, node)
        if ident not in old_at:
            out.append(DiffItem("add", where, new=_mask(new[j], path, secret), node=ref))
        else:
            _walk(old[old_at[ident]], new[j], path, ref, ctx, out)
        path.pop()
    order_old = [i for i in old_at if i in new_at]
    order_new = [i for i in new_at if i in old_at]
    if order_old != order_new:
        out.append(DiffItem("reorder", format_pointer(path), order_old, order_new, node))


def _id(element: dict) -> str:
    return str(element["id"])


def _by_id(items: list) -> bool:
    """Every element an object with a unique string or integer ``id``."""
    seen: set[str] = set()
    for e in items:
        if not isinstance(e, dict):
            return False
        ident = e.get("id")
        if isinstance(ident, bool) or not isinstance(ident, (str, int)) or str(ident) in seen:
            return False
        seen.add(str(ident))
    return True


def _same(a: Any, b: Any) -> bool:
    # 1 == 1.0 == True in Python, but they are different JSON documents.
    return type(a) is type(b) and a == b


def _mask(value: Any, path: list[Any], secret: SecretRule) -> Any:
    """A copy of ``value`` (found at ``path``) with everything secret masked."""
    if path and secret.is_field(path):
        return MASKED
    if isinstance(value, str):
        return SECRET_PLACEHOLDER.sub("***", value) if "${secret:" in value else value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            path.append(k)
            out[k] = _mask(v, path, secret)
            path.pop()
        return out
    if isinstance(value, list):
        out_list = []
        for i, v in enumerate(value):
            path.append(i)
            out_list.append(_mask(v, path, secret))
            path.pop()
        return out_list
    return value


def masked(doc: Any, *, secret: SecretRule = SecretRule()) -> Any:
    """A whole document as plain JSON data with what :func:`diff` masks masked (the status page's view)."""
    return _plain(_mask(doc, [], secret))


def _plain(value: Any, mark: str = "***") -> Any:
    """A masked value as plain JSON data (MASKED becomes ``mark``)."""
    if value is MASKED:
        return mark
    if isinstance(value, dict):
        return {k: _plain(v, mark) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, mark) for v in value]
    return value


# -- renderings -----------------------------------------------------------------------


def render_value(value: Any, width: int = 72) -> str:
    """One line of compact JSON (``***`` for a masked value), cut to ``width`` characters."""
    text = json.dumps(_plain(value, _MARK), ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
    text = text.replace(_MARK_JSON, "***")
    return text if len(text) <= width else text[: width - 1] + "…"


# Stands for MASKED while a value is serialised; no flow text can hold it (JSON escapes NUL).
_MARK = "\x00masked\x00"
_MARK_JSON = json.dumps(_MARK)


def render_item(item: DiffItem, width: int = 72) -> str:
    """``~ /steps/0/config/url (steps[s1]): "/orders" -> "/orders/v2"``."""
    where = item.pointer or "(the whole flow)"
    if item.node is not None:
        where += f" ({item.node})"
    if item.op == "add":
        return f"+ {where}: {render_value(item.new, width)}"
    if item.op == "remove":
        return f"- {where}: {render_value(item.old, width)}"
    if item.op == "reorder":
        return f"~ {where}: order {', '.join(item.old)} -> {', '.join(item.new)}"
    if item.code is not None:
        added, removed = changed_lines(item.old, item.new)
        held = f" in {item.code}" if item.code else ""
        return f"~ {where}: code changed{held} (+{added} -{removed} lines)"
    return f"~ {where}: {render_value(item.old, width)} -> {render_value(item.new, width)}"


def summary(items: Iterable[DiffItem]) -> str:
    """``steps: 1 added (s3), 1 changed (s1); fields: 1 added, 1 changed``; ``no changes`` when empty.
    Layout changes are counted apart: ``…; and 2 layout-only changes`` (``layout only: 2 changes``)."""
    items = list(items)
    layout = sum(1 for i in items if i.layout)
    if layout:
        rest = [i for i in items if not i.layout]
        plural = "s" * (layout != 1)
        return f"{summary(rest)}; and {layout} layout-only change{plural}" if rest else f"layout only: {layout} change{plural}"
    if not items:
        return "no changes"
    if len(items) == 1 and items[0].pointer == "":
        return "the whole flow added" if items[0].op == "add" else "the whole flow removed"
    groups: dict[str, dict[str, list[str]]] = {}
    fields = {"added": 0, "removed": 0, "changed": 0}
    for it in items:
        word = {"add": "added", "remove": "removed"}.get(it.op, "changed")
        if it.op == "reorder":
            segs = parse_pointer(it.pointer)
            collection = segs[-1] if segs and not segs[-1].isdigit() else (it.pointer or "/")
            groups.setdefault(collection, {"added": [], "removed": [], "changed": []})["reordered"] = [""]
            continue
        if it.node is None:
            fields[word] += 1
            continue
        ref: NodeRef | None = it.node
        if not it.is_node:
            word = "changed"
        while ref is not None:  # the element, then the ones it is nested in (changed)
            g = groups.setdefault(ref.collection, {"added": [], "removed": [], "changed": []})
            if ref.id not in g[word] and not (word == "changed" and (ref.id in g["added"] or ref.id in g["removed"])):
                g[word].append(ref.id)
            ref, word = ref.parent, "changed"
    parts = []
    for collection, g in groups.items():
        bits = [f"{len(ids)} {word} ({', '.join(ids[:5])}{', …' if len(ids) > 5 else ''})" for word, ids in g.items()
                if ids and word != "reordered"]
        bits += ["reordered"] if "reordered" in g else []
        parts.append(f"{collection}: {', '.join(bits)}")
    if any(fields.values()):
        parts.append("fields: " + ", ".join(f"{n} {word}" for word, n in fields.items() if n))
    return "; ".join(parts)


def render_text(items: Sequence[DiffItem], width: int = 72) -> list[str]:
    """The summary line, then one line per item (a code change followed by its unified diff, indented;
    layout changes last)."""
    lines = [summary(items)]
    for i in sorted(items, key=lambda i: i.layout):
        lines.append(("(layout) " if i.layout else "") + render_item(i, width))
        if i.code is not None:
            lines += [f"    {line}" for line in unified(i.old, i.new, i.code or i.pointer)[2:]]
    return lines
