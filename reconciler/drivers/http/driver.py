"""The http driver: one environment's flow manager read and written along its mapping.

Owns what happens between requests: the exports fetched in parallel, the
platform's ids learnt from the listing, the re-read before a replace or a delete
(the precondition), the listing by name before a create, "already exists" after
an import without override, the checks before a write (the document's shape,
its credential references), the per-flow refusals, and the read-after-write
check. The pages of a listing are :mod:`.listing`; which request a flow becomes
is :mod:`.mapping`; the transport (keep-alive, retries, credentials, limits,
TLS) is :class:`reconciler.drivers._http.HttpClient`. The guarantees are in the
package docstring (:mod:`reconciler.drivers.http`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from reconciler.canonical import InvalidJSON, blob_id, parse_json
from reconciler.drivers import Change, LiveCollector, LiveSet, Progress
from reconciler.drivers._common import DriverBase, Refused, Ticker, moved
from reconciler.drivers._http import HttpClient, Response, TokenAuth
from reconciler.errors import Problem
from reconciler.flows import CanonicalFlow, FlowInvalid, FlowKey

from .credentials import CredentialCheck
from .mapping import Request
from .reading import Got, Reader, as_got, twice
from .shape import merged_away

if TYPE_CHECKING:
    from .settings import HttpEnvironment

__all__ = ["HttpDriver"]

# A 4xx on an import without override whose message says this is a name clash.
_EXISTS = re.compile(r"already exists?", re.IGNORECASE)


class HttpDriver(Reader, DriverBase):
    """Talks to one environment's flow manager through its :class:`~.settings.HttpEnvironment` mapping."""

    def __init__(
        self,
        env: HttpEnvironment,
        *,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        auth = None
        if env.auth is not None:
            auth = TokenAuth(env.auth.env, env.auth.header, env.auth.scheme, environ,
                             where=f"auth.env of environment {env.name}")
        super().__init__(env, HttpClient(
            env.url, timeout=env.timeout, attempts=env.attempts, backoff=env.backoff, auth=auth, where="the platform",
            no_auth_hint="configure auth (a token in an environment variable)", sleep=sleep))
        self._credentials = CredentialCheck(env, environ=environ, sleep=sleep) if env.credentials else None

    def close(self) -> None:
        self._http.close()
        if self._credentials is not None:
            self._credentials.close()

    # -- export ------------------------------------------------------------------

    def export(self, progress: Progress | None = None) -> LiveSet:
        collect = LiveCollector(self.identity, self.rules)
        listed = self._lister.everything()
        if listed.problem is not None:
            collect.problem(listed.problem)
        ids: dict[FlowKey, list[str]] = {}
        tick = Ticker(progress, len(listed.items))
        if self.env.list_.full:
            for i, (item, where) in enumerate(listed.items, 1):
                got = self._item(item, where)
                if isinstance(got, Problem):
                    collect.problem(got)
                elif isinstance(flow := collect.add(got.doc, got.where), CanonicalFlow) and got.id is not None:
                    ids.setdefault(flow.key, []).append(got.id)  # a key held twice keeps both: never pick one
                tick(i)
            self._ids = {k: tuple(v) for k, v in ids.items()}
            return collect.result()
        keys: list[tuple[FlowKey, str | None, str]] = []
        for item, where in listed.items:
            try:
                keys.append((self.mapping.summary_key(item), self.mapping.item_id(item), where))
            except FlowInvalid as exc:
                collect.problem(Problem(where, f"a listed flow cannot be identified: {exc}", exc.pointer))
        fetched = self._parallel(lambda k: self._fetch(k[0], k[1]), keys)
        for i, ((key, id_, listed_at), got) in enumerate(zip(keys, fetched), 1):
            if got is None:
                collect.problem(Problem(
                    listed_at, "listed, but its export answered 404 (deleted meanwhile, or is export.path wrong?); "
                    "skipped, and its absence is not taken for a deletion", flow=str(key)
                ))
            elif isinstance(got, Problem):
                collect.problem(got)
            elif self._matches(got, key, collect):
                collect.add(got.doc, got.where)
                if id_ is not None:
                    ids.setdefault(key, []).append(id_)
            tick(i)
        self._ids = {k: tuple(v) for k, v in ids.items()}
        return collect.result()

    def _matches(self, got: Got, key: FlowKey, collect: LiveCollector) -> bool:
        try:
            found = self.identity.key_of(got.doc)
        except FlowInvalid as exc:
            collect.problem(Problem(got.where, str(exc), exc.pointer, str(key)))
            return False
        if found != key:
            collect.problem(Problem(got.where, f"listed as {key} but the export says it is {found}; skipped",
                                    flow=str(key)))
            return False
        return True

    # -- one flow, read again ------------------------------------------------------

    def load(self, key: FlowKey) -> CanonicalFlow | None:
        """The flow as the platform holds it now, from one export request (or the listing when
        there is no export route); None when it is absent, unreadable or not that flow."""
        got = self._one(key)
        if got is None or isinstance(got, Problem):
            return None
        flow = self._canonical(key, got)
        return flow if isinstance(flow, CanonicalFlow) else None

    def reread(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        """Canonical blob ids of just these flows, for the engine's read-after-write check.

        One GET per flow (in parallel) instead of a listing plus every export; but
        a full listing when there is no export route, or when it holds the flows
        and they are a quarter or more of what the last listing showed (a sync
        into an empty instance: two pages instead of hundreds of GETs).
        """
        if self.env.export is None or (self.env.list_.full and 4 * len(keys) >= len(self._ids)):
            listed = self._lister.everything()
            found = self._grouped(listed.items, set(keys))
            missing = None if listed.problem is None else "unreadable"  # absence proves nothing then
            return {key: self._single_oid(key, found[key]) if key in found else missing for key in keys}
        return {key: "unreadable" if isinstance(got, Problem) else self._oid(key, got)
                for key, got in zip(keys, self._parallel(self._one, keys))}

    # -- apply -----------------------------------------------------------------

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> dict[FlowKey, str]:
        """Import or delete each flow, one after the other, under its precondition; per-flow refusals
        are returned.

        A platform that is down (RetryableError) or refuses the credentials
        (StallError) stops the batch: every further request would fail the same way.
        """
        failed: dict[FlowKey, str] = {}
        if self._credentials is not None:
            self._credentials.forget()  # listed again for each batch: one may have been created meanwhile
        tick = Ticker(progress, len(changes))
        for i, change in enumerate(changes, 1):
            try:
                if change.data is None:
                    self._delete(change)
                else:
                    self._import(change, change.data)
            except Refused as exc:
                failed[change.key] = str(exc)
            tick(i)
        return failed

    def _import(self, change: Change, data: bytes) -> None:
        if change.expect is not None and not self.env.override:
            raise Refused("override is off for this environment, so the existing flow stays")
        doc = parse_json(data)
        misfits = self.shape.misfits(doc)
        if misfits:
            more = f" (and {len(misfits) - 1} more)" if len(misfits) > 1 else ""
            raise Refused(f"not imported: {misfits[0][1]}{more}; the platform would not hold it as written")
        if self._credentials is not None and (why := self._credentials.refusal(doc)) is not None:
            raise Refused(why)
        if change.expect is None:
            self._create(change.key, data)
        else:
            self._replace(change, data, doc)

    def _create(self, key: FlowKey, data: bytes) -> None:
        if self.env.create is not None:
            # The platform may allow two flows of one name: a flow created meanwhile is found by listing.
            there, unsure = self._named(key)
            if there:
                raise Refused(f"already exists in the platform ({there[0].where}): it was created there after "
                              "the flows were read; left as it is, the next run compares it with git")
            if unsure is not None:
                raise Refused(f"not created: whether the platform holds it already cannot be told ({unsure.message})")
        resp = self._send(self.mapping.create_request(key, data))
        if resp.ok:
            self._created(key, resp)
            return
        if 400 <= resp.status < 500 and (resp.status == 409 or _EXISTS.search(resp.message)):
            if (resp.retried or resp.resent) and self._oid(key, as_got(self._one(key))) == blob_id(data):
                return  # an earlier try that timed out did land: the platform holds exactly this flow
            raise Refused(
                f"already exists in the platform ({resp.message}): it was created there after the flows were "
                "read; left as it is, the next run compares it with git"
            )
        raise Refused(f"the platform refused the import: {resp.message}")

    def _created(self, key: FlowKey, resp: Response) -> None:
        """Learn the new flow's id from the answer (else from the listing, when next needed)."""
        self._ids.pop(key, None)
        if not self.mapping.by_id:
            return
        if resp.retried or resp.resent:
            ids, _ = self._ids_of(key)  # a try whose answer was lost may have landed too
            if len(ids) > 1:
                raise Refused(f"{twice(key, ids)}: a request was sent again after its answer was lost")
            return
        try:
            self._ids[key] = (str(self.mapping.item_id(parse_json(resp.body))),)
        except (InvalidJSON, FlowInvalid):
            pass

    def _replace(self, change: Change, data: bytes, doc: Any) -> None:
        live = self._unchanged(change)
        update = self.env.update
        if update is not None and update.merged and live is not None:
            kept = merged_away(live.doc, doc, update.merged)
            if kept:
                merged = " and ".join(update.merged)
                raise Refused(f"not imported: the platform keeps {', '.join(kept)} on an update ({merged} is merged: "
                              "a key cannot be removed through its API); set it in git, or remove it in the "
                              "platform first")
        resp = self._send(self.mapping.update_request(change.key, data, live.id if live else None))
        if not resp.ok:
            raise Refused(f"the platform refused the import: {resp.message}")

    def _delete(self, change: Change) -> None:
        if self.env.delete is None:
            raise Refused("the environment's mapping has no delete endpoint ([environment.delete]); left as it is")
        live = self._unchanged(change)
        if live is None:
            return  # already gone, as the plan saw it
        request = self.mapping.delete_request(change.key, live.id)
        assert request is not None
        resp = self._send(request)
        if not resp.ok and resp.status != 404:  # 404: gone already (an earlier try that timed out)
            raise Refused(f"the platform refused the delete: {resp.message}")
        self._ids.pop(change.key, None)

    def _unchanged(self, change: Change) -> Got | None:
        """The flow as the platform holds it now, if it is what the plan saw; else Refused."""
        got = self._one(change.key)
        if isinstance(got, Problem):
            raise Refused(f"cannot re-read it to check for changes: {got.message}")
        current = self._oid(change.key, got)
        if current != change.expect:
            raise Refused(moved("the flow", change.expect, current, where="in the platform"))
        if got is not None and self.mapping.by_id and got.id is None:
            raise Refused("the platform's id of the flow is unknown (list.id)")
        return got

    def _send(self, request: Request) -> Response:
        return self._http.request(request.method, self._http.target(request.path), request.body)
