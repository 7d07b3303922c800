"""``reconciler plan ENV --against REF``: what merging REF into an environment's branch would do.

The merge is computed in memory (nothing is written), the merged flows are read
by the engine's own read as the branch tip would be (rendered with the
environment's parameters and secrets, validated by its schema), and the plan is
made against the environment's applied marker and live state. Each flow comes
with a semantic diff (:mod:`reconciler.semdiff`) of what the merge changes in
git. Renderings live in :mod:`reconciler.rendering`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from reconciler.canonical import InvalidJSON
from reconciler.codefields import layout_patterns
from reconciler.engine import Engine
from reconciler.errors import Problem, RetryableError
from reconciler.flows import FlowKey
from reconciler.gitform import Unreadable, stored_doc
from reconciler.gitstore import FlowTree, GitStore
from reconciler.names import InvalidName, decode, flow_path
from reconciler.plan import Action, Plan, Step
from reconciler.remote import REMOTE_PREFIX, Remote
from reconciler.secretrule import SecretRule
from reconciler.semdiff import DiffItem, diff, summary

__all__ = ["FlowReview", "Review", "plan_against"]


@dataclass(frozen=True)
class FlowReview:
    """One flow a merge touches or the environment would act on."""

    key: FlowKey
    git: str  # what the merge does to the branch: added | changed | removed | unchanged
    step: Step | None
    diff: tuple[DiffItem, ...] = ()
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow": str(self.key),
            "name": self.key.name,
            "version": self.key.version,
            "git": self.git,
            "action": self.step.action.value if self.step else "none",
            "state": self.step.state.value if self.step else "in_sync",
            "reason": self.step.reason if self.step else "in sync",
            "summary": summary(self.diff) if self.git != "unchanged" else "",
            "diff": [d.as_dict() for d in self.diff],
            "note": self.note,
        }


@dataclass(frozen=True)
class Review:
    """What merging ``against`` into an environment's branch would do."""

    env: str
    branch: str
    tip: str | None
    against: str
    against_commit: str
    marker: str | None = None
    conflicts: tuple[str, ...] = ()
    plan: Plan | None = None
    flows: tuple[FlowReview, ...] = ()
    problems: tuple[Problem, ...] = ()
    forms: tuple[str, ...] = ()  # conflicting flows stored in the split form on one side and inline on the other

    @property
    def errors(self) -> bool:
        return bool(self.conflicts or self.problems) or any(
            s.action == Action.INVALID for s in (self.plan.steps if self.plan else ())
        )

    @property
    def pending(self) -> bool:
        return self.plan is not None and any(s.action != Action.NONE for s in self.plan.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.env,
            "branch": self.branch,
            "branch_tip": self.tip,
            "applied": self.marker,
            "against": self.against,
            "against_commit": self.against_commit,
            "conflicts": list(self.conflicts),
            "mixed_forms": list(self.forms),
            "counts": self.plan.counts() if self.plan else None,
            "flows": [f.as_dict() for f in self.flows],
            "problems": [p.as_dict() for p in self.problems],
        }


def plan_against(engine: Engine, name: str, ref: str) -> Review:
    """The review of merging ``ref`` into environment ``name``'s branch. Changes nothing in git or the platform.

    With a remote, the remote is fetched first and, unless a service is
    reconciling the environment right now, the local branch is brought up to
    the remote's as the service would.
    """
    config, store = engine.config, engine.store
    env = config.env(name)
    remote = Remote.fetched(store, config.repository)
    if remote is not None:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(store.lock(env.name))
            except RetryableError:
                pass  # a running service holds the lock and keeps the branch current itself
            else:
                remote.integrate(env.name, env.branch_name)
    prefer = (REMOTE_PREFIX + ref.removeprefix("origin/"),) if remote is not None else ()
    against = store.resolve(ref, prefer=prefer)
    tip = store.tip(env.branch_name)
    merged, conflicts = _merge(store, tip, against, env.folder)
    if merged is None:
        return Review(env.name, env.branch_name, tip, ref, against, store.marker(env.name), conflicts=conflicts,
                      forms=_mixed_forms(store, tip, against, env.folder, conflicts))
    before = store.flows_at(tip, env.folder).flows if tip else {}
    snap = engine.read(env, desired=merged, label=ref)
    p = engine.plan(env, snap)
    steps = {s.key: s for s in p.steps}
    secret = SecretRule(tuple(env.secret_keys), tuple(env.secret_fields), tuple(env.secret_allow))
    declared = env.declarations()
    flows = []
    after = merged.flows
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        step = steps.get(key)
        if old == new and (step is None or step.action == Action.NONE):
            continue
        git = "unchanged" if old == new else "added" if old is None else "removed" if new is None else "changed"
        items: tuple[DiffItem, ...] = ()
        note = ""
        if old != new:
            where = flow_path(env.folder, key.name, key.version)
            try:
                (a, code_a), (b, code_b) = (_doc(store, e, where, key) for e in (old, new))
                items = diff(a, b, secret=secret, layout=layout_patterns([a, b], declared), code={**code_a, **code_b})
            except InvalidJSON:
                note = "not valid JSON on one side; no semantic diff"
            except Unreadable as exc:
                note = f"cannot be read whole on one side ({exc}); no semantic diff"
        flows.append(FlowReview(key, git, step, items, note))
    for key, step in sorted(steps.items()):
        if key not in before and key not in after and step.action != Action.NONE:
            flows.append(FlowReview(key, "unchanged", step))  # only in the environment (drift)
    problems = tuple(p for p in snap.problems if not p.where.startswith("applied:"))
    return Review(env.name, env.branch_name, tip, ref, against, snap.marker, (), p,
                  tuple(sorted(flows, key=lambda f: f.key)), problems)


def _doc(store: GitStore, entry: str | None, where: str, key: FlowKey) -> tuple[Any, dict[str, str]]:
    """The whole document git holds at ``entry`` (None for None), and pointer -> sidecar file of its code."""
    if entry is None:
        return None, {}
    doc, refs, problems = stored_doc(store.flow_files(entry), where=where, flow=str(key))
    if problems:
        raise Unreadable(problems[0])
    return doc, refs


def _merge(store: GitStore, tip: str | None, against: str, folder: str) -> tuple[FlowTree | None, tuple[str, ...]]:
    """The flows of the merge of ``against`` into ``tip``, in memory, or (None, conflicting paths)."""
    if tip is None or store.is_ancestor(tip, against):
        return store.flows_at(against, folder), ()  # a fast-forward
    if store.is_ancestor(against, tip):
        return store.flows_at(tip, folder), ()  # already merged
    merge = store.merge(None, tip, against, write=False)
    if merge.conflicts:
        return None, merge.conflicts
    return store.flows_in(merge.entries, folder), ()


def _mixed_forms(store: GitStore, tip: str | None, against: str, folder: str, conflicts: tuple[str, ...]) -> tuple[str, ...]:
    """The conflicting flows one side stores split (with a sidecar folder) and the other as one file."""
    out: list[str] = []
    for path in conflicts:
        parts = path[len(folder) + 1:].split("/") if path.startswith(folder + "/") else []
        if len(parts) < 2:
            continue
        try:
            key = FlowKey(decode(parts[0]), decode(parts[1].removesuffix(".json")))
        except InvalidName:
            continue
        split = {"+" in (store.entry_at(c, folder, key) or "") for c in (tip, against) if c}
        where = flow_path(folder, key.name, key.version)
        if len(split) > 1 and where not in out:
            out.append(where)
    return tuple(out)
