"""Reading one flow of an http environment: by name and version, or by the platform's own id.

Owns the platform's ids learnt from the listing (``list.id``), looked up by name
(``list.name_query``) for a flow the last listing did not show; a name held by two
flows is never resolved to one of them. Every document read is put in the
environment's shape (:mod:`.shape`) before it is canonicalised. Reads may run in
parallel (``concurrency``); writes never do (:mod:`.driver`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler import pointers
from reconciler.canonical import InvalidJSON, parse_json
from reconciler.drivers._http import HttpClient
from reconciler.errors import Problem
from reconciler.flows import CanonicalFlow, FlowInvalid, FlowKey, flow_from_doc

from .listing import Lister
from .mapping import HttpMapping
from .shape import Shape

if TYPE_CHECKING:
    from .settings import HttpEnvironment

__all__ = ["Got", "Read", "Reader", "twice"]

_T, _R = TypeVar("_T"), TypeVar("_R")


@dataclass(frozen=True)
class Got:
    """One flow as read: its document (in the environment's shape), where, and the platform's id."""

    doc: Any
    where: str
    id: str | None = None


#: one flow as read, None when the platform does not hold it, or a Problem
Read = Got | Problem | None


class Reader:
    """The reads of :class:`~.driver.HttpDriver`."""

    def __init__(self, env: HttpEnvironment, http: HttpClient):
        self.env = env
        self.identity, self.rules = env.flow_identity, env.rules
        self.location = env.url
        self.mapping = HttpMapping(env)
        self.shape = Shape(env.fields, env.defaults)
        self._http = http
        self._lister = Lister(http, self.mapping, lambda item: (_id_or_none(self, item), _summary_or_none(self, item)))
        #: the platform's ids of each flow, from the last listing (two or more: a name held twice)
        self._ids: dict[FlowKey, tuple[str, ...]] = {}

    def _item(self, item: Any, where: str) -> Got | Problem:
        """A full listed item as a flow, located by its id where the platform addresses flows so."""
        try:
            id_ = self.mapping.item_id(item)
        except FlowInvalid as exc:
            return Problem(where, f"{exc}; skipped", exc.pointer)
        doc = self.shape.normal(item)
        key = _key_or_none(self, doc)
        if id_ is not None and key is not None and self.env.export is not None:
            where = self._http.full(self._http.target(self.mapping.export_path(key, id_)))
        return Got(doc, where, id_)

    def _parallel(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> Iterator[_R]:
        """``map(fn, items)``, ``concurrency`` at a time (reads only: writes stay sequential)."""
        if self.env.concurrency == 1 or len(items) < 2:
            yield from map(fn, items)
            return
        pool = ThreadPoolExecutor(max_workers=min(self.env.concurrency, len(items)), thread_name_prefix="http-export")
        try:
            yield from pool.map(fn, items)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _fetch(self, key: FlowKey, id_: str | None = None) -> Read:
        """One flow's export: the flow and its URL, None when the platform says 404, or a Problem."""
        target = self._http.target(self.mapping.export_path(key, id_))
        url = self._http.full(target)
        resp = self._http.request("GET", target)
        if resp.status == 404:
            return None
        if not resp.ok:
            return Problem(url, f"cannot export: {resp.message}; skipped", flow=str(key))
        try:
            doc = parse_json(resp.body)
        except InvalidJSON as exc:
            return Problem(url, f"the export is not usable JSON: {exc}; skipped", exc.pointer, str(key))
        flow = self.mapping.flow_of(doc)
        if flow is pointers.MISSING:
            assert self.env.export is not None
            return Problem(url, f"no flow at {self.env.export.flow} of the export; check export.flow", flow=str(key))
        return Got(self.shape.normal(flow), url, id_)

    # -- one flow, read again ------------------------------------------------------

    def _one(self, key: FlowKey) -> Read:
        """The flow as the platform holds it now (by its id where the platform addresses flows so)."""
        if self.env.export is None:
            docs, unsure = self._named(key)
            if len(docs) > 1:
                return Problem(docs[1].where, f"listed {len(docs)} times", flow=str(key))
            return docs[0] if docs else unsure
        if not self.mapping.by_id:
            return self._fetch(key)
        ids, unsure = self._ids_of(key)
        if len(ids) > 1:
            return Problem(self.location, twice(key, ids), flow=str(key))
        return self._fetch(key, ids[0]) if ids else unsure

    def _ids_of(self, key: FlowKey) -> tuple[tuple[str, ...], Problem | None]:
        """The platform's ids of ``key``: from the last listing, else looked up by name (with the
        problem of a lookup that could not be trusted, whose ids are not kept)."""
        if key in self._ids:
            return self._ids[key], None
        docs, unsure = self._named(key)
        ids = tuple(g.id for g in docs if g.id is not None)
        if unsure is None:
            self._ids[key] = ids
        return ids, unsure

    def _named(self, key: FlowKey) -> tuple[list[Got], Problem | None]:
        """The listed flows that are ``key`` (the listing narrowed by name where it can be), and the
        problem of a listing that never settled: then an absence proves nothing."""
        listed = self._lister.named(key.name)
        return self._grouped(listed.items, {key}).get(key, []), listed.problem

    def _grouped(self, items: Iterable[tuple[Any, str]], keys: set[FlowKey]) -> dict[FlowKey, list[Got]]:
        found: dict[FlowKey, list[Got]] = {}
        for item, where in items:
            got = self._item(item, where) if self.env.list_.full else None
            if isinstance(got, Got) and (key := _key_or_none(self, got.doc)) in keys:
                found.setdefault(key, []).append(got)
            elif got is None and (key := _summary_or_none(self, item)) in keys:
                found.setdefault(key, []).append(Got(item, where, _id_or_none(self, item)))
        return found

    def _single_oid(self, key: FlowKey, docs: list[Got]) -> str | None:
        return "invalid" if len(docs) > 1 else self._oid(key, docs[0] if docs else None)

    def _canonical(self, key: FlowKey, got: Got) -> CanonicalFlow | Problem:
        return flow_from_doc(got.doc, self.identity, self.rules, where=got.where, expect=key)

    def _oid(self, key: FlowKey, got: Got | None) -> str | None:
        if got is None:
            return None
        flow = self._canonical(key, got)
        return flow.oid if isinstance(flow, CanonicalFlow) else "invalid"


def twice(key: FlowKey, ids: Iterable[str]) -> str:
    ids = sorted(ids)
    return f"the platform holds {len(ids)} flows that are {key} (ids {', '.join(ids)}); remove or rename all but one"


def as_got(got: Read) -> Got | None:
    return got if isinstance(got, Got) else None


def _key_or_none(reader: Reader, doc: Any) -> FlowKey | None:
    try:
        return reader.identity.key_of(doc)
    except FlowInvalid:
        return None


def _summary_or_none(reader: Reader, item: Any) -> FlowKey | None:
    try:
        return reader.mapping.summary_key(item)
    except FlowInvalid:
        return None


def _id_or_none(reader: Reader, item: Any) -> str | None:
    try:
        return reader.mapping.item_id(item)
    except FlowInvalid:
        return None
