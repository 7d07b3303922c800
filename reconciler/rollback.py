"""Rollback: a revert-style commit on an environment's branch restoring its flows as they were at an
earlier revision (history is kept). The branch is updated by compare-and-swap on its tip and retried
when a push or the running service moved it, so it is safe while the service syncs.

What would be lost on a guess is refused before anything is written: a revision without the
environment's folder (never read as "no flows"), a commit only another environment's branch holds
(copying it is a promotion, which is reviewed), and, without ``allow_mass_delete``, the deletion of
every flow or of more than ``max_delete`` (which the sync applying it would refuse anyway).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler.errors import BranchMovedError, MassDeletionRefused, RetryableError, StallError
from reconciler.flows import FlowKey
from reconciler.gitstore import GitStore
from reconciler.promote import FlowSelector, _select

if TYPE_CHECKING:
    from reconciler.config import Config, EnvironmentConfig

__all__ = ["Rollback", "rollback"]


@dataclass(frozen=True)
class Rollback:
    env: str
    branch: str
    to: str  # the commit whose flows are restored
    to_subject: str
    in_history: bool  # is ``to`` an ancestor of the branch tip?
    parent: str | None
    commit: str | None  # None: the flows already are as at ``to``
    restored: tuple[FlowKey, ...] = ()
    removed: tuple[FlowKey, ...] = ()
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.env,
            "branch": self.branch,
            "to": self.to,
            "to_subject": self.to_subject,
            "in_history": self.in_history,
            "parent": self.parent,
            "commit": self.commit,
            "restored": [str(k) for k in self.restored],
            "removed": [str(k) for k in self.removed],
        }


def rollback(config: Config, store: GitStore, name: str, rev: str, selectors: Sequence[FlowSelector] = (),
             *, attempts: int = 10, allow_mass_delete: bool = False) -> Rollback:
    """Commit to ``name``'s branch the chosen flows (all by default) as they were at ``rev``.

    Refused, nothing committed: a ``rev`` without the environment's folder (not "no flows"), a commit of
    another environment's branch only (that is a promotion, reviewed), and, unless ``allow_mass_delete``,
    the deletion of every flow or of more than ``max_delete`` (as the sync applying it would refuse)."""
    env = config.env(name)
    branch = env.branch_name
    to = store.resolve(rev)
    subject = [store.subject(to)]
    at = store.flows_at(to, env.folder)
    if at.missing is not None:
        what = f"has no {env.folder}/ folder" if at.missing == "absent" else f"holds {at.missing} at {env.folder}"
        raise StallError(f"{rev} ({to[:12]}) {what}: it is not a commit of {env.name}'s flows; nothing was "
                         f"committed (a missing folder is never read as 'no flows'). Pick a commit of {branch}: "
                         f"`reconciler history {env.name}`")
    then = at.flows
    for attempt in range(1, attempts + 1):
        tip = store.tip(branch)
        if tip is None:
            raise StallError(f"{branch} does not exist; there is nothing to roll back")
        _other_branch(config, store, env, rev, to, tip)
        now = store.flows_at(tip, env.folder).flows
        keys = _select(selectors, then, now, where=f"{branch} or {rev}") if selectors else set(then) | set(now)
        changes = {k: then.get(k) for k in keys if then.get(k) != now.get(k)}
        restored = tuple(sorted(k for k, v in changes.items() if v is not None))
        removed = tuple(sorted(k for k, v in changes.items() if v is None))
        in_history = store.is_ancestor(to, tip)
        if not changes:
            return Rollback(env.name, branch, to, subject[0], in_history, tip, None, attempts=attempt)
        if removed and not allow_mass_delete:
            _mass_deletion(env, rev, removed, len(now))
        tree = store.tree_with(tip, env.folder, changes)
        message = _rollback_message(env, to, subject[0], restored, removed, whole=not selectors)
        try:
            commit = store.commit(branch, tip, tree, message)
        except BranchMovedError:
            continue  # a push or the service moved the branch: read it again
        return Rollback(env.name, branch, to, subject[0], in_history, tip, commit, restored, removed, attempt)
    raise RetryableError(f"{branch} kept moving during {attempts} attempts; nothing was committed, try again")


def _other_branch(config: Config, store: GitStore, env: EnvironmentConfig, rev: str, to: str, tip: str) -> None:
    """A commit only another environment's branch holds is refused: copying it is a promotion (reviewed)."""
    if store.is_ancestor(to, tip):
        return
    for other in config.environments:
        other_tip = store.tip(other.branch_name) if other.branch_name != env.branch_name else None
        if other_tip is not None and store.is_ancestor(to, other_tip):
            raise StallError(f"{rev} ({to[:12]}) is a commit of {other.branch_name} ({other.name}), not of "
                             f"{env.branch_name}; nothing was committed. A rollback restores {env.name}'s own earlier "
                             f"flows (`reconciler history {env.name}`); to bring {other.name}'s versions to {env.name}, "
                             f"run `reconciler promote {other.name} {env.name}` and merge it after review")


def _mass_deletion(env: EnvironmentConfig, rev: str, removed: Sequence[FlowKey], total: int) -> None:
    """The sync's mass-deletion rule (every flow needs allow_empty, more than max_delete needs more), up front."""
    n, names = len(removed), ", ".join(str(k) for k in removed[:5]) + (", …" if len(removed) > 5 else "")
    how = f"run it again with `reconciler rollback {env.name} --to {shlex.quote(rev)} --allow-mass-delete`"
    if n >= total and not env.allow_empty:
        raise MassDeletionRefused(f"rolling back {env.name} to {rev} would delete every flow of {env.branch_name} "
                                  f"({n}: {names}); nothing was committed. If that is intended, {how}")
    limit = env.delete_limit(total)
    if n > limit and not (n >= total and env.allow_empty):
        raise MassDeletionRefused(f"rolling back {env.name} to {rev} would delete {n} of {total} flows of "
                                  f"{env.branch_name} ({names}), more than max_delete = {env.max_delete!r} allows "
                                  f"({limit}); nothing was committed. If that is intended, {how}")


def _rollback_message(env, to: str, subject: str, restored, removed, *, whole: bool) -> str:
    n = len(restored) + len(removed)
    scope = "every flow" if whole else "the chosen flows"
    lines = [f"{env.name}: roll back {n} flow{'s' * (n != 1)} to {to[:12]}", "",
             f"Restores {scope} of {env.branch_name} as they were at {to[:12]}" + (f' ("{subject}")' if subject else "") + ".", ""]
    lines += [f"restored: {k}" for k in restored]
    lines += [f"removed: {k} (not there at {to[:12]})" for k in removed]
    lines += ["", f"Rollback-To: {to}", f"Environment: {env.name}"]
    return "\n".join(lines) + "\n"
