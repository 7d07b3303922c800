"""Flows: identity, validation and the canonical form of one document (pure).

A flow's identity is ``(name, version)`` read from the document at two JSON
pointers (default ``/name`` and ``/version``). Numbers are accepted as versions
(``1`` and ``"1"`` are the same version) because exports of some products carry
them so; anything else (objects, booleans, empty strings) is refused. A platform
without versions (n8n) names its flows by name alone: the identity then has a
``fixed`` version that every flow has and no document carries, so the repository
layout (``<name>/<version>.json``) stays the same.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from reconciler.canonical import InvalidJSON, Rules, blob_id, canonicalize, parse_json, parse_pointer
from reconciler.errors import Problem
from reconciler.names import InvalidName, encode

__all__ = ["FlowKey", "Identity", "CanonicalFlow", "read_flow", "flow_from_doc", "FlowInvalid", "sql_export",
           "looks_like_sql", "Patched", "light_flows"]


class Patched(dict):
    """A mapping of flows made from ``since`` by changing only the keys ``changed`` (some may end up the
    same): :func:`reconciler.readcache.changed_keys` against ``since`` is then those keys, not a walk
    over every key (a tree read by a diff from the last one, a derivation patched from the last). It holds
    ``since`` weakly (no chain of old generations is kept alive by the newest)."""

    __slots__ = ("_since", "changed", "__weakref__")

    def __init__(self, since: Mapping[Any, Any] | None = None, changed: set[Any] | frozenset = frozenset()):
        super().__init__(since or ())
        self._since = weakref.ref(since) if isinstance(since, Patched) else None
        self.changed = frozenset(changed)

    def patched_from(self, old: object) -> bool:
        return self._since is not None and self._since() is old


_SQL_START = re.compile(rb"\A\s*(--|/\*|(CREATE|INSERT|SET|SELECT|BEGIN|EXECUTE)\b)", re.IGNORECASE)


def sql_export(what: str) -> str:
    """The one message for SQL offered where a flow is expected (SQL is rendered from flows, never read back)."""
    return (f"{what} is a SQL export; SQL exports cannot be imported — commit the flow's JSON export "
            "(reconciler renders the SQL from it)")


def looks_like_sql(raw: bytes) -> bool:
    """True when bytes that are not JSON read as a SQL script (a comment or a statement first)."""
    return bool(_SQL_START.match(raw[:200]))


class FlowKey(NamedTuple):
    """The identity of a flow: name and version.

    A named tuple rather than a dataclass: keys are hashed and sorted tens of
    thousands of times per reconcile, and tuples do that in C.
    """

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Identity:
    """Where a platform's export keeps the flow's name and version.

    ``fixed``: the version of every flow when the documents carry none (identity
    by name alone); ``version`` is then not read or written.
    """

    name: str = "/name"
    version: str = "/version"
    fixed: str | None = None

    def key_of(self, doc: Any) -> FlowKey:
        """Read the key; raises :class:`FlowInvalid` naming the pointer."""
        if not isinstance(doc, dict):
            raise FlowInvalid(f"a flow must be a JSON object, not {type(doc).__name__}", "")
        name = self._read(doc, self.name, "name")
        return FlowKey(name, self.fixed if self.fixed is not None else self._read(doc, self.version, "version"))

    def set_key(self, doc: dict, key: FlowKey) -> None:
        """Write name and version into ``doc`` (used when a flow is renamed); with a fixed
        version only the name, and another version is refused (:class:`FlowInvalid`)."""
        fields = ((self.name, key.name), (self.version, key.version))
        if self.fixed is not None:
            if key.version != self.fixed:
                raise FlowInvalid(f"every flow here has version {self.fixed} (no document carries one), "
                                  f"so it cannot become version {key.version}", "")
            fields = fields[:1]
        for pointer, value in fields:
            *parents, last = parse_pointer(pointer)
            node = doc
            for seg in parents:
                node = node.setdefault(seg, {})
            node[last] = value

    @staticmethod
    def _read(doc: dict, pointer: str, what: str) -> str:
        node: Any = doc
        for seg in parse_pointer(pointer):
            if isinstance(node, dict) and seg in node:
                node = node[seg]
            elif isinstance(node, list) and seg.isdigit() and int(seg) < len(node):
                node = node[int(seg)]
            else:
                raise FlowInvalid(f"the flow has no {what} (nothing at {pointer})", pointer)
        if isinstance(node, bool) or not isinstance(node, (str, int, float)):
            raise FlowInvalid(f"the flow's {what} must be a string or a number, not {type(node).__name__}", pointer)
        value = node if isinstance(node, str) else _number_text(node)
        try:
            encode(value)
        except InvalidName as exc:
            raise FlowInvalid(f"the flow's {what} cannot be used: {exc}", pointer) from exc
        return value


def _number_text(n: int | float) -> str:
    return str(int(n)) if isinstance(n, float) and n.is_integer() else str(n)


class FlowInvalid(ValueError):
    """A flow document that cannot be used; ``pointer`` says where."""

    def __init__(self, message: str, pointer: str = ""):
        super().__init__(message)
        self.pointer = pointer


@dataclass(frozen=True)
class CanonicalFlow:
    """A flow in canonical form: its key, its bytes and their git blob id.

    ``data`` may be None in snapshots that keep only ids (to hold tens of
    thousands of flows in little memory); the bytes are then read again when a
    flow is written, and checked against ``oid``.
    """

    key: FlowKey
    data: bytes | None
    oid: str

    def light(self) -> "CanonicalFlow":
        return self if self.data is None else CanonicalFlow(self.key, None, self.oid)


def light_flows(keys: Sequence[FlowKey], oids: Sequence[str]) -> list[CanonicalFlow]:
    """``[CanonicalFlow(key, None, oid), ...]`` for tens of thousands of ids read from a cache, at a third
    of the frozen dataclass's ``__init__`` cost (its fields set in the instance dict directly)."""
    new, cls = object.__new__, CanonicalFlow
    out: list[CanonicalFlow] = []
    add = out.append
    for key, oid in zip(keys, oids, strict=True):
        flow = new(cls)
        d = flow.__dict__
        d["key"] = key
        d["data"] = None
        d["oid"] = oid
        add(flow)
    return out


