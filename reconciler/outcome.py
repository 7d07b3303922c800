"""What a reconcile read and did, as frozen data: :class:`Snapshot`, :class:`Outcome`, :class:`RunResult`.

The CLI, the service, the metrics and the status page all render these; none of
them classifies a run on its own (:attr:`Outcome.result` is the one rule).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.drivers import LiveSet
from reconciler.errors import Problem
from reconciler.flows import CanonicalFlow, FlowKey
from reconciler.plan import Action, Plan, State, Step
from reconciler.templating import Templating

__all__ = ["Snapshot", "Outcome", "RunResult"]


class RunResult(str, enum.Enum):
    """How a run ended, for exit codes, status and metrics."""

    OK = "ok"  # done, or nothing to do
    CONFLICT = "conflict"  # done except conflicts left for a person
    ERROR = "error"  # invalid flows, refused writes, a mass deletion refused, bad input: waits for a change
    RETRY = "retry"  # the platform or the repository was unavailable: tried again later (service only)


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """The three sides of one environment, read at one moment.

    Two id spaces: ``*_ids`` are canonical ids of the flows as the environment
    sees them (placeholders rendered), what the plan compares; ``*_blobs`` are git
    blob ids of the files as git holds them (placeholders), what commits reuse.
    """

    env: str
    branch: str
    tip: str | None
    marker: str | None
    base_ids: Mapping[FlowKey, str]  # at the marker, rendered
    desired_ids: Mapping[FlowKey, str]  # at the tip, rendered
    desired: Mapping[FlowKey, CanonicalFlow]  # the valid flows at the tip (ids only)
    tip_blobs: Mapping[FlowKey, str]  # git blob ids at the tip
    base_blobs: Mapping[FlowKey, str]  # git blob ids at the marker
    live: LiveSet
    invalid: Mapping[FlowKey, str]
    problems: tuple[Problem, ...]
    templating: Templating = Templating()
    quarantine: Mapping[FlowKey, Any] = field(default_factory=dict)  # key -> quarantine.Entry
    suspension: Any = None  # suspension.Suspension (None: not suspended)
    rendered: Any = None  # rendered.Rendered: the bytes this read rendered from the tip, for the write


@dataclass(frozen=True)
class Outcome:
    """What one run did (or, for a dry run, would do)."""

    env: str
    plan: Plan
    dry_run: bool
    tip: str | None
    marker: str | None
    commit: str | None = None  # a commit the run made on the branch (adopt / export)
    drift_commit: str | None = None  # a commit the run made on drift/<env>
    failed: Mapping[FlowKey, str] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    done: tuple[Step, ...] = ()
    refused: str | None = None  # a dry run: why the sync would refuse to carry the plan out
    stale: bool = False  # a dry run made while another process held the environment
    unreadable: int = 0  # live entries that could not be read as flows (counted as invalid)
    quarantined: Mapping[FlowKey, str] = field(default_factory=dict)  # flows this run found unhealthy
    health_checked: int = 0  # flows the health gate asked the platform about
    held: str | None = None  # why changing steps were held back this run (suspended, a closed sync window)
    migrated: Any = None  # migrate.Migration: the commit an export made first to move flows to the environment's form

    @property
    def states(self) -> dict[str, int]:
        counts = self.plan.counts()
        counts["invalid"] += self.unreadable
        if not self.dry_run:
            # Steps carried out are now in sync; failed ones keep their state.
            for s in self.done:
                if s.state != State.IN_SYNC:
                    counts[s.state.value] -= 1
                    counts[State.IN_SYNC.value] += 1
        return counts

    @property
    def conflicts(self) -> int:
        return sum(1 for s in self.plan.notable if s.action == Action.CONFLICT)

    @property
    def errors(self) -> int:
        return len(self.failed) + len(self.problems) + (self.refused is not None) + len(self.quarantined)

    @property
    def pending(self) -> bool:
        return any(s.action != Action.NONE for s in self.plan.notable)

    @property
    def result(self) -> RunResult:
        if self.errors or any(s.action == Action.INVALID for s in self.plan.notable):
            return RunResult.ERROR
        if self.conflicts:
            return RunResult.CONFLICT
        return RunResult.OK

    def as_dict(self) -> dict[str, Any]:
        done = {s.key for s in self.done}
        return {
            "environment": self.env,
            "dry_run": self.dry_run,
            "result": self.result.value,
            "branch_tip": self.tip,
            "applied": self.marker,
            "commit": self.commit,
            "drift_commit": self.drift_commit,
            "counts": self.states,
            "steps": [
                {**s.as_dict(), "done": s.key in done, "error": self.failed.get(s.key)}
                for s in self.plan.notable  # every step with an action is notable
                if s.action != Action.NONE
            ],
            "problems": [p.as_dict() for p in self.problems],
            "refused": self.refused,
            "stale": self.stale,
            "quarantined": {str(k): why for k, why in self.quarantined.items()},
            "held": self.held,
            "migrated": self.migrated.as_dict() if self.migrated is not None else None,
        }
