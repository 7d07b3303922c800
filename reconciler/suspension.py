"""Suspended environments and flows: read and planned as always, nothing imported, deleted or adopted (pure).

A person suspends an environment (or some of its flows) for an incident:
``reconciler suspend ENV [--flow NAME[@VERSION]]... --reason …``, or
``POST /api/v1/environments/<env>/suspend``. The state is kept at
``refs/reconciler/suspend/<env>`` (the store's small JSON states, pushed to the
remote like the applied markers, so every replica and a restart see it): who,
when, why. While suspended, drift is still detected and plans still made; the
steps that would change something are held back (state ``suspended``, the
reason saying since when, by whom and why); resuming applies what is pending.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.flows import FlowKey
from reconciler.plan import Action, Plan, State, Step

__all__ = ["SUSPEND_PREFIX", "Hold", "Suspension", "load", "dump", "hold_back", "suspend", "resume"]

SUSPEND_PREFIX = "refs/reconciler/suspend/"


@dataclass(frozen=True)
class Hold:
    """Who suspended the environment (or a flow), when, and why."""

    by: str
    at: str  # RFC 3339
    reason: str

    def describe(self) -> str:
        return f"suspended since {self.at} by {self.by}" + (f": {self.reason}" if self.reason else "")

    def as_dict(self) -> dict[str, str]:
        return {"by": self.by, "at": self.at, "reason": self.reason}


@dataclass(frozen=True)
class Suspension:
    """An environment's suspensions: of the whole environment and of single flows."""

    environment: Hold | None = None
    flows: Mapping[str, Hold] = None  # type: ignore[assignment]  # "name" (every version) or "name@version"

    def __post_init__(self) -> None:
        if self.flows is None:
            object.__setattr__(self, "flows", {})

    def __bool__(self) -> bool:
        return self.environment is not None or bool(self.flows)

    def hold_of(self, key: FlowKey) -> Hold | None:
        return self.environment or self.flows.get(str(key)) or self.flows.get(key.name)


def _hold(d: Mapping) -> Hold:
    return Hold(str(d.get("by", "")), str(d.get("at", "")), str(d.get("reason", "")))


def load(state: Mapping | None) -> Suspension:
    if not state:
        return Suspension()
    env = state.get("environment")
    return Suspension(_hold(env) if env else None, {k: _hold(v) for k, v in (state.get("flows") or {}).items()})


def dump(s: Suspension) -> dict | None:
    if not s:
        return None
    return {"environment": s.environment.as_dict() if s.environment else None,
            "flows": {k: h.as_dict() for k, h in sorted(s.flows.items())}}


def suspend(s: Suspension, hold: Hold, flows: Sequence[str] = ()) -> Suspension:
    """``s`` with the environment (no ``flows``) or these flows (``name`` or ``name@version``) suspended."""
    if not flows:
        return Suspension(hold, s.flows)
    return Suspension(s.environment, {**s.flows, **{f: hold for f in flows}})


def resume(s: Suspension, flows: Sequence[str] = ()) -> Suspension:
    """``s`` with the environment (and every flow) resumed, or only these flows."""
    if not flows:
        return Suspension()
    return Suspension(s.environment, {k: h for k, h in s.flows.items() if k not in flows})


_HELD = frozenset({Action.IMPORT, Action.DELETE, Action.ADOPT})  # advancing the marker changes nothing


def hold_back(p: Plan, s: Suspension, *, extra: str | None = None) -> Plan:
    """The plan with every changing step of a suspended flow held back (state ``suspended``).

    ``extra``: a reason that holds back every changing step (a closed sync window), kept in its state.
    """
    if not s and extra is None:
        return p
    steps = []
    for step in p.steps:
        if step.action in _HELD:
            hold = s.hold_of(step.key)
            if hold is not None:
                step = Step(step.key, Action.BLOCKED, State.SUSPENDED, f"{step.reason}; held: {hold.describe()}",
                            step.base, step.desired, step.live)
            elif extra is not None:
                step = Step(step.key, Action.BLOCKED, step.state, f"{step.reason}; held: {extra}",
                            step.base, step.desired, step.live)
        steps.append(step)
    return Plan(tuple(steps))
