"""The three-way reconcile decision (pure): ``plan(A, D, L, policy) -> Plan``.

For every flow key, ``A`` is its content at the applied marker (the base),
``D`` at the tip of the environment's branch (desired), ``L`` in the
environment (live). Values are canonical blob ids; ``None`` means absent, and
absent is a value like any other:

=========  =========  =========================  ======================================
D vs A     L vs A     meaning                    action
=========  =========  =========================  ======================================
same       same       in sync                    none
changed    same       change landed in git       import D (override) / delete (prune)
same       changed    drift (edited in the UI)   restore: import D · adopt: commit L ·
                                                 report: mark drifted
changed    changed    both agree (L = D)         advance the marker
changed    changed    conflict (L != D)          report, touch nothing
=========  =========  =========================  ======================================

Nothing here does I/O; the applier (:mod:`reconciler.engine`) carries a plan out.
"""

from __future__ import annotations

import enum
import functools
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Literal, NamedTuple

from reconciler.flows import FlowKey

__all__ = ["Action", "State", "Policy", "Step", "Plan", "plan", "RERENDERED"]

#: the reason of an import whose only cause is a parameter or secret value changed (:mod:`reconciler.rerender`)
RERENDERED = "a parameter or secret value changed since it was applied"

DriftPolicy = Literal["restore", "adopt", "report"]


class Action(str, enum.Enum):
    NONE = "none"  # in sync
    IMPORT = "import"  # write D into the environment
    DELETE = "delete"  # remove the flow from the environment
    ADOPT = "adopt"  # commit L to the branch (a deletion when L is absent)
    ADVANCE = "advance"  # both sides agree: move the base
    REPORT = "report"  # drift left as it is, by policy
    BLOCKED = "blocked"  # a change the environment's policy does not allow (prune/override off)
    CONFLICT = "conflict"  # both changed differently
    INVALID = "invalid"  # the flow cannot be used (bad file in git or in the environment)
    UNKNOWN = "unknown"  # the environment could not be read completely; absence proves nothing


class State(str, enum.Enum):
    IN_SYNC = "in_sync"
    PENDING = "pending"
    DRIFTED = "drifted"
    CONFLICT = "conflict"
    INVALID = "invalid"
    # Never decided here: the engine holds a step back when the environment says so.
    QUARANTINED = "quarantined"  # its version in git failed the platform's health check
    SUSPENDED = "suspended"  # the environment (or the flow) is suspended by a person


@dataclass(frozen=True)
class Policy:
    """The environment's settings a plan depends on: drift handling, pruning, override."""

    drift: DriftPolicy = "report"
    prune: bool = False
    override: bool = True


class Step(NamedTuple):
    """What to do with one flow, and why (a named tuple: plans have one per flow)."""

    key: FlowKey
    action: Action
    state: State
    reason: str
    base: str | None
    desired: str | None
    live: str | None

    @property
    def next_base(self) -> str | None:
        """The base value once this step has been carried out."""
        if self.action in (Action.IMPORT, Action.ADVANCE, Action.NONE):
            return self.desired if self.action != Action.NONE else self.base
        if self.action == Action.DELETE:
            return None
        if self.action == Action.ADOPT:
            return self.live
        return self.base

    @property
    def overwrites_live(self) -> bool:
        """True when carrying the step out replaces or removes live content."""
        return self.action in (Action.IMPORT, Action.DELETE) and self.live is not None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.key.name,
            "version": self.key.version,
            "action": self.action.value,
            "state": self.state.value,
            "reason": self.reason,
            "base": self.base,
            "desired": self.desired,
            "live": self.live,
        }


@dataclass(frozen=True)
class Plan:
    """What to do with the environment's flows: one step per flow."""

    steps: tuple[Step, ...]

    @functools.cached_property
    def notable(self) -> tuple[Step, ...]:
        """The steps that are not "in sync, nothing to do", in key order: in a service's steady state
        a handful of 10,000, so what a run reports is counted from these (found once per plan)."""
        none, in_sync = Action.NONE, State.IN_SYNC
        return tuple(s for s in self.steps if s.action is not none or s.state is not in_sync)

    @property
    def changes(self) -> tuple[Step, ...]:
        """Steps that change the environment, the branch or the marker."""
        return tuple(s for s in self.notable if s.action in _CHANGING)

    def counts(self) -> dict[str, int]:
        notable = self.notable
        c = Counter(s.state for s in notable)
        c[State.IN_SYNC] += len(self.steps) - len(notable)
        return {state.value: c.get(state, 0) for state in State}

    def with_action(self, *actions: Action) -> tuple[Step, ...]:
        return tuple(s for s in (self.steps if Action.NONE in actions else self.notable) if s.action in actions)


