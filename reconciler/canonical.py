"""Canonical JSON: one byte sequence per logical flow (pure, no I/O).

The form is UTF-8, keys sorted, 2-space indent, ``\\n`` line ends and a trailing
newline, with volatile fields removed (JSON pointers, ``*`` matching any key or
index) and order-insensitive arrays sorted. ``canonical(canonical(x)) ==
canonical(x)`` and equal flows give equal bytes, hence equal git blob ids: the
reconciler compares flows by comparing :func:`blob_id` values.

orjson does the work (about 10x faster than ``json.dumps(indent=2)``). Two of its
habits are guarded because they would change data:

- it parses integers beyond 64 bits as floats, silently losing digits, so text
  with a run of 19+ digits is parsed by the standard library instead;
- it refuses to serialise such integers, so a document holding one is written
  by a small fallback with the same layout, orjson still spelling every other
  value (the standard library would spell floats differently: ``1e-05``).

Which serialiser runs depends only on the logical document, so the output stays
a function of the document.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "InvalidJSON",
    "Rules",
    "parse_pointer",
    "format_pointer",
    "parse_json",
    "canonicalize",
    "canonical_bytes",
    "already_canonical",
    "blob_id",
]

_DUMP_OPTS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
# A run of 19+ digits is the only way to write an integer orjson would turn into
# a float. translate() + find() spot one ~10x faster than a regex.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19
# Deeper documents are refused: no real flow nests this deep, and it bounds the
# recursion of every walk over a document (orjson's own limit is 1024).
MAX_DEPTH = 512


class InvalidJSON(ValueError):
    """The bytes are not a JSON document we can canonicalise."""

    def __init__(self, message: str, pointer: str = ""):
        super().__init__(message)
        self.pointer = pointer


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """Split an RFC 6901 JSON pointer into unescaped segments ("" is the root)."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must be empty or start with '/'")
    return tuple(s.replace("~1", "/").replace("~0", "~") for s in pointer[1:].split("/"))


def format_pointer(segments: Iterable[Any]) -> str:
    """Join segments into an RFC 6901 pointer."""
    return "".join("/" + str(s).replace("~", "~0").replace("/", "~1") for s in segments)


@dataclass(frozen=True)
class Rules:
    """How one environment normalises its flows.

    ``ignore``: pointers of volatile fields to drop; a ``*`` segment matches any
    key or index. ``sort``: pointer of an array (``*`` allowed) -> pointer, inside
    each element, of the key to sort that array by ("" sorts by the element).
    """

    ignore: tuple[str, ...] = ()
    sort: tuple[tuple[str, str], ...] = ()
    _ignore_segs: tuple[tuple[str, ...], ...] = field(init=False, repr=False, compare=False)
    _sort_segs: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ignore_segs", tuple(parse_pointer(p) for p in self.ignore))
        object.__setattr__(
            self, "_sort_segs", tuple((parse_pointer(a), parse_pointer(k)) for a, k in self.sort)
        )

    @classmethod
    def of(cls, ignore: Iterable[str] = (), sort: Mapping[str, str] | None = None) -> "Rules":
        return cls(ignore=tuple(ignore), sort=tuple(sorted((sort or {}).items())))


