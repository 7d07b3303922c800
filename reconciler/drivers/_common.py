"""What every driver shares: refusals, the precondition message, progress, secrets from the environment.

Kept here so that a rule written for one platform is the rule of all of them:
a change refused because the live flow moved reads the same in every driver,
progress ticks at the same pace, a token comes from an environment variable
the same way.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence

from reconciler.errors import StallError
from reconciler.flows import CanonicalFlow, FlowKey

from . import LiveSet, Progress

__all__ = [
    "Refused",
    "short",
    "moved",
    "Ticker",
    "ENV_VAR",
    "secret_from",
    "http_url",
    "DriverBase",
]

#: an environment variable name, as settings models validate them
ENV_VAR = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Refused(Exception):
    """One change could not be carried out; the message says why and what happens next."""


def short(oid: str | None) -> str:
    """A canonical id as messages show it (``nothing`` for an absent flow)."""
    return "nothing" if oid is None else oid[:12]


def moved(what: str, expect: str | None, found: str | None, *, where: str = "") -> str:
    """The message of a write refused because the live flow is no longer what the plan saw:
    ``<what> changed [<where>] since it was read …`` (``where``: "in the platform", "in Node-RED at …")."""
    changed = f"{what} changed {where}" if where else f"{what} changed"
    return (f"{changed} since it was read (expected {short(expect)}, found {short(found)}); "
            "left as it is, the next run re-checks it")


class Ticker:
    """Calls ``progress(done, total)`` every ``every`` items and at the end (never for ``None``)."""

    def __init__(self, progress: Progress | None, total: int, every: int = 200):
        self.progress, self.total, self.every = progress, total, every

    def __call__(self, done: int) -> None:
        if self.progress is not None and (done % self.every == 0 or done == self.total):
            self.progress(done, self.total)


def secret_from(environ: Mapping[str, str], var: str, *, where: str) -> str:
    """A credential from an environment variable: set, non-empty, no line breaks; never echoed."""
    value = (environ.get(var) or "").strip()
    if not value:
        raise StallError(f"{where}: environment variable ${var} is not set (or empty); it must hold the credential")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise StallError(f"{where}: ${var} holds a control character (a line break?)")
    return value


def http_url(value: str, *, credentials_hint: str) -> str:
    """Validate a platform's base URL (a settings validator): http(s), a host, ASCII, no credentials,
    no query or fragment. Returns it without a trailing slash."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if not value.isascii() or any(c.isspace() or ord(c) < 0x20 for c in value):
        raise ValueError("must be ASCII without spaces (percent-encode the path, use the IDNA form of the host)")
    if parts.username or parts.password:
        raise ValueError(f"must not carry credentials; {credentials_hint}")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or a fragment")
    try:
        parts.port
    except ValueError as exc:
        raise ValueError(str(exc)) from exc
    return value.rstrip("/")


_ENV_RE = re.compile(ENV_VAR)


class DriverBase:
    """Defaults for the parts of the :class:`~reconciler.drivers.Driver` port a platform may not need.

    ``load`` and ``reread`` read the whole environment again (a driver that can
    read one flow does better); ``close`` has nothing to release.
    """

    location: str = ""

    def export(self, progress: Progress | None = None) -> LiveSet:  # pragma: no cover - each driver has one
        raise NotImplementedError

    def load(self, key: FlowKey) -> CanonicalFlow | None:
        flow = self.export().flows.get(key)
        return flow if flow is not None and flow.data is not None else None

    def reread(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        live = self.export()
        return {k: (f.oid if (f := live.flows.get(k)) else None) for k in keys}

    def close(self) -> None:
        return None