_CHANGING = frozenset({Action.IMPORT, Action.DELETE, Action.ADOPT, Action.ADVANCE})


def plan(
    base: Mapping[FlowKey, str],
    desired: Mapping[FlowKey, str],
    live: Mapping[FlowKey, str],
    policy: Policy,
    *,
    invalid: Mapping[FlowKey, str] | None = None,
    live_complete: bool = True,
) -> Plan:
    """Decide, per flow, what reconciling the environment means.

    ``invalid`` maps keys whose git or live document cannot be used to the
    reason; they are left alone. When ``live_complete`` is false (some live
    documents could not be read), a flow missing from ``live`` may be one of
    the unreadable ones, so its absence is not treated as a deletion.
    """
    invalid = invalid or {}
    get_a, get_d, get_l = base.get, desired.get, live.get
    # The common case: a key with one id on all three sides, not invalid, is in sync (its step made at C speed).
    same = {k: a for k, a in base.items() if get_d(k) == a and get_l(k) == a}
    for k in same.keys() & invalid.keys():
        del same[k]
    extra = (desired.keys() | live.keys() | invalid.keys()) - base.keys()
    keys = sorted([*base, *extra])  # base's order is mostly key order already: a sort of runs, not of a set
    ids = list(same.values())
    by_key = dict(zip(same, map(_new_step, zip(same, repeat(Action.NONE), repeat(State.IN_SYNC), repeat("in sync"),
                                                  ids, ids, ids))))
    for k in (base.keys() - same.keys()) | extra:
        by_key[k] = _decide(k, get_a(k), get_d(k), get_l(k), policy, invalid.get(k), live_complete)
    return Plan(tuple(map(by_key.__getitem__, keys)))


_new_step = functools.partial(tuple.__new__, Step)


def _decide(
    key: FlowKey,
    a: str | None,
    d: str | None,
    l: str | None,  # noqa: E741 - the table's own letter
    policy: Policy,
    invalid: str | None,
    live_complete: bool,
) -> Step:
    def step(action: Action, state: State, reason: str) -> Step:
        return Step(key, action, state, reason, a, d, l)

    if invalid is not None:
        return step(Action.INVALID, State.INVALID, invalid)
    if l is None and a is not None and not live_complete:
        return step(
            Action.UNKNOWN,
            State.PENDING,
            "not found in the environment, which has unreadable files; left alone until they are fixed",
        )

    d_changed, l_changed = d != a, l != a
    if not d_changed and not l_changed:
        return step(Action.NONE, State.IN_SYNC, "in sync")
    if d_changed and l_changed:
        if l == d:
            return step(Action.ADVANCE, State.IN_SYNC, "git and the environment agree")
        return step(
            Action.CONFLICT,
            State.CONFLICT,
            "changed in git and in the environment differently; resolve by hand "
            "(commit the environment's version to the branch, or restore git's)",
        )
    if d_changed:
        return _git_change(step, d, l, policy)
    return _drift(step, d, l, policy)


def _git_change(step, d, l, policy: Policy) -> Step:  # noqa: E741
    if d is None:
        if not policy.prune:
            return step(Action.BLOCKED, State.PENDING, "deleted in git; prune is off, so it stays in the environment")
        return step(Action.DELETE, State.PENDING, "deleted in git")
    if l is not None and not policy.override:
        return step(Action.BLOCKED, State.PENDING, "changed in git; override is off, so the existing flow stays")
    return step(Action.IMPORT, State.PENDING, "added in git" if l is None else "changed in git")


def _drift(step, d, l, policy: Policy) -> Step:  # noqa: E741
    what = "added in the environment" if d is None else (
        "deleted in the environment" if l is None else "changed in the environment"
    )
    if policy.drift == "adopt":
        return step(Action.ADOPT, State.DRIFTED, f"{what}; adopting it into git")
    if policy.drift == "restore":
        if d is None:
            if not policy.prune:
                return step(Action.REPORT, State.DRIFTED, f"{what}; restoring would delete it but prune is off")
            return step(Action.DELETE, State.DRIFTED, f"{what}; restoring git's state (delete)")
        if l is not None and not policy.override:
            return step(Action.REPORT, State.DRIFTED, f"{what}; restoring would replace it but override is off")
        return step(Action.IMPORT, State.DRIFTED, f"{what}; restoring git's version")
    return step(Action.REPORT, State.DRIFTED, f"{what}; drift policy is report")