def parse_json(data: bytes) -> Any:
    """Parse bytes as JSON, refusing what cannot round-trip exactly.

    Raises :class:`InvalidJSON` with line/column for syntax errors, non-UTF-8
    bytes, NaN/Infinity and over-deep nesting.
    """
    if data.translate(_DIGITS_TO_ZERO).find(_LONG_RUN) != -1:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJSON(f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
        try:
            doc = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        except InvalidJSON:
            raise
        except json.JSONDecodeError as exc:
            raise InvalidJSON(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
        except RecursionError as exc:
            raise InvalidJSON(f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from exc
        except ValueError as exc:  # an integer beyond Python's int/str digit limit
            raise InvalidJSON(f"invalid JSON: {exc}") from exc
        # orjson refuses lone surrogate escapes ("\ud800"); the standard library
        # does not, so the walk below checks the strings too.
        _check_depth(doc, strings=True)
    else:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            msg = str(exc)
            if "recursion" in msg.lower() or "depth" in msg.lower():
                msg = f"nested deeper than {MAX_DEPTH} levels"
            raise InvalidJSON(f"invalid JSON: {msg}") from exc
        # Nesting needs an opening bracket per level: with few brackets in the
        # text there is no need to walk the document (the common case).
        if data.count(b"[") + data.count(b"{") > MAX_DEPTH:
            _check_depth(doc)
    return doc


def _refuse_constant(name: str) -> Any:
    raise InvalidJSON(f"invalid JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    # The standard library turns 1e400 into inf, which orjson would write as null.
    value = float(text)
    if math.isinf(value):
        raise InvalidJSON(f"invalid JSON: number {text} is out of range for a double")
    return value


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidJSON(f"invalid JSON: lone surrogate escape in string {text!r}") from exc


def _check_depth(doc: Any, strings: bool = False) -> None:
    """Refuse over-deep nesting and, if ``strings``, text that is not valid Unicode."""
    if strings and isinstance(doc, str):
        _check_text(doc)
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidJSON(f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            if strings:
                for k in node:
                    _check_text(k)
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        for v in children:
            if isinstance(v, (dict, list)):
                stack.append((v, depth + 1))
            elif strings and isinstance(v, str):
                _check_text(v)


def _is_index(seg: str) -> bool:
    # str.isdigit() alone also accepts "²" and "١", which int() then rejects or misreads.
    return seg.isascii() and seg.isdigit()


def _remove(node: Any, segs: tuple[str, ...]) -> None:
    if not segs:
        return
    head, rest = segs[0], segs[1:]
    if isinstance(node, dict):
        keys = list(node) if head == "*" else ([head] if head in node else [])
        for k in keys:
            if rest:
                _remove(node[k], rest)
            else:
                del node[k]
    elif isinstance(node, list):
        if head == "*":
            if rest:
                for item in node:
                    _remove(item, rest)
            else:
                node.clear()
        elif _is_index(head) and int(head) < len(node):
            if rest:
                _remove(node[int(head)], rest)
            else:
                del node[int(head)]


def _resolve(node: Any, segs: tuple[str, ...]) -> list[Any]:
    """Every value matched by a pointer with wildcards."""
    nodes = [node]
    for seg in segs:
        nxt: list[Any] = []
        for n in nodes:
            if isinstance(n, dict):
                nxt.extend(n.values() if seg == "*" else ([n[seg]] if seg in n else []))
            elif isinstance(n, list):
                if seg == "*":
                    nxt.extend(n)
                elif _is_index(seg) and int(seg) < len(n):
                    nxt.append(n[int(seg)])
        nodes = nxt
    return nodes


def _primary_key(item: Any, key_segs: tuple[str, ...]) -> tuple[int, str]:
    found = _resolve(item, key_segs) if key_segs else []
    if found and not isinstance(found[0], (dict, list)):
        value = found[0]
        return (0, value if isinstance(value, str) else json.dumps(value))
    return (1, _dumps(item).decode("utf-8"))


def _sort_array(arr: list[Any], key_segs: tuple[str, ...]) -> None:
    keys = [_primary_key(item, key_segs) for item in arr]
    if len(set(keys)) == len(keys):
        order = sorted(range(len(arr)), key=keys.__getitem__)
    else:
        # Ties (equal keys, or 10 and "10") are broken by the whole element, so
        # equal arrays end in one order whatever order they came in.
        whole = [_dumps(item) for item in arr]
        order = sorted(range(len(arr)), key=lambda i: (keys[i], whole[i]))
    arr[:] = [arr[i] for i in order]


def canonicalize(doc: Any, rules: Rules = Rules()) -> bytes:
    """Canonical bytes of a parsed document. ``doc`` may be modified in place."""
    for segs in rules._ignore_segs:
        if segs:
            _remove(doc, segs)
    # Deepest arrays first: an outer array's tie-break then sees sorted inner ones.
    for array_segs, key_segs in sorted(rules._sort_segs, key=lambda rule: -len(rule[0])):
        for arr in _resolve(doc, array_segs):
            if isinstance(arr, list):
                _sort_array(arr, key_segs)
    return _dumps(doc) + b"\n"


def _dumps(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc, option=_DUMP_OPTS)
    except orjson.JSONEncodeError:
        # Integers beyond 64 bits: same layout, and orjson's spelling of
        # everything else, so a float reads the same next to a big integer.
        out: list[str] = []
        try:
            _write(doc, "\n", out)
        except (TypeError, ValueError, orjson.JSONEncodeError) as exc:
            raise InvalidJSON(f"cannot serialise: {exc}") from exc
        return "".join(out).encode("utf-8")


def _write(node: Any, newline: str, out: list[str]) -> None:
    """orjson's OPT_INDENT_2 | OPT_SORT_KEYS layout, allowing any integer."""
    inner = newline + "  "
    if isinstance(node, dict) and node:
        out.append("{")
        if not all(isinstance(key, str) for key in node):
            raise TypeError("object keys must be strings")
        for i, key in enumerate(sorted(node)):
            out.append(("," if i else "") + inner + orjson.dumps(key).decode("utf-8") + ": ")
            _write(node[key], inner, out)
        out.append(newline + "}")
    elif isinstance(node, list) and node:
        out.append("[")
        for i, item in enumerate(node):
            out.append("," if i else "")
            out.append(inner)
            _write(item, inner, out)
        out.append(newline + "]")
    elif isinstance(node, int) and not isinstance(node, bool):
        out.append(str(node))
    else:
        out.append(orjson.dumps(node).decode("utf-8"))


def already_canonical(doc: Any, data: bytes) -> bool:
    """Whether ``doc``, as it is, is written out as ``data``. When ``data`` is what :func:`canonicalize`
    made under some rules, ``canonicalize(doc, those rules) == data`` then (canonicalising canonical
    bytes changes nothing; JSON text tells 1, 1.0 and true apart), without walking ``doc`` for the
    rules. ``doc`` is not modified."""
    try:
        return _dumps(doc) + b"\n" == data
    except InvalidJSON:
        return False


def canonical_bytes(data: bytes, rules: Rules = Rules()) -> bytes:
    """Parse and canonicalise in one step."""
    return canonicalize(parse_json(data), rules)


def blob_id(data: bytes) -> str:
    """The git blob id (SHA-1) of ``data``, computed without a repository."""
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()
