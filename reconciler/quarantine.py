"""Quarantined flows: a version in git that failed the platform's health gate is not applied again (pure).

Kept per environment at ``refs/reconciler/quarantine/<env>`` (a small JSON state
the store keeps, pushed to the remote like the applied markers, so every replica
and a restart see it): per flow, the rendered id of the version that failed, the
commit it came from, why, and when. A step whose desired version is the
quarantined one is held back (state ``quarantined``); a new commit that changes
the flow lifts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.flows import FlowKey
from reconciler.plan import Action, Plan, State, Step

__all__ = ["QUARANTINE_PREFIX", "Entry", "load", "dump", "hold_back", "lifted"]

QUARANTINE_PREFIX = "refs/reconciler/quarantine/"


@dataclass(frozen=True)
class Entry:
    """A flow version held back after it failed: which one, at which commit, why and when."""

    desired: str  # the rendered canonical id of the version that failed
    commit: str | None
    reason: str
    at: str  # RFC 3339

    def as_dict(self) -> dict[str, str | None]:
        return {"desired": self.desired, "commit": self.commit, "reason": self.reason, "at": self.at}


def load(state: Mapping | None) -> dict[FlowKey, Entry]:
    flows = (state or {}).get("flows", {})
    out = {}
    for key, e in flows.items():
        name, _, version = key.rpartition("@")
        out[FlowKey(name, version)] = Entry(e["desired"], e.get("commit"), e.get("reason", ""), e.get("at", ""))
    return out


def dump(entries: Mapping[FlowKey, Entry]) -> dict | None:
    return {"flows": {str(k): e.as_dict() for k, e in sorted(entries.items())}} if entries else None


def lifted(entries: Mapping[FlowKey, Entry], desired: Mapping[FlowKey, str]) -> set[FlowKey]:
    """Quarantined flows whose version in git is no longer the one that failed."""
    return {k for k, e in entries.items() if desired.get(k) != e.desired}


def hold_back(p: Plan, entries: Mapping[FlowKey, Entry]) -> Plan:
    """The plan with every step of a quarantined flow (same version in git) held back."""
    if not entries:
        return p
    steps = []
    for s in p.steps:
        e = entries.get(s.key)
        if e is not None and s.desired == e.desired:
            reason = (f"quarantined since {e.at}: {e.reason} (commit {(e.commit or '?')[:12]}); a new commit "
                      "changing the flow lifts it")
            s = Step(s.key, Action.BLOCKED, State.QUARANTINED, reason, s.base, s.desired, s.live)
        steps.append(s)
    return Plan(tuple(steps))
