"""Credential references of a flow, checked against the credentials the target environment holds.

Platforms like n8n keep credentials (tokens, passwords) as objects of their own,
never inside a flow; a node names the one it uses, ``{type: {id, name}}``. n8n
refuses no reference: an unknown one is stored as sent and fails only when the
flow runs, and an id missing or unknown there is filled in from a *unique*
name. With ``[environment.credentials]`` the driver lists the target's
credentials (once per batch of writes) and refuses, before anything is sent, a
flow that names one the environment does not have, or a name two credentials
share, saying which node, which type and which name.

:func:`unresolved` is the rule (pure); :class:`CredentialCheck` lists the
credentials through its own client (the route may have another URL and other
credentials than the flows: n8n lists them only on its internal API).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler import pointers
from reconciler.canonical import InvalidJSON, parse_json
from reconciler.drivers._http import HttpClient, TokenAuth
from reconciler.errors import StallError

if TYPE_CHECKING:
    from .settings import CredentialsRoute, HttpEnvironment

__all__ = ["Credential", "CredentialCheck", "unresolved"]


@dataclass(frozen=True)
class Credential:
    id: str
    name: str
    type: str


def unresolved(doc: Any, held: Iterable[Credential], route: CredentialsRoute, env: str) -> list[str]:
    """One message per reference in ``doc`` that the platform would not resolve to exactly one of ``held``."""
    creds = list(held)
    by_id = {c.id: c for c in creds}
    out = []
    nodes = pointers.get(doc, route.nodes)
    for node in nodes if isinstance(nodes, list) else ():
        refs = pointers.get(node, route.refs)
        if not isinstance(refs, dict):
            continue
        label = pointers.get(node, route.label)
        who = f"node {label!r}" if isinstance(label, str) else "a node"
        for ctype, ref in refs.items():
            ref = ref if isinstance(ref, dict) else {}
            cid, name = ref.get("id"), ref.get("name")
            uses = f"{who} uses credential {ctype} {name!r}" if isinstance(name, str) else \
                f"{who} uses a {ctype} credential"
            found = by_id.get(cid) if isinstance(cid, str) and cid else None
            if found is not None:
                if found.type != ctype:
                    out.append(f"{uses}, but id {cid} in {env} is a {found.type} credential")
                elif isinstance(name, str) and found.name != name:
                    out.append(f"{uses}, but id {cid} in {env} is named {found.name!r}; fix the name or drop the id")
                continue
            named = [c for c in creds if c.type == ctype and c.name == name] if isinstance(name, str) else []
            if not named:
                out.append(f"{uses}, which {env} does not have: create it there (same type and name), "
                           "then sync again")
            elif len(named) > 1:
                out.append(f"{uses}, and {env} has {len(named)} {ctype} credentials of that name "
                           f"(ids {', '.join(sorted(c.id for c in named))}): rename all but one")
    return out


class CredentialCheck:
    """The credentials of one environment, listed on first use; :meth:`forget` before each batch."""

    def __init__(self, env: HttpEnvironment, *, environ: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        assert env.credentials is not None
        self.route, self.env_name = env.credentials, env.name
        auth_settings = self.route.auth or env.auth
        auth = None
        if auth_settings is not None:
            which = "credentials.auth.env" if self.route.auth is not None else "auth.env"
            auth = TokenAuth(auth_settings.env, auth_settings.header, auth_settings.scheme, environ,
                             where=f"{which} of environment {env.name}")
        self.http = HttpClient(self.route.url or env.url, timeout=env.timeout, attempts=env.attempts,
                               backoff=env.backoff, auth=auth, where="the platform's credentials listing",
                               no_auth_hint="configure credentials.auth", sleep=sleep)
        self._held: list[Credential] | None = None

    def forget(self) -> None:
        self._held = None

    def refusal(self, doc: Any) -> str | None:
        """Why ``doc`` must not be imported (its references, one by one), or None."""
        problems = unresolved(doc, self.held(), self.route, self.env_name)
        if not problems:
            return None
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return f"not imported: {problems[0]}{more}"

    def held(self) -> list[Credential]:
        if self._held is None:
            self._held = self._list()
        return self._held

    def _list(self) -> list[Credential]:
        target = self.http.target(self.route.path)
        url = self.http.full(target)
        resp = self.http.request("GET", target)
        if not resp.ok:
            raise StallError(f"GET {url}: {resp.message}; check credentials.url and credentials.path")
        try:
            items = pointers.get(parse_json(resp.body), self.route.items)
        except InvalidJSON as exc:
            raise StallError(f"GET {url}: the answer is not usable JSON ({exc}); check credentials.path") from exc
        if not isinstance(items, list):
            raise StallError(f"GET {url}: no array at {self.route.items or 'the top'}; check credentials.items")
        out = []
        for item in items:
            fields = [pointers.get(item, p) for p in (self.route.id, self.route.name, self.route.type)]
            if all(isinstance(f, (str, int)) and not isinstance(f, bool) for f in fields):
                out.append(Credential(*(str(f) for f in fields)))
        return out

    def close(self) -> None:
        self.http.close()
