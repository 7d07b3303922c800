"""Fakes of *our own* ports, for tests of the engine and the service (never of git or a platform).

- :class:`MemoryDriver`: a whole platform in memory, implementing the complete
  :class:`~reconciler.drivers.Driver` port with the guarantees every driver
  gives (writes guarded by the live content the plan saw; per-flow refusals;
  a platform that is down raises :class:`RetryableError`) and a health gate
  (:class:`~reconciler.drivers.HealthChecked`), plus hooks a test uses to play
  the platform's people and failures.
- :class:`Wrapped`: a driver that forwards every port method to another one,
  explicitly (no ``__getattr__``), as the base of a test's hooked driver.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from reconciler.canonical import Rules, parse_json
from reconciler.drivers import (Change, Driver, HealthChecked, Indexed, LiveCollector, LiveSet, Progress, Recoverable,
                                Remembering, Rendering, Watchable, WriteOnly)
from reconciler.drivers._common import DriverBase, moved
from reconciler.errors import RetryableError
from reconciler.flows import CanonicalFlow, FlowKey, Identity, flow_from_doc

__all__ = ["MemoryDriver", "Wrapped"]


class MemoryDriver(DriverBase):
    """Flows held as documents by ``(name, version)``; what a platform's UI does is :meth:`put` / :meth:`remove`.

    Test hooks: ``down`` (a message: export and apply raise RetryableError),
    ``refuse`` (keys the platform refuses to import or delete), ``rewrite`` (a
    function applied to each imported document: a platform that changes flows on
    import), ``before_apply`` (called once with the batch, before anything is
    written: an edit landing during a sync). ``applied`` records every batch.
    """

    def __init__(self, docs: Iterable[Mapping[str, Any]] = (), *, identity: Identity = Identity(),
                 rules: Rules = Rules(), location: str = "memory"):
        self.identity, self.rules, self.location = identity, rules, location
        self._docs: dict[FlowKey, dict[str, Any]] = {}
        self.down: str | None = None
        self.refuse: set[FlowKey] = set()
        self.rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.before_apply: Callable[[Sequence[Change]], None] | None = None
        self.unhealthy: dict[FlowKey, str] = {}  # the health gate's verdict on these flows after a write
        self.health_asked: list[tuple[FlowKey, ...]] = []
        self.applied: list[tuple[Change, ...]] = []
        self.closed = False
        for doc in docs:
            self.put(doc)

    # -- the platform's side -------------------------------------------------------------

    def put(self, doc: Mapping[str, Any]) -> FlowKey:
        """Create or replace a flow, as someone in the platform's UI would."""
        key = self.identity.key_of(dict(doc))
        self._docs[key] = copy.deepcopy(dict(doc))
        return key

    def remove(self, key: FlowKey) -> None:
        self._docs.pop(key, None)

    def doc(self, key: FlowKey) -> dict[str, Any] | None:
        got = self._docs.get(key)
        return copy.deepcopy(got) if got is not None else None

    @property
    def keys(self) -> set[FlowKey]:
        return set(self._docs)

    # -- the port ------------------------------------------------------------------------

    def _check_up(self) -> None:
        if self.down is not None:
            raise RetryableError(f"{self.location}: {self.down}; retrying later")

    def _canonical(self, key: FlowKey) -> CanonicalFlow | None:
        doc = self._docs.get(key)
        if doc is None:
            return None
        got = flow_from_doc(copy.deepcopy(doc), self.identity, self.rules, where=f"{self.location}/{key}")
        return got if isinstance(got, CanonicalFlow) else None

    def export(self, progress: Progress | None = None) -> LiveSet:
        self._check_up()
        collect = LiveCollector(self.identity, self.rules)
        for key in sorted(self._docs):
            collect.add(copy.deepcopy(self._docs[key]), f"{self.location}/{key}")
        if progress is not None:
            progress(len(self._docs), len(self._docs))
        return collect.result()

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> dict[FlowKey, str]:
        self._check_up()
        batch = tuple(changes)
        self.applied.append(batch)
        if self.before_apply is not None:
            hook, self.before_apply = self.before_apply, None
            hook(batch)
        failed: dict[FlowKey, str] = {}
        for change in batch:
            current = self._canonical(change.key)
            found = current.oid if current is not None else None
            if found != change.expect:
                failed[change.key] = moved(f"{change.key} in {self.location}", change.expect, found)
            elif change.key in self.refuse:
                failed[change.key] = "refused by the platform"
            elif change.data is None:
                self._docs.pop(change.key, None)
            else:
                doc = parse_json(change.data)
                self._docs[change.key] = self.rewrite(doc) if self.rewrite is not None else doc
        if progress is not None:
            progress(len(batch), len(batch))
        return failed

    def load(self, key: FlowKey) -> CanonicalFlow | None:
        self._check_up()
        return self._canonical(key)

    def check_health(self, keys: Sequence[FlowKey], timeout: float) -> dict[FlowKey, str]:
        self.health_asked.append(tuple(keys))
        return {k: self.unhealthy[k] for k in keys if k in self.unhealthy}

    def reread(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        self._check_up()
        return {k: (f.oid if (f := self._canonical(k)) is not None else None) for k in keys}

    def close(self) -> None:
        self.closed = True


class _Watch:
    def watch_paths(self):
        return self.inner.watch_paths()

    def is_flow_file(self, path):
        return self.inner.is_flow_file(path)

    def watched_by(self, changed):
        return self.inner.watched_by(changed)

    def trust_watch(self, trust=True):
        return self.inner.trust_watch(trust)


class _Index:
    def keep_index(self, path):
        return self.inner.keep_index(path)


class _Health:
    def check_health(self, keys, timeout):
        return self.inner.check_health(keys, timeout)


class _Memory:
    def recall(self, memory):
        return self.inner.recall(memory)

    def memory(self):
        return self.inner.memory()


class _Render:
    @property
    def one_way(self):
        return self.inner.one_way

    def prepare(self, secrets):
        return self.inner.prepare(secrets)

    def present(self, flow, where):
        return self.inner.present(flow, where)


class _WriteOnly:
    def carry_write_only(self, live, git):
        return self.inner.carry_write_only(live, git)


#: the optional capabilities a wrapper forwards, each only when the wrapped driver has it (the engine
#: tells capabilities apart with isinstance, so a wrapper must not claim one its driver lacks)
_FORWARDERS = ((Watchable, _Watch), (Indexed, _Index), (HealthChecked, _Health), (Remembering, _Memory),
               (Rendering, _Render), (WriteOnly, _WriteOnly))
_CLASSES: dict[tuple[type, ...], type] = {}


class Wrapped:
    """Forwards the whole port to ``inner`` and the capabilities ``inner`` has (health gate, memory,
    watch, index, rendering, write-only fields); subclass it and override what a test hooks."""

    def __new__(cls, inner: Driver, *args: Any, **kwargs: Any):
        mixins = tuple(fwd for proto, fwd in _FORWARDERS if isinstance(inner, proto))
        if not mixins:
            return super().__new__(cls)
        key = (cls, *mixins)
        if key not in _CLASSES:
            _CLASSES[key] = type(cls.__name__, (cls, *mixins), {"__module__": cls.__module__})
        return super().__new__(_CLASSES[key])

    def __init__(self, inner: Driver):
        self.inner = inner
        self.location = inner.location

    def export(self, progress: Progress | None = None) -> LiveSet:
        return self.inner.export(progress)

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> dict[FlowKey, str]:
        return self.inner.apply(changes, progress)

    def load(self, key: FlowKey) -> CanonicalFlow | None:
        return self.inner.load(key)

    def reread(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        return self.inner.reread(keys)

    def close(self) -> None:
        self.inner.close()

    def recover(self) -> None:
        if isinstance(self.inner, Recoverable):
            self.inner.recover()
