"""Moving a branch's flows to the form its environment writes (``reconciler migrate``, and the first
export): one commit per environment, changing how git holds the flows, never what they are.

With ``form = "split"`` (the default) a flow whose code is inline in its JSON (a repository made
before sidecar files, or by hand) gets its code moved to sidecar files; with ``form = "single-file"``
the sidecars are put back into the JSON. Only flows whose *set of files* differs from the
environment's form are rewritten (a sidecar a person saved without its trailing newline is left as
it is); each rewritten flow is checked to join back to the very same document before anything is
committed. A flow that cannot be read whole is left as it is and reported. The commit moves the
branch by compare-and-swap (a push meanwhile: read again and retry), so it is safe while the
service runs; the plan sees no change (the flows' content is the same), so nothing is imported.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from reconciler.canonical import InvalidJSON, canonicalize, parse_json
from reconciler.config import Config
from reconciler.envconfig import EnvironmentConfig
from reconciler.errors import BranchMovedError, Problem, RetryableError, StallError
from reconciler.flows import FlowKey
from reconciler.gitform import git_form, stored_doc
from reconciler.gitstore import GitStore
from reconciler.names import flow_path
from reconciler.sidecars import StoredFlow, join

__all__ = ["Migration", "migrate", "migrate_env"]


@dataclass(frozen=True)
class Migration:
    env: str
    branch: str
    form: str
    parent: str | None
    commit: str | None  # None: nothing to move (or a dry run)
    moved: tuple[FlowKey, ...] = ()
    problems: tuple[Problem, ...] = ()
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"environment": self.env, "branch": self.branch, "form": self.form, "parent": self.parent,
                "commit": self.commit, "dry_run": self.dry_run, "moved": [str(k) for k in self.moved],
                "problems": [p.as_dict() for p in self.problems]}


def _target(store: GitStore, env: EnvironmentConfig, key: FlowKey, entry: str, where: str) -> tuple[StoredFlow | None, list[Problem]]:
    """The flow in the environment's form when that differs from how git holds it (None: it does not)."""
    stored = store.flow_files(entry)
    try:
        doc, _, problems = stored_doc(stored, where=where, flow=str(key))
    except InvalidJSON as exc:
        return None, [Problem(where, f"{exc}; left as it is", exc.pointer, str(key))]
    if problems:
        return None, problems
    target = git_form(copy.deepcopy(doc), env, key)
    if set(target.sidecars) == set(stored.sidecars) and not stored.bad:
        return None, []
    back, _, trouble = join(parse_json(target.json), target, where=where)
    if trouble or canonicalize(back, env.rules) != canonicalize(doc, env.rules):  # nothing is ever lost
        return None, [Problem(where, "its split form would not read back as the same flow; left as it is",
                              flow=str(key))]
    return target, []


def migrate_env(store: GitStore, env: EnvironmentConfig, *, dry_run: bool = False, attempts: int = 5,
                missing_ok: bool = False) -> Migration:
    """Move ``env``'s branch to its form in one commit (see the module). ``missing_ok``: a branch that does
    not exist yet is nothing to do (an export creating it)."""
    branch = env.branch_name
    for _ in range(attempts):
        tip = store.tip(branch)
        if tip is None:
            if missing_ok:
                return Migration(env.name, branch, env.form, None, None, dry_run=dry_run)
            raise StallError(f"environment {env.name}: {store.missing_branch(branch)}; nothing to migrate")
        tree = store.flows_at(tip, env.folder)
        changes: dict[FlowKey, StoredFlow | None] = {}
        problems: list[Problem] = []
        for key, entry in sorted(tree.flows.items()):
            where = f"{branch}:{flow_path(env.folder, key.name, key.version)}"
            try:
                target, trouble = _target(store, env, key, entry, where)
            except RetryableError as exc:
                target, trouble = None, [Problem(where, f"cannot be read ({exc}); left as it is", flow=str(key))]
            problems += trouble
            if target is not None:
                changes[key] = target
        moved = tuple(sorted(changes))
        if dry_run or not changes:
            return Migration(env.name, branch, env.form, tip, None, moved, tuple(problems), dry_run)
        try:
            commit = store.commit_changes(branch, tip, env.folder, changes, _message(env, moved))
        except BranchMovedError:
            continue
        return Migration(env.name, branch, env.form, tip, commit, moved, tuple(problems))
    raise RetryableError(f"{branch} kept moving during {attempts} attempts; nothing was migrated, try again")


def migrate(config: Config, store: GitStore, name: str, *, dry_run: bool = False) -> Migration:
    """``reconciler migrate ENV``."""
    return migrate_env(store, config.env(name), dry_run=dry_run)


def _message(env: EnvironmentConfig, moved: tuple[FlowKey, ...]) -> str:
    n = len(moved)
    what = ("in the split form (code as sidecar files)" if env.form == "split" else "as single JSON files")
    lines = [f"{env.name}: store {n} flow{'s' * (n != 1)} {what}", "",
             "The flows' content is unchanged: this commit changes only how git holds them", "",
             *(f"moved: {k}" for k in moved), "", f"Form: {env.form}", f"Environment: {env.name}"]
    return "\n".join(lines) + "\n"
