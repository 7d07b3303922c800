"""The listing of an http environment: every page, and only a listing that can be trusted.

Pages are followed along ``list.next`` (a link, same origin only) or
``list.cursor`` (an opaque cursor sent back as a query parameter), never in a
circle. Offset pages (n8n's cursor is an offset) skip an item when another one
before it is deleted between two pages, and show one twice when one is created:
with ``list.recheck`` (on by default with a cursor) a listing of more than one
page is read again until two passes agree. A listing that never settles is
returned with a :class:`~reconciler.errors.Problem`, which makes the live set
incomplete, so a flow missing from it is never taken for a deletion.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from reconciler.canonical import InvalidJSON, parse_json
from reconciler.drivers._http import HttpClient
from reconciler.errors import Problem, StallError

from .mapping import HttpMapping

__all__ = ["Listed", "Lister", "PASSES"]

#: passes of a listing of several pages before it is taken as incomplete
PASSES = 4


@dataclass(frozen=True)
class Listed:
    """Items of a listing, with where each was found; ``problem`` when it may have missed some."""

    items: tuple[tuple[Any, str], ...]
    problem: Problem | None = None


class Lister:
    """Reads an environment's listing through its mapping."""

    def __init__(self, http: HttpClient, mapping: HttpMapping, member: Callable[[Any], Hashable], *,
                 passes: int = PASSES):
        """``member(item)``: what two passes must both list (an id and a key; not the whole item, whose
        volatile fields, an export time, would differ every time)."""
        self.http, self.mapping, self.member, self.passes = http, mapping, member, passes

    def everything(self) -> Listed:
        """Every listed item."""
        return self._settled(self.http.target(self.mapping.listing()))

    def named(self, name: str) -> Listed:
        """Items that may be named ``name``: the listing narrowed by ``list.name_query``, else all of it
        (the caller compares the names)."""
        return self._settled(self.http.target(self.mapping.listing(name)))

    def _settled(self, first: str) -> Listed:
        items, pages = self._pass(first)
        if pages == 1 or not self.mapping.env.list_.rechecked:
            return Listed(tuple(items))
        seen = self._members(items)
        for _ in range(self.passes - 1):
            items, pages = self._pass(first)
            now = self._members(items)
            if now == seen:
                return Listed(tuple(items))
            seen = now
        return Listed(tuple(items), Problem(
            self.http.full(first),
            f"the listing changed each of the {self.passes} times it was read (flows created or deleted meanwhile); "
            "a flow it misses may exist, so its absence is not taken for a deletion; the next run reads it again",
        ))

    def _pass(self, first: str) -> tuple[list[tuple[Any, str]], int]:
        """One reading of every page: the items and the number of pages."""
        target: str | None = first
        seen: set[str] = set()
        out: list[tuple[Any, str]] = []
        while target is not None:
            url = self.http.full(target)
            if target in seen:
                raise StallError(f"GET {url}: the listing leads back to a page already read (list.next or list.cursor)")
            seen.add(target)
            resp = self.http.request("GET", target)
            if not resp.ok:
                raise StallError(f"GET {url}: {resp.message}; check url and list.path")
            try:
                doc = parse_json(resp.body)
            except InvalidJSON as exc:
                raise StallError(f"GET {url}: the answer is not usable JSON ({exc}); check url and the paths") from exc
            page = self.mapping.page(doc, url, self.http.origin, first)
            out.extend(page.items)
            target = page.next
        return out, len(seen)

    def _members(self, items: list[tuple[Any, str]]) -> list[str]:
        """What two passes must share to agree, whatever their order (a member listed twice counts twice)."""
        return sorted(repr(self.member(item)) for item, _ in items)
