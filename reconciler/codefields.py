"""Which fields of a flow document are code, and which only place a node on a canvas (pure).

A :class:`Declared` is what a document kind (Node-RED's flow documents, event-processing flows:
:func:`reconciler.kinds.declarations`) or an environment (its ``sidecars`` and ``layout_fields``)
says about a document's fields:

- **code fields** (:class:`CodeField`): a JSON pointer (``*`` matching any key or index) of a string
  holding code, the extension its sidecar file gets (fixed, or chosen from the element holding it:
  a Node-RED template by its ``format``), and optionally a test of that element
  (``type == "function"``);
- **layout fields**: pointers of values that only place a node (Node-RED's ``x``, ``y``, ``w``,
  ``h``): a change of those alone is *layout*, told apart in diffs, and not drift where an
  environment says ``layout = "ignore"``.

:func:`code_in` finds the code of a document and names each piece's sidecar file
``<owner>.<field>.<ext>``: the owner is the ``id`` of the innermost object on the field's path
that has one (a node, a step; else the path itself), the field is the pointer's last segment.
Each part is encoded so that the name is one path segment, never hidden, never upper-case (no
two names differ only in case on a case-insensitive checkout), and decodes back
(:func:`parse_sidecar_name`). Only text worth a file is split out: a non-empty string without
NUL; a field whose name would clash with another's, or be too long for a file name, stays in
the JSON. The rule depends on the document alone, so every environment writes the same files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from reconciler.canonical import Rules, canonicalize, parse_pointer
from reconciler.names import unescape

__all__ = ["CodeField", "Declared", "Found", "code_in", "layout_patterns", "is_layout", "layout_only",
           "sidecar_name", "parse_sidecar_name", "InvalidSidecarName", "MAX_NAME"]

#: the longest sidecar file name (bytes); most file systems allow 255
MAX_NAME = 240
_EXT = re.compile(r"[a-z0-9]{1,16}")
_PLAIN_STEM = re.compile(r"[a-z0-9_-][a-z0-9._-]*")
_PLAIN_LABEL = re.compile(r"[a-z0-9_-]+")


class InvalidSidecarName(ValueError):
    """A file name :func:`sidecar_name` cannot have produced."""


@dataclass(frozen=True)
class CodeField:
    """A field holding code: ``pointer`` (``*`` wildcards), the sidecar's extension (or a function of
    the element holding the field that returns one), and ``when``: only where that element passes."""

    pointer: str
    ext: str | Callable[[Mapping[str, Any]], str]
    when: Callable[[Mapping[str, Any]], bool] | None = None
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", parse_pointer(self.pointer))


@dataclass(frozen=True)
class Declared:
    """Code and layout fields of the documents ``applies`` accepts (None: every document)."""

    code: tuple[CodeField, ...] = ()
    layout: tuple[str, ...] = ()
    applies: Callable[[Any], bool] | None = None
    name: str = ""

    def covers(self, doc: Any) -> bool:
        return self.applies is None or bool(self.applies(doc))


class Found(NamedTuple):
    """One piece of code: where it is (segments: keys and indices) and its sidecar's file name."""

    path: tuple[str | int, ...]
    file: str