def read_flow(
    raw: bytes,
    identity: Identity,
    rules: Rules,
    *,
    where: str,
    expect: FlowKey | None = None,
    validate: Callable[[Any], list[tuple[str, str]]] | None = None,
    render: Callable[[Any], tuple[Any, list[tuple[str, str]]]] | None = None,
) -> CanonicalFlow | Problem:
    """Parse, identify, validate and canonicalise one flow document.

    Returns a :class:`Problem` (never raises for bad input) naming ``where``, the
    JSON pointer and what to do. ``expect`` is the key implied by the file's
    path; ``validate`` returns ``(pointer, message)`` pairs (a JSON Schema).
    """
    try:
        doc = parse_json(raw)
    except InvalidJSON as exc:
        if looks_like_sql(raw):
            return Problem(where, sql_export("this file"), "", str(expect or ""))
        return Problem(where, f"{exc}; fix the file's syntax", exc.pointer, str(expect or ""))
    return flow_from_doc(doc, identity, rules, where=where, expect=expect, validate=validate, render=render)


def flow_from_doc(
    doc: Any,
    identity: Identity,
    rules: Rules,
    *,
    where: str,
    expect: FlowKey | None = None,
    validate: Callable[[Any], list[tuple[str, str]]] | None = None,
    render: Callable[[Any], tuple[Any, list[tuple[str, str]]]] | None = None,
) -> CanonicalFlow | Problem:
    """Like :func:`read_flow` for an already parsed document (modified in place).

    ``render`` (placeholders -> values) runs after identity checks and before
    validation, so a schema sees what the platform will get.
    """
    try:
        key = identity.key_of(doc)
    except FlowInvalid as exc:
        return Problem(where, str(exc), exc.pointer, str(expect or ""))
    if expect is not None and key != expect:
        pointer = identity.name if key.name != expect.name else identity.version
        return Problem(
            where,
            f"the flow says it is {key} but its path says {expect}; move the file or fix the field",
            pointer,
            str(expect),
        )
    if render is not None:
        doc, unresolved = render(doc)
        if unresolved:
            pointer, message = unresolved[0]
            more = f" (and {len(unresolved) - 1} more)" if len(unresolved) > 1 else ""
            return Problem(where, message + more, pointer, str(key))
    if validate is not None:
        errors = validate(doc)
        if errors:
            pointer, message = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            return Problem(where, f"schema: {message}{more}", pointer, str(key))
    try:
        data = canonicalize(doc, rules)
    except InvalidJSON as exc:
        return Problem(where, str(exc), exc.pointer, str(key))
    return CanonicalFlow(key, data, blob_id(data))
