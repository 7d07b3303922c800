"""Suspending and resuming an environment or some of its flows: the one writer of
``refs/reconciler/suspend/<env>`` (``reconciler suspend``/``resume`` and the API's
``POST /api/v1/environments/<env>/suspend``/``resume`` both call :func:`change`).

The new state is committed to the local repository and, with a remote configured,
pushed at once, so every replica and a restarted service see it (see
:mod:`reconciler.suspension` for what a suspension holds back).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import time
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler import suspension
from reconciler.gitstore import GitStore
from reconciler.promote import parse_selector
from reconciler.worker import rfc3339

if TYPE_CHECKING:
    from reconciler.config import Config

__all__ = ["Changed", "change", "normalise_flows", "body_problem"]

MAX_REASON = 500


@dataclass(frozen=True)
class Changed:
    env: str
    before: suspension.Suspension
    after: suspension.Suspension
    pushed: bool

    @property
    def changed(self) -> bool:
        return self.after != self.before

    def as_dict(self) -> dict:
        return {"environment": self.env, "suspension": suspension.dump(self.after), "changed": self.changed,
                "pushed": self.pushed}


def normalise_flows(flows: Sequence[str]) -> list[str]:
    """``NAME`` or ``NAME@VERSION`` selectors, checked (a ValueError says which one is not)."""
    return [str(parse_selector(f)) for f in flows]


def change(config: Config, store: GitStore, env_name: str, flows: Sequence[str], *, suspend: bool,
           by: str = "", reason: str = "", now: float | None = None) -> Changed:
    """Suspend (or resume) the environment, or only ``flows``; a no-op change writes nothing."""
    from reconciler.remote import Remote

    env = config.env(env_name)
    selected = normalise_flows(flows)
    ref = suspension.SUSPEND_PREFIX + env.name
    remote = Remote.fetched(store, config.repository)
    if remote is not None:
        remote.take_state(env.name)  # build on what the other replicas see (a suspension made elsewhere)
    before = suspension.load(store.read_state(ref))
    if suspend:
        hold = suspension.Hold(by or "unknown", rfc3339(time.time() if now is None else now) or "",
                               reason[:MAX_REASON])
        after = suspension.suspend(before, hold, selected)
    else:
        after = suspension.resume(before, selected)
    pushed = False
    if after != before:
        what = ", ".join(selected) if selected else "the environment"
        store.write_state(ref, suspension.dump(after),
                          f"reconciler: {'suspend' if suspend else 'resume'} {what} of {env.name}\n")
        if remote is not None:
            remote.publish_state(env.name)
            pushed = True
    return Changed(env.name, before, after, pushed)


def body_problem(doc: object) -> str | None:
    """What is wrong with the body of ``POST …/suspend`` or ``…/resume`` (None: nothing)."""
    if not isinstance(doc, dict):
        return "the body must be a JSON object"
    unknown = sorted(set(doc) - {"flows", "reason", "by"})
    if unknown:
        return f"unknown field(s) {', '.join(unknown)[:200]}; the body takes flows, reason and by"
    flows = doc.get("flows", [])
    if not isinstance(flows, list) or not all(isinstance(f, str) for f in flows):
        return "flows must be a list of \"NAME\" or \"NAME@VERSION\" strings"
    for field in ("reason", "by"):
        if doc.get(field) is not None and not isinstance(doc[field], str):
            return f"{field} must be a string"
    return None
