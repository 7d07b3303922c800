"""What the last read and plan of an environment derived, so the next one costs what changed (pure).

A folder of a commit is known by its tree id: the same tree id means the same
flows, so its derivation (canonical ids, problems) is reused whole; another
tree is derived again only for the keys whose blob id changed. The plan is
decided again only for the keys whose inputs (base, desired, live, invalid)
changed. Nothing here reads git or a platform: the ``read`` callables do.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.errors import Problem
from reconciler.flows import CanonicalFlow, FlowKey, Patched
from reconciler.plan import Plan, Policy, Step, plan

__all__ = ["Derived", "derive", "PlanInputs", "Memo", "Patched", "changed_keys", "replan"]

ReadFn = Callable[[FlowKey, str], "CanonicalFlow | Problem"]


@dataclass(frozen=True)
class Derived:
    """Canonical flows derived from one folder's ``key -> blob id`` mapping."""

    tree: str | None  # the folder's tree id (None: no folder)
    source: Mapping[FlowKey, str]  # key -> git blob id
    flows: Mapping[FlowKey, CanonicalFlow]  # the valid ones (ids only)
    ids: Mapping[FlowKey, str]  # comparison ids: rendered canonical ids, the blob id of an unreadable one
    problems: Mapping[FlowKey, Problem]


def derive(tree: str | None, source: Mapping[FlowKey, str], prev: Derived | None, read: ReadFn,
           donor: Derived | None = None) -> Derived:
    """Derive canonical flows, reading only keys whose blob id changed since ``prev``.

    ``donor`` is another derivation (the tip's, for the marker) whose results are
    reused for identical blobs.
    """
    if prev is not None and tree is not None and prev.tree == tree:
        return prev
    if prev is None:
        flows: dict[FlowKey, CanonicalFlow] = {}
        ids: dict[FlowKey, str] = Patched()
        problems: dict[FlowKey, Problem] = {}
        changed: Any = source.keys()
    else:
        changed = changed_keys(source, prev.source)
        flows, problems = dict(prev.flows), dict(prev.problems)
        ids = Patched(prev.ids, changed)
        for k in changed:
            flows.pop(k, None)
            ids.pop(k, None)
            problems.pop(k, None)
    for key in changed:
        oid = source.get(key)
        if oid is None:
            continue
        got: CanonicalFlow | Problem | None = None
        if donor is not None and donor.source.get(key) == oid:
            got = donor.flows.get(key) or donor.problems.get(key)
        if got is None:
            got = read(key, oid)
        if isinstance(got, Problem):
            problems[key] = got
            ids[key] = oid  # an unreadable flow still differs from anything valid
        else:
            ids[key] = got.oid
            flows[key] = got.light()
    return Derived(tree, source, flows, ids, problems)


def changed_keys(new: Mapping[FlowKey, Any], old: Mapping[FlowKey, Any]) -> set[FlowKey]:
    """Keys added, removed or with another value (dict lookups: no tuple hashing of items); a
    superset of them when ``new`` was :class:`Patched` from ``old``."""
    if new is old:
        return set()
    if type(new) is Patched and new.patched_from(old):
        return set(new.changed)
    get = old.get
    changed = {k for k, v in new.items() if get(k) != v}
    if len(new) != len(old) or changed:
        changed.update(k for k in old if k not in new)
    return changed


@dataclass(frozen=True)
class PlanInputs:
    """What one plan was made from: the three sides' ids, the invalid flows and the policy."""

    base: Mapping[FlowKey, str]
    desired: Mapping[FlowKey, str]
    live: Mapping[FlowKey, str]
    invalid: Mapping[FlowKey, str]
    policy: Policy
    live_complete: bool

    def changed_since(self, old: "PlanInputs") -> set[FlowKey]:
        changed: set[FlowKey] = set()
        for new_map, old_map in ((self.base, old.base), (self.desired, old.desired), (self.live, old.live),
                                 (self.invalid, old.invalid)):
            changed |= changed_keys(new_map, old_map)
        return changed


@dataclass(frozen=True)
class Memo:
    """What one environment's last read and plan derived, and from what settings (the fingerprint
    of its parameters and secrets: when it changes, everything is rendered again)."""

    fingerprint: str
    desired: Derived
    base: Derived
    planned: tuple[PlanInputs, Mapping[FlowKey, Step]] | None = field(default=None)

    def with_plan(self, inputs: PlanInputs, steps: Mapping[FlowKey, Step]) -> "Memo":
        return replace(self, planned=(inputs, steps))


_STEP_KEY = operator.itemgetter(0)  # a Step's key


def _only(mapping: Mapping[FlowKey, str], keys: set[FlowKey]) -> dict[FlowKey, str]:
    return {k: mapping[k] for k in keys if k in mapping}


def replan(inputs: PlanInputs, last: tuple[PlanInputs, Mapping[FlowKey, Step]] | None) -> tuple[Plan, dict[FlowKey, Step]]:
    """The plan for ``inputs``, deciding again only the keys whose inputs changed since ``last``."""
    if last is not None and last[0].policy == inputs.policy and last[0].live_complete == inputs.live_complete:
        changed = inputs.changed_since(last[0])
        sub = plan(*(_only(m, changed) for m in (inputs.base, inputs.desired, inputs.live)), inputs.policy,
                   invalid=_only(inputs.invalid, changed), live_complete=inputs.live_complete)
        new = {s.key: s for s in sub.steps}
        steps = dict(last[1])  # in key order; a key decided again keeps its place
        added = False
        for key in changed:
            step = new.get(key)
            if step is None:
                steps.pop(key, None)
            else:
                added = added or key not in steps
                steps[key] = step
        if added:
            steps = dict(sorted(steps.items()))
    else:
        full = plan(inputs.base, inputs.desired, inputs.live, inputs.policy, invalid=inputs.invalid,
                    live_complete=inputs.live_complete)
        return full, dict(zip(map(_STEP_KEY, full.steps), full.steps))  # already in key order
    return Plan(tuple(steps.values())), steps
