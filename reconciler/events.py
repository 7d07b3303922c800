"""What happened to an environment, as events for people and forges (pure): the notification contract.

The worker turns each finished run into :class:`Event` values (:func:`events_of`)
and hands them to a :class:`Notifier` (the service's is
:class:`reconciler.notify.Dispatcher`: webhooks, Slack, commit statuses), which
must never block or fail a reconcile. Kinds:

========== ================================================================
pending    a new commit was seen on the branch; it is about to be applied
applied    the environment holds the commit (once per environment and commit)
failed     the run failed (a flow refused, the platform down for good, an error)
invalid    flows in git cannot be used (bad JSON, schema, placeholders)
drift      the environment was edited outside git (restored, adopted or reported)
conflict   git and the environment changed a flow differently
unhealthy  a flow failed the health gate after a deploy
restored   …and its previous version was deployed again
suspended  a person suspended the environment (or flows of it)
resumed    …and resumed it
========== ================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Event", "Notifier", "NullNotifier", "KINDS", "events_of"]

KINDS = ("pending", "applied", "failed", "invalid", "drift", "conflict", "unhealthy", "restored", "suspended", "resumed")


@dataclass(frozen=True)
class Event:
    """One thing that happened to an environment, for the notifiers (see the module's kinds)."""

    kind: str
    environment: str
    commit: str | None  # the branch tip the event is about
    result: str  # ok | conflict | error | retry | suspended
    message: str  # one line for people
    at: str  # RFC 3339
    flows: tuple[tuple[str, str], ...] = ()  # (name@version, action or state)
    drift_commit: str | None = None
    link: str | None = None  # the environment's status page
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "environment": self.environment, "commit": self.commit, "result": self.result,
            "message": self.message, "at": self.at,
            "flows": [{"flow": f, "action": a} for f, a in self.flows],
            "drift_commit": self.drift_commit, "link": self.link, **self.extra,
        }


class Notifier(Protocol):
    """Takes events for delivery; must return at once and never raise."""

    def publish(self, event: Event) -> None:
        ...


class NullNotifier:
    """Delivers nothing (no ``[[notify]]`` configured; tests)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event) -> None:
        self.events.append(event)


def events_of(outcome: Any, *, result: str, error: str | None, at: str, link: str | None,
              applied_before: str | None) -> list[Event]:
    """The events of one finished run (``outcome`` may be None when the run failed before planning).

    ``applied_before``: the commit the previous run left applied, so ``applied`` is sent once per commit.
    """
    out: list[Event] = []
    if outcome is None:
        return out
    env, tip = outcome.env, outcome.tip

    def event(kind: str, message: str, flows: Sequence[tuple[str, str]] = (), **kw: Any) -> Event:
        return Event(kind, env, tip, result, message, at, tuple(flows), link=link, **kw)

    steps = outcome.plan.notable  # what is not in sync (every state and action but in_sync/none)
    done = {s.key for s in outcome.done}
    drifted = [(str(s.key), s.action.value) for s in steps if s.state.value == "drifted" and s.action.value != "none"]
    if drifted:
        out.append(event("drift", f"{len(drifted)} flow(s) edited in the environment", drifted,
                         drift_commit=outcome.drift_commit))
    conflicts = [(str(s.key), "conflict") for s in steps if s.action.value == "conflict"]
    if conflicts:
        out.append(event("conflict", f"{len(conflicts)} flow(s) changed differently in git and the environment",
                         conflicts))
    invalid_steps = [s for s in steps if s.action.value == "invalid"]
    if invalid_steps:
        first = invalid_steps[0]
        out.append(event("invalid", f"{len(invalid_steps)} flow(s) cannot be used; {first.key}: {first.reason[:200]}",
                         [(str(s.key), "invalid") for s in invalid_steps]))
    if outcome.quarantined:
        unhealthy = [(str(k), "unhealthy") for k in outcome.quarantined]
        out.append(event("unhealthy", "; ".join(f"{k}: {why}" for k, why in list(outcome.quarantined.items())[:3]),
                         unhealthy))
        restored = [(str(k), "restored") for k in outcome.quarantined if "deployed again" in outcome.failed.get(k, "")]
        if restored:
            out.append(event("restored", f"{len(restored)} flow(s) deployed again in their previous version", restored))
    if result == "error" or outcome.failed:
        failed = [(str(k), "failed") for k in outcome.failed]
        out.append(event("failed", error or "; ".join(f"{k}: {why}" for k, why in list(outcome.failed.items())[:3])
                         or "the run failed", failed))
    if (result in ("ok", "conflict") and tip is not None and outcome.marker == tip and tip != applied_before
            and not outcome.dry_run):
        changed = [(str(s.key), s.action.value) for s in steps if s.key in done]
        out.append(event("applied", f"{env} holds {tip[:12]}", changed))
    return out
