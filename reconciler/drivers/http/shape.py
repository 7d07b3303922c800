"""What a flow document is made of on a platform that adds to it (pure, no I/O): ``fields`` and ``defaults``.

A platform such as n8n returns far more than a flow (its own ids, timestamps,
owners, activation) and fills in values a person never wrote (``settings.callerPolicy``).
Two settings say what the flow is, for every document the driver reads:

- ``fields``, an allow-list: the document is these fields only (absent ones stay
  absent); the body of a write is that document, so nothing the platform refuses
  as read-only is ever sent;
- ``defaults``: a field holding the value the platform fills in is left out, so a
  flow written without it reads back as written and does not drift.

The documents in git are read by the engine with the environment's ``ignore`` and
``sort`` only, so a document that this shape would change (a field outside the
allow-list, a default written out) could never read back as it is in git: it is
refused before import, naming the pointer (:meth:`Shape.misfits`), instead of being
rewritten and then failing the read-after-write proof.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import pointers

__all__ = ["Shape", "merged_away"]


@dataclass(frozen=True)
class Shape:
    """An environment's ``fields`` (None: every field) and ``defaults`` (pointer -> value)."""

    fields: tuple[str, ...] | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.fields is not None or bool(self.defaults)

    def normal(self, doc: Any) -> Any:
        """The flow document in ``doc`` (a new object when anything changes; ``doc`` is not modified)."""
        if not self.active or not isinstance(doc, dict):
            return doc
        out = _restrict(doc, self.fields) if self.fields is not None else copy.deepcopy(doc)
        for pointer, value in self.defaults.items():
            if _same(pointers.get(out, pointer), value):
                pointers.remove(out, pointer)
        return out

    def misfits(self, doc: Any) -> list[tuple[str, str]]:
        """(pointer, message) for what :meth:`normal` would change in ``doc``: it would never read back as written."""
        if not self.active or not isinstance(doc, dict):
            return []
        out = []
        if self.fields is not None:
            out += [(p, f"{p} is not one of the environment's fields ({', '.join(self.fields)}); remove it")
                    for p in _extra(doc, _restrict(doc, self.fields), "")]
        for pointer, value in self.defaults.items():
            if _same(pointers.get(doc, pointer), value):
                said = json.dumps(value, ensure_ascii=False)
                out.append((pointer, f"{pointer} holds the value the platform fills in by itself ({said}, in the "
                                     "environment's defaults); leave it out"))
        return out



def merged_away(live: Any, doc: Any, merged: tuple[str, ...]) -> list[str]:
    """Pointers of keys that ``live`` has and ``doc`` lacks in objects the platform merges on update
    (``update.merged``): an update cannot remove them."""
    out = []
    for pointer in merged:
        have, want = pointers.get(live, pointer), pointers.get(doc, pointer)
        if isinstance(have, dict):
            keep = want if isinstance(want, dict) else {}
            out += [pointers.format_pointer([*pointers.parse_pointer(pointer), k]) for k in have if k not in keep]
    return out


def _restrict(doc: dict, fields: tuple[str, ...]) -> dict:
    out: dict = {}
    for pointer in fields:
        value = pointers.get(doc, pointer)
        if value is not pointers.MISSING:
            out = pointers.put(out, pointer, copy.deepcopy(value))
    return out


def _same(a: Any, b: Any) -> bool:
    """JSON equality of a found value and a default: ``true`` is not ``1``, ``1.0`` is ``1``."""
    if a is pointers.MISSING:
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _extra(doc: Any, kept: Any, at: str) -> Iterator[str]:
    """Pointers of what ``doc`` holds and ``kept`` does not (objects only: ``fields`` names object members)."""
    if not isinstance(doc, dict):
        return
    for key, value in doc.items():
        here = at + pointers.format_pointer([key])
        if not isinstance(kept, dict) or key not in kept:
            yield here
        elif isinstance(value, dict):
            yield from _extra(value, kept[key], here)