def _paths(node: Any, segs: tuple[str, ...], at: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    if not segs:
        yield at, node
        return
    head, rest = segs[0], segs[1:]
    if isinstance(node, dict):
        keys = list(node) if head == "*" else ([head] if head in node else [])
        for k in keys:
            yield from _paths(node[k], rest, (*at, k))
    elif isinstance(node, list):
        if head == "*":
            for i, v in enumerate(node):
                yield from _paths(v, rest, (*at, i))
        elif head.isascii() and head.isdigit() and int(head) < len(node):
            yield from _paths(node[int(head)], rest, (*at, int(head)))


def _owner(doc: Any, path: tuple[str | int, ...]) -> tuple[Mapping[str, Any], str | None, int]:
    """The element holding a field: the innermost object on ``path`` with a scalar ``id`` (its id and
    depth), else the field's parent object (None, its depth)."""
    chain = [doc]
    for seg in path[:-1]:
        chain.append(chain[-1][seg])
    for depth in range(len(chain) - 1, -1, -1):
        node = chain[depth]
        ident = node.get("id") if isinstance(node, dict) else None
        if isinstance(ident, (str, int)) and not isinstance(ident, bool) and str(ident) != "":
            return node, str(ident), depth
    parent = chain[-1]
    return (parent if isinstance(parent, dict) else {}), None, len(chain) - 1


def _worth_a_file(value: Any) -> bool:
    if not isinstance(value, str) or value == "" or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not text a file can hold
        return False
    return True


def _ext(field: CodeField, owner: Mapping[str, Any]) -> str:
    ext = field.ext(owner) if callable(field.ext) else field.ext
    return ext if isinstance(ext, str) and _EXT.fullmatch(ext) else "txt"


def code_in(doc: Any, declared: Sequence[Declared]) -> list[Found]:
    """Every code field of ``doc`` holding text worth a file, with its sidecar's name (in the order of
    the declarations, each path once)."""
    found: dict[tuple[str | int, ...], str] = {}
    parents: dict[tuple[str, ...], list[tuple[tuple[str | int, ...], Any]]] = {}  # the objects a pattern's parent names
    for decl in declared:
        if not decl.code or not decl.covers(doc):
            continue
        for cf in decl.code:
            segs = cf.segments
            if not segs:
                continue
            head, last = segs[:-1], segs[-1]
            if head not in parents:
                parents[head] = [(p, v) for p, v in _paths(doc, head) if isinstance(v, (dict, list))]
            for at, container in parents[head]:
                items: Any
                if isinstance(container, dict):
                    if last == "*":
                        items = container.items()
                    elif isinstance(container.get(last), str):  # the common case: one named field, or none
                        items = ((last, container[last]),)
                    else:
                        continue
                elif last == "*":
                    items = enumerate(container)
                elif last.isascii() and last.isdigit() and int(last) < len(container):
                    items = ((int(last), container[int(last)]),)
                else:
                    continue
                for k, value in items:
                    if not isinstance(value, str) or not _worth_a_file(value):
                        continue
                    path = (*at, k)
                    if path in found:
                        continue
                    owner, ident, _ = _owner(doc, path)
                    if cf.when is not None and not cf.when(owner):
                        continue
                    stem = ident if ident is not None else ".".join(str(s) for s in path[:-1]) or "flow"
                    try:
                        found[path] = sidecar_name(stem, str(k), _ext(cf, owner))
                    except InvalidSidecarName:
                        continue  # too long for a file name: the text stays in the JSON
    by_name: dict[str, list[tuple[str | int, ...]]] = {}
    for path, name in found.items():
        by_name.setdefault(name.lower(), []).append(path)
    clashing = {p for paths in by_name.values() if len(paths) > 1 for p in paths}
    return [Found(path, name) for path, name in found.items() if path not in clashing]


# -- names -----------------------------------------------------------------------------


def _escape(text: str, literal: str) -> str:
    out = ["~"]
    for ch in text:
        if ch in literal:
            out.append(ch)
        elif "A" <= ch <= "Z":
            out.append("^" + ch.lower())
        else:
            out.extend(f"%{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


_STEM_LITERAL = "abcdefghijklmnopqrstuvwxyz0123456789._-"
_LABEL_LITERAL = "abcdefghijklmnopqrstuvwxyz0123456789_-"


def sidecar_name(stem: str, label: str, ext: str) -> str:
    """``<stem>.<label>.<ext>``, each part encoded (``~`` + ``^x`` for capitals, ``%hh`` for other bytes
    when it is not plain lower-case text): never an upper-case letter, so no two names differ only in
    case; the label never holds a ``.``, so the name splits back."""
    if not stem or not label or not _EXT.fullmatch(ext):
        raise InvalidSidecarName(f"a sidecar needs an owner, a field and an extension ({stem!r}, {label!r}, {ext!r})")
    s = stem if _PLAIN_STEM.fullmatch(stem) else _escape(stem, _STEM_LITERAL)
    lab = label if _PLAIN_LABEL.fullmatch(label) else _escape(label, _LABEL_LITERAL)
    name = f"{s}.{lab}.{ext}"
    if len(name.encode()) > MAX_NAME:
        raise InvalidSidecarName(f"{name[:40]}… is too long for a file name ({len(name.encode())} bytes)")
    return name


_LOWER_HEX = re.compile(r"[0-9a-f]{2}")  # names are never upper-case, their escapes neither


def _unescape(part: str, literal: str) -> str:
    if not part.startswith("~"):
        return part
    try:
        return unescape(part[1:], literal, _LOWER_HEX)
    except UnicodeDecodeError as exc:
        raise InvalidSidecarName(f"{part!r} does not decode to UTF-8 text") from exc
    except ValueError as exc:
        raise InvalidSidecarName(f"{part!r} is not an encoded part of a sidecar name") from exc


def parse_sidecar_name(name: str) -> tuple[str, str, str]:
    """(owner, field, extension) of a name :func:`sidecar_name` made; the inverse, checked both ways."""
    parts = name.rsplit(".", 2)
    if len(parts) != 3:
        raise InvalidSidecarName(f"{name!r} is not <owner>.<field>.<ext>")
    stem, label = _unescape(parts[0], _STEM_LITERAL), _unescape(parts[1], _LABEL_LITERAL)
    if sidecar_name(stem, label, parts[2]) != name:
        raise InvalidSidecarName(f"{name!r} is not the canonical name of {stem!r}'s {label!r}")
    return stem, label, parts[2]


# -- layout -----------------------------------------------------------------------------


def layout_patterns(docs: Sequence[Any], declared: Sequence[Declared]) -> tuple[str, ...]:
    """The layout pointers that apply to any of ``docs`` (None entries are skipped)."""
    out: list[str] = []
    for decl in declared:
        if decl.layout and any(d is not None and decl.covers(d) for d in docs):
            out += [p for p in decl.layout if p not in out]
    return tuple(out)


def is_layout(path: Sequence[Any], patterns: Sequence[str]) -> bool:
    """True when ``path`` (segments) is one of the layout pointers."""
    for pattern in patterns:
        segs = parse_pointer(pattern)
        if len(segs) == len(path) and all(s == "*" or s == str(p) for s, p in zip(segs, path)):
            return True
    return False


def layout_only(a: Any, b: Any, patterns: Sequence[str]) -> bool:
    """True when two documents are the same but for their layout fields (both are modified)."""
    if not patterns or a is None or b is None:
        return False
    rules = Rules.of(patterns)
    return canonicalize(a, rules) == canonicalize(b, rules)
