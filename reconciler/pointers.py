"""JSON pointers (RFC 6901) into parsed documents (pure): get, set, remove, match.

Parsing and formatting live with the canonical form (:func:`reconciler.canonical.parse_pointer`,
:func:`~reconciler.canonical.format_pointer`: ``~0`` and ``~1`` escaped); this module is
the one place that walks a document along a pointer, so every driver, mapping and
command reads and writes fields the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.canonical import format_pointer, parse_pointer

__all__ = ["MISSING", "get", "put", "remove", "matches", "parse_pointer", "format_pointer"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: what :func:`get` answers when nothing is at the pointer (``None`` is a JSON value)
MISSING: Any = _Missing()


def get(doc: Any, pointer: str) -> Any:
    """The value at ``pointer`` ("" is the whole document), or :data:`MISSING`."""
    node = doc
    for seg in parse_pointer(pointer):
        if isinstance(node, dict) and seg in node:
            node = node[seg]
        elif isinstance(node, list) and seg.isascii() and seg.isdigit() and int(seg) < len(node):
            node = node[int(seg)]
        else:
            return MISSING
    return node


def put(doc: Any, pointer: str, value: Any) -> Any:
    """Set ``value`` at ``pointer`` in ``doc``, creating objects on the way; returns the document
    (``value`` itself for the root pointer ""). An existing non-object on the way is replaced."""
    segs = parse_pointer(pointer)
    if not segs:
        return value
    node = doc
    for seg in segs[:-1]:
        nxt = node.get(seg) if isinstance(node, dict) else None
        if not isinstance(nxt, dict):
            nxt = node[seg] = {}
        node = nxt
    node[segs[-1]] = value
    return doc


def remove(doc: Any, pointer: str) -> None:
    """Remove the member at ``pointer`` if it is there (objects only; nothing else changes)."""
    *parents, last = parse_pointer(pointer) or ("",)
    node = doc
    for seg in parents:
        node = node.get(seg) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


def matches(pattern: str | Sequence[str], path: Sequence[Any]) -> bool:
    """True when ``path`` (segments) is what ``pattern`` names, ``*`` matching any one key or index."""
    segs = parse_pointer(pattern) if isinstance(pattern, str) else pattern
    return len(segs) == len(path) and all(s == "*" or s == str(p) for s, p in zip(segs, path))
