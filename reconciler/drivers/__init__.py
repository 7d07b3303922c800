"""Drivers: the only code that talks to a platform.

A driver lists and exports the live flows of one environment (already in
canonical form), and applies a batch of changes (import with override, or
delete). Each change carries the canonical blob id of the live content the plan
saw (``expect``); a driver refuses to overwrite or delete a flow whose live
content no longer matches, so an edit made in the platform during a sync is
never clobbered: the next run sees it as drift or a conflict.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from reconciler.canonical import Rules
from reconciler.errors import Problem
from reconciler.flows import CanonicalFlow, FlowKey, Identity, flow_from_doc

__all__ = ["Change", "LiveSet", "Driver", "Recoverable", "Watchable", "Indexed", "IndexedLater", "HealthChecked", "Remembering", "Rendering",
           "Preflighted", "WriteOnly", "presenter", "Progress", "LiveCollector", "DRIVERS"]

#: driver name -> the module holding its settings model as ``SETTINGS`` (imported when a config names it)
DRIVERS = {
    "directory": "reconciler.drivers.directory",
    "node-red": "reconciler.drivers.node_red",
    "http": "reconciler.drivers.http",
    "flink-sql": "reconciler.drivers.flink_sql",
}

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Change:
    """Set a flow to ``data`` (canonical bytes) or delete it (``data is None``).

    ``expect`` is the canonical blob id of the live flow the plan saw, None when
    the plan saw no live flow (then the flow must still be absent). ``oid``: the
    blob id of ``data`` where the caller has just computed it from these very
    bytes (a driver that needs it need not hash them again), else None.
    """

    key: FlowKey
    data: bytes | None
    expect: str | None
    oid: str | None = None


@dataclass(frozen=True)
class LiveSet:
    """What an environment holds, in canonical form.

    ``invalid``: keys seen more than once (or otherwise unusable) -> reason.
    ``complete``: False when some entry could not be read, so a flow missing
    from ``flows`` may exist in the platform after all.
    """

    flows: Mapping[FlowKey, CanonicalFlow]
    where: Mapping[FlowKey, str] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    invalid: Mapping[FlowKey, str] = field(default_factory=dict)
    complete: bool = True

    def oids(self) -> dict[FlowKey, str]:
        """key -> canonical blob id; the same dict object on every call (do not modify it)."""
        return self._oids

    @functools.cached_property
    def _oids(self) -> dict[FlowKey, str]:
        return {k: f.oid for k, f in self.flows.items()}


class Driver(Protocol):
    """A platform, as the reconciler sees it: everything the engine and the service call.

    :class:`reconciler.drivers._common.DriverBase` gives working defaults for
    ``load``, ``reread`` and ``close``; optional abilities are the capability
    protocols below, checked with ``isinstance``, never with ``getattr``.
    """

    #: human name of the environment's location (a folder, a URL), for messages
    location: str

    def export(self, progress: Progress | None = None) -> LiveSet:
        """Read every live flow. Raises RetryableError when the platform is unreachable."""
        ...

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> dict[FlowKey, str]:
        """Carry out changes; returns the ones that failed, with the reason. Never raises for one flow."""
        ...

    def load(self, key: FlowKey) -> CanonicalFlow | None:
        """One live flow with its canonical bytes (snapshots may keep ids only); None if gone.
        The caller compares its id with the one it planned with."""
        ...

    def reread(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        """Canonical ids of just these flows as the platform holds them now (read-after-write)."""
        ...

    def close(self) -> None:
        """Release connections; the driver is not used afterwards."""
        ...


@runtime_checkable
class Recoverable(Protocol):
    """A driver whose writes can leave something behind when the process dies mid-write."""

    def recover(self) -> None:
        """Sort out a crashed run's leftovers; the engine calls it under the environment's lock,
        before anything reads the environment."""
        ...


@runtime_checkable
class Watchable(Protocol):
    """A driver whose environment can be watched on the file system (the service's folder watch)."""

    def watch_paths(self) -> tuple[Path, ...]:
        """Folders whose changes are changes of the environment."""
        ...

    def is_flow_file(self, path: Path) -> bool:
        """True when a change to ``path`` (in a watched folder) may change a flow."""
        ...

    def watched_by(self, changed: Callable[[], frozenset[str] | None]) -> None:
        """The service's watch of those folders: ``changed()`` names the flow files it saw change
        since it was last asked (names in a watched folder), or is None when it cannot say."""
        ...

    def trust_watch(self, trust: bool = True) -> None:
        """May the next export rely on the watch (a run caused by a push or by the watch's own
        events) and look only at the files it saw change, instead of scanning?"""
        ...


@runtime_checkable
class Indexed(Protocol):
    """A driver that keeps what it read for the next process (the directory driver's stat index), so
    a fresh command reads only what changed; the engine says where, beside the repository."""

    def keep_index(self, path: Path) -> None:
        """Keep the index in this file (never in git's history); called before the first export."""
        ...


@runtime_checkable
class IndexedLater(Protocol):
    """An :class:`Indexed` driver that can write its index when told rather than after every export
    (the service writes it when idle, off a push's latency)."""

    def save_index_later(self) -> None:
        """From now on an export does not write the index; :meth:`save_index` does."""
        ...

    def save_index(self) -> None:
        """Write the index if an export changed it since it was last written."""
        ...


@runtime_checkable
class Preflighted(Protocol):
    """A driver that can say, without reading its flows, that its environment is there to read (a folder
    exists): asked before a first export creates the repository, so a mistyped path leaves nothing behind."""

    def preflight(self) -> None:
        """Raise the error a read would (naming what is missing and how to fix it); return when it is there."""
        ...


@runtime_checkable
class HealthChecked(Protocol):
    """A platform that can say whether what was just written runs (Node-RED's runtime state, a health URL)."""

    def check_health(self, keys: Sequence[FlowKey], timeout: float) -> dict[FlowKey, str]:
        """After a write: wait (at most ``timeout`` seconds) until the platform runs these flows as written;
        returns the ones that are not healthy, with the platform's reason ({} when all are)."""
        ...


@runtime_checkable
class Remembering(Protocol):
    """A driver that keeps a small memory of its own in git (``refs/reconciler/driver/<env>``), for what the
    platform cannot say itself (e.g. a hash of the credentials last sent to Node-RED, which never returns them)."""

    def recall(self, memory: Mapping | None) -> None:
        """Called with the memory kept so far (None at first), before the environment is read."""
        ...

    def memory(self) -> Mapping | None:
        """What to keep now (called after every apply; None keeps nothing)."""
        ...


@runtime_checkable
class Rendering(Protocol):
    """A driver whose environment holds something rendered from the flows, not the flows themselves (a
    folder of Flink SQL scripts rendered from event-processing flows). Rendering is one-way: what it holds
    cannot be imported into git, so an environment of such a driver never adopts and is never exported.

    The engine compares the flows in the driver's form: it hands each flow read from git (placeholders
    rendered) to :meth:`present`, and compares the result with what :meth:`~Driver.export` reports; a
    :class:`~Change` then carries the presented bytes, which the driver writes in its own form.
    """

    #: why this environment's content cannot be taken into git (the message of a refused export or adopt)
    one_way: str

    def prepare(self, secrets: Mapping[str, str]) -> None:
        """The environment's secrets, before a read: what the driver holds contains them, and the form
        it compares and saves to git (drift) must not."""
        ...

    def present(self, flow: CanonicalFlow, where: str) -> CanonicalFlow | Problem:
        """A flow from git in the form the driver's export reports; a Problem (naming ``where``) when the
        flow cannot be rendered: it never reaches the environment."""
        ...


def presenter(driver: "Driver", secrets: Mapping[str, str]) -> Callable[[CanonicalFlow | Problem, str], CanonicalFlow | Problem]:
    """The flows from git in the form ``driver`` compares (:class:`Rendering`); as they are for the others."""
    if not isinstance(driver, Rendering):
        return lambda got, where: got
    driver.prepare(secrets)
    return lambda got, where: driver.present(got, where) if isinstance(got, CanonicalFlow) else got


@runtime_checkable
class WriteOnly(Protocol):
    """A platform that takes some fields on import and never returns them (Node-RED's credentials). What
    git keeps of a live flow (an adopt, an export, a drift save) takes those fields from git's version."""

    def carry_write_only(self, live: Any, git: Any) -> Any:
        """The live document with git's write-only parts (placeholders) put back where it has none;
        ``git`` is the flow as the branch holds it."""
        ...


class LiveCollector:
    """Builds a :class:`LiveSet` from documents, spotting duplicate keys."""

    def __init__(self, identity: Identity, rules: Rules):
        self.identity, self.rules = identity, rules
        self.flows: dict[FlowKey, CanonicalFlow] = {}
        self.where: dict[FlowKey, str] = {}
        self.problems: list[Problem] = []
        self.invalid: dict[FlowKey, str] = {}
        self.complete = True

    def add(self, doc: object, where: str) -> CanonicalFlow | Problem:
        """Canonicalise a document and add it; returns the flow, or the problem with it."""
        got = flow_from_doc(doc, self.identity, self.rules, where=where)
        if isinstance(got, Problem):
            self.problem(got)
        else:
            self.add_flow(got, where)
        return got

    def add_flow(self, got: CanonicalFlow, where: str) -> CanonicalFlow | None:
        """Add an already canonical flow (e.g. from a cache)."""
        if got.key in self.where:
            first = self.where[got.key]
            self.invalid[got.key] = f"{where} and {first} both hold {got.key}; remove one of them"
            self.problems.append(Problem(where, f"duplicate of {first}: both hold {got.key}", flow=str(got.key)))
            return None
        self.flows[got.key] = got
        self.where[got.key] = where
        return got

    def problem(self, problem: Problem) -> None:
        self.problems.append(problem)
        self.complete = False

    def result(self) -> LiveSet:
        for key in self.invalid:
            self.flows.pop(key, None)
        return LiveSet(dict(self.flows), dict(self.where), tuple(self.problems), dict(self.invalid), self.complete)
