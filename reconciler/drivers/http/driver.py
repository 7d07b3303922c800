"""The http driver: one environment's flow manager read and written along its mapping.

Owns what happens between requests: the listing's pages, the exports fetched in
parallel, the re-read before a replace or a delete (the precondition), "already
exists" after an import without override, the per-flow refusals, and the
read-after-write check. Which request a flow becomes is :mod:`.mapping`; the
transport (keep-alive, retries, credentials, limits, TLS) is
:class:`reconciler.drivers._http.HttpClient`. The guarantees are in the
package docstring (:mod:`reconciler.drivers.http`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from reconciler import pointers
from reconciler.canonical import InvalidJSON, blob_id, parse_json
from reconciler.drivers import Change, LiveCollector, LiveSet, Progress
from reconciler.drivers._common import DriverBase, Refused, Ticker, moved
from reconciler.drivers._http import HttpClient, Response, TokenAuth
from reconciler.errors import Problem, StallError
from reconciler.flows import CanonicalFlow, FlowInvalid, FlowKey, Identity, flow_from_doc

from .mapping import HttpMapping, Request

if TYPE_CHECKING:
    from .settings import HttpEnvironment

__all__ = ["HttpDriver"]

# A 4xx on an import without override whose message says this is a name clash.
_EXISTS = re.compile(r"already exists?", re.IGNORECASE)

#: one flow as read: (document, where it was read), None when the platform says 404, or a Problem
_Read = tuple[Any, str] | Problem | None


class HttpDriver(DriverBase):
    """Talks to one environment's flow manager through its :class:`~.settings.HttpEnvironment` mapping."""

    def __init__(
        self,
        env: HttpEnvironment,
        *,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.env = env
        self.identity, self.rules = env.flow_identity, env.rules
        self.location = env.url
        self.mapping = HttpMapping(env)
        auth = None
        if env.auth is not None:
            auth = TokenAuth(env.auth.env, env.auth.header, env.auth.scheme, environ,
                             where=f"auth.env of environment {env.name}")
        self._http = HttpClient(env.url, timeout=env.timeout, attempts=env.attempts, backoff=env.backoff, auth=auth,
                                where="the platform", no_auth_hint="configure auth (a token in an environment variable)",
                                sleep=sleep)

    def close(self) -> None:
        self._http.close()

    # -- export ------------------------------------------------------------------

    def export(self, progress: Progress | None = None) -> LiveSet:
        collect = LiveCollector(self.identity, self.rules)
        items = self._list()
        tick = Ticker(progress, len(items))
        if self.env.list_.full:
            for i, (item, where) in enumerate(items, 1):
                collect.add(item, where)
                tick(i)
            return collect.result()
        keys: list[tuple[FlowKey, str]] = []
        for item, where in items:
            try:
                keys.append((self.mapping.summary_key(item), where))
            except FlowInvalid as exc:
                collect.problem(Problem(where, f"a listed flow cannot be identified: {exc}", exc.pointer))
        for i, ((key, listed), got) in enumerate(zip(keys, self._fetch_all([k for k, _ in keys])), 1):
            if got is None:
                collect.problem(Problem(
                    listed, "listed, but its export answered 404 (deleted meanwhile, or is export.path wrong?); "
                    "skipped, and its absence is not taken for a deletion", flow=str(key)
                ))
            elif isinstance(got, Problem):
                collect.problem(got)
            else:
                doc, where = got
                if self._matches(doc, key, where, collect):
                    collect.add(doc, where)
            tick(i)
        return collect.result()

    def _matches(self, doc: Any, key: FlowKey, where: str, collect: LiveCollector) -> bool:
        try:
            found = self.identity.key_of(doc)
        except FlowInvalid as exc:
            collect.problem(Problem(where, str(exc), exc.pointer, str(key)))
            return False
        if found != key:
            collect.problem(Problem(where, f"listed as {key} but the export says it is {found}; skipped", flow=str(key)))
            return False
        return True

    def _list(self) -> list[tuple[Any, str]]:
        """Every item of every page of the listing, with where it was found."""
        target: str | None = self._http.target(self.mapping.listing())
        seen: set[str] = set()
        out: list[tuple[Any, str]] = []
        while target is not None:
            url = self._http.full(target)
            if target in seen:
                raise StallError(f"GET {url}: the listing links back to a page already read (list.next)")
            seen.add(target)
            resp = self._http.request("GET", target)
            if not resp.ok:
                raise StallError(f"GET {url}: {resp.message}; check url and list.path")
            page = self.mapping.page(_json(resp, f"GET {url}"), url, self._http.origin)
            out.extend(page.items)
            target = page.next
        return out

    def _fetch_all(self, keys: Sequence[FlowKey]) -> Iterator[_Read]:
        if self.env.concurrency == 1 or len(keys) < 2:
            yield from map(self._fetch, keys)
            return
        pool = ThreadPoolExecutor(max_workers=min(self.env.concurrency, len(keys)), thread_name_prefix="http-export")
        try:
            yield from pool.map(self._fetch, keys)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _fetch(self, key: FlowKey) -> _Read:
        """One flow's export: (document, url), None when the platform says 404, or a Problem."""
        target = self._http.target(self.mapping.export_path(key))
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
        return flow, url

    # -- one flow, read again ------------------------------------------------------

    def load(self, key: FlowKey) -> CanonicalFlow | None:
        """The flow as the platform holds it now, from one export request (or the listing when
        there is no export route); None when it is absent, unreadable or not that flow."""
        got = self._listed([key])[key] if self.env.export is None else self._fetch(key)
        if isinstance(got, list):
            got = got[0] if len(got) == 1 else None
        if got is None or isinstance(got, Problem):
            return None
        flow = self._canonical(key, got)
        return flow if isinstance(flow, CanonicalFlow) else None

    def reread(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        """Canonical blob ids of just these flows, for the engine's read-after-write check.

        One GET per flow (in parallel) instead of a listing plus every export.
        """
        if self.env.export is None:
            return self._oids_from_listing(keys)
        return {
            key: "unreadable" if isinstance(got, Problem) else self._oid(key, got)
            for key, got in zip(keys, self._fetch_all(keys))
        }

    def _current(self, key: FlowKey) -> str | None:
        """Canonical blob id of the flow the platform holds now (None if absent, "invalid" if unusable)."""
        if self.env.export is None:
            return self._oids_from_listing([key])[key]
        got = self._fetch(key)
        if isinstance(got, Problem):
            raise Refused(f"cannot re-read it to check for changes: {got.message}")
        return self._oid(key, got)

    def _canonical(self, key: FlowKey, got: tuple[Any, str]) -> CanonicalFlow | Problem:
        doc, where = got
        return flow_from_doc(doc, self.identity, self.rules, where=where, expect=key)

    def _oid(self, key: FlowKey, got: tuple[Any, str] | None) -> str | None:
        if got is None:
            return None
        flow = self._canonical(key, got)
        return flow.oid if isinstance(flow, CanonicalFlow) else "invalid"

    def _listed(self, keys: Sequence[FlowKey]) -> dict[FlowKey, list[tuple[Any, str]]]:
        """With list.full and no export route, one listing answers for every key (each may be listed twice)."""
        found: dict[FlowKey, list[tuple[Any, str]]] = {key: [] for key in keys}
        for doc, where in self._list():
            key = _key_or_none(self.identity, doc)
            if key in found:
                found[key].append((doc, where))
        return found

    def _oids_from_listing(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        return {
            key: "invalid" if len(docs) > 1 else self._oid(key, docs[0] if docs else None)
            for key, docs in self._listed(keys).items()
        }

    # -- apply -----------------------------------------------------------------

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> dict[FlowKey, str]:
        """Import or delete each flow under its precondition; per-flow refusals are returned.

        A platform that is down (RetryableError) or refuses the credentials
        (StallError) stops the batch: every further request would fail the same way.
        """
        failed: dict[FlowKey, str] = {}
        tick = Ticker(progress, len(changes))
        for i, change in enumerate(changes, 1):
            try:
                if change.data is None:
                    self._delete(change)
                else:
                    self._import(change)
            except Refused as exc:
                failed[change.key] = str(exc)
            tick(i)
        return failed

    def _import(self, change: Change) -> None:
        assert change.data is not None
        override = change.expect is not None
        if override:
            if not self.env.override:
                raise Refused("override is off for this environment, so the existing flow stays")
            self._check_unchanged(change)
        resp = self._send(self.mapping.import_request(change.key, change.data, override))
        if resp.ok:
            return
        if not override and 400 <= resp.status < 500 and (resp.status == 409 or _EXISTS.search(resp.message)):
            if (resp.retried or resp.resent) and self._current(change.key) == blob_id(change.data):
                return  # an earlier try that timed out did land: the platform holds exactly this flow
            raise Refused(
                f"already exists in the platform ({resp.message}): it was created there after the flows were "
                "read; left as it is, the next run compares it with git"
            )
        raise Refused(f"the platform refused the import: {resp.message}")

    def _delete(self, change: Change) -> None:
        request = self.mapping.delete_request(change.key)
        if request is None:
            raise Refused("the environment's mapping has no delete endpoint ([environment.delete]); left as it is")
        if self._check_unchanged(change) is None:
            return  # already gone, as the plan saw it
        resp = self._send(request)
        if not resp.ok and resp.status != 404:  # 404: gone already (an earlier try that timed out)
            raise Refused(f"the platform refused the delete: {resp.message}")

    def _check_unchanged(self, change: Change) -> str | None:
        current = self._current(change.key)
        if current != change.expect:
            raise Refused(moved("the flow", change.expect, current, where="in the platform"))
        return current

    def _send(self, request: Request) -> Response:
        return self._http.request(request.method, self._http.target(request.path), request.body)


def _json(resp: Response, what: str) -> Any:
    try:
        return parse_json(resp.body)
    except InvalidJSON as exc:
        raise StallError(f"{what}: the answer is not usable JSON ({exc}); check url and the paths") from exc


def _key_or_none(identity: Identity, doc: Any) -> FlowKey | None:
    try:
        return identity.key_of(doc)
    except FlowInvalid:
        return None
