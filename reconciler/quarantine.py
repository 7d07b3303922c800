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
from typing import TYPE_CHECKING

import structlog

from reconciler.flows import FlowKey
from reconciler.plan import Action, Plan, State, Step

if TYPE_CHECKING:
    from reconciler.envconfig import EnvironmentConfig
    from reconciler.gitstore import GitStore
    from reconciler.outcome import Snapshot

log = structlog.get_logger("reconciler.engine")

__all__ = ["QUARANTINE_PREFIX", "Entry", "load", "dump", "hold_back", "lifted", "record", "lift"]

QUARANTINE_PREFIX = "refs/reconciler/quarantine/"


@dataclass(frozen=True)
class Entry:
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


def record(store: "GitStore", env: "EnvironmentConfig", snap: "Snapshot", p: Plan, tip: str | None,
           unhealthy: Mapping[FlowKey, str]) -> None:
    """Quarantine ``tip`` for the flows that were unhealthy after its deploy (kept in the repository's state)."""
    from datetime import datetime, timezone

    desired = {s.key: s.desired for s in p.steps}
    at = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    entries = dict(snap.quarantine)
    for key, why in unhealthy.items():
        entries[key] = Entry(desired[key] or "", tip, why, at)
        log.error("flow unhealthy after the deploy; commit quarantined for it", environment=env.name,
                  flow=str(key), commit=tip, reason=why,
                  action="restored" if env.on_unhealthy == "restore" else "reported")
    store.write_state(QUARANTINE_PREFIX + env.name, dump(entries),
                      f"reconciler: quarantine {len(unhealthy)} flow(s) of {env.name} at {(tip or '')[:12]}\n")


def lift(store: "GitStore", env: "EnvironmentConfig", snap: "Snapshot") -> None:
    """Lift the quarantine of the flows whose version in git is new since they were quarantined."""
    gone = lifted(snap.quarantine, snap.desired_ids)
    if not gone:
        return
    entries = {k: e for k, e in snap.quarantine.items() if k not in gone}
    store.write_state(QUARANTINE_PREFIX + env.name, dump(entries),
                      f"reconciler: lift the quarantine of {len(gone)} flow(s) of {env.name}\n")
    for key in sorted(gone):
        log.info("quarantine lifted: a new version is in git", environment=env.name, flow=str(key))
