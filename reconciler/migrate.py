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

Every export runs this check first, so it must cost what changed, not N: the flows found already in
the form are kept beside the repository (``<gitdir>/reconciler/index/<env>/form``,
:mod:`reconciler.localcache`), as flow -> entry id (the ids of the flow's JSON and sidecar folder,
content addressed). A flow whose entry is the one kept is not read again; a changed, new or
moved flow is, and so is every flow that was a problem (reported each time until fixed). The
record names what shaped it (this code, the form, the environment's sidecar and layout fields, its
normalisation rules): other settings, or a missing, foreign or corrupt file, mean every flow is
checked again, never that one is skipped wrongly.

Beside it, ``form-tree`` names the last folder tree found *wholly* in the form (every flow on
record, no problem, nothing moved): whether a flow is in the form is a function of its entry and
of what the fingerprint names, so a branch whose folder is still that very tree needs no check at
all (a 1% export of 10,000 flows: the record is not even read). It is written beside the record
and means nothing on its own for any other tree.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler.canonical import InvalidJSON, canonicalize, parse_json
from reconciler.errors import BranchMovedError, Problem, RetryableError, StallError
from reconciler.flows import FlowKey
from reconciler.gitform import git_form, stored_doc
from reconciler.gitstore import FlowTree, GitStore
from reconciler.localcache import digest, read_cache, write_cache
from reconciler.names import flow_path
from reconciler.sidecars import StoredFlow, join

if TYPE_CHECKING:
    from reconciler.config import Config
    from reconciler.envconfig import EnvironmentConfig

__all__ = ["Migration", "migrate", "migrate_env", "note_written"]


@dataclass(frozen=True)
class Migration:
    """What migrating one environment's branch to its configured form did (or would do)."""

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
    target = git_form(stored_doc(stored, where=where, flow=str(key))[0], env, key)  # a second copy: cheaper than deepcopy
    if set(target.sidecars) == set(stored.sidecars) and not stored.bad:
        return None, []
    back, _, trouble = join(parse_json(target.json), target, where=where)
    if trouble or canonicalize(back, env.rules) != canonicalize(doc, env.rules):  # nothing is ever lost
        return None, [Problem(where, "its split form would not read back as the same flow; left as it is",
                              flow=str(key))]
    return target, []


_KIND = "form-check"


def _fingerprint(env: EnvironmentConfig) -> str:
    """What decides whether a flow is in the environment's form (the kinds' own declarations are code)."""
    return digest("form", env.form, env.folder, [(s.pointer, s.ext) for s in env.sidecars], env.layout_fields,
                  env.rules.ignore, env.rules.sort)


def _checked(store: GitStore, env: EnvironmentConfig) -> dict[str, str]:
    """flow -> entry id of the flows a previous check found in the form (empty when none can be trusted)."""
    try:
        doc = read_cache(store.cache_path(env.name, "form"), _KIND, _fingerprint(env))
    except StallError:
        return {}
    flows = doc.get("flows") if doc else None
    if not isinstance(flows, dict) or not all(isinstance(v, str) for v in flows.values()):
        return {}
    return flows


_WHOLE = "form-tree"


def _whole(store: GitStore, env: EnvironmentConfig) -> str | None:
    """The folder tree id a previous check found wholly in the form (None: none can be trusted)."""
    try:
        doc = read_cache(store.cache_path(env.name, _WHOLE), _WHOLE, _fingerprint(env))
    except StallError:
        return None
    tree = doc.get("tree") if doc else None
    return tree if isinstance(tree, str) and tree else None


def _keep_whole(store: GitStore, env: EnvironmentConfig, tree: FlowTree, in_form: dict[str, str]) -> None:
    """Name ``tree`` as wholly in the form when ``in_form`` vouches for each of its flows (both callers
    build it from ``tree.flows``, entry for entry: as many entries is all of them)."""
    if tree.tree is None or tree.missing is not None or tree.problems or tree.bad or len(in_form) != len(tree.flows):
        return
    if _whole(store, env) == tree.tree:
        return
    try:
        write_cache(store.cache_path(env.name, _WHOLE), _WHOLE, _fingerprint(env), {"tree": tree.tree})
    except StallError:
        pass


def _keep(store: GitStore, env: EnvironmentConfig, flows: dict[str, str]) -> None:
    try:
        write_cache(store.cache_path(env.name, "form"), _KIND, _fingerprint(env), {"flows": flows})
    except StallError:
        pass


def _name(key: FlowKey) -> str:
    return f"{len(key.name)}:{key.name}\0{key.version}"  # unambiguous, and cheaper than its git path


_NAME_FORMAT = "{}:{}\0{}".format  # _name's spelling, from (len(name), name, version)
_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)


def note_written(store: GitStore, env: EnvironmentConfig, commit: str) -> None:
    """``commit`` was made by this code for ``env`` (an export's or a migration's): every flow it
    changed was written in the environment's form, so the record of flows in the form gains them.
    Flows it did not change keep what the record says of them (a flow someone pushed before it,
    never checked, stays unrecorded and is checked by the next export)."""
    try:
        parents = store.repo[commit].parent_ids
        new = store.flows_at(commit, env.folder)
        old = store.flows_at(str(parents[0]), env.folder) if parents else None
    except (KeyError, ValueError, RetryableError):
        return
    if new.missing is not None or new.problems or new.bad or (old is not None and (old.missing or old.problems)):
        return  # not a plain folder of flows: the next check reads everything it needs
    checked = _checked(store, env)
    before = old.flows if old is not None else {}
    keys, entries = list(new.flows.keys()), list(new.flows.values())
    # _name of every key at C speed (str.format mapped over the columns): 10,000 flows
    names = map(_NAME_FORMAT, map(len, map(_FIRST, keys)), map(_FIRST, keys), map(_SECOND, keys))
    was, get = map(before.get, keys), checked.get
    kept = {name: entry for name, entry, old_entry in zip(names, entries, was)
            if old_entry != entry or get(name) == entry}
    if kept != checked:
        _keep(store, env, kept)
    _keep_whole(store, env, new, kept)


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
        if tree.tree is not None and not tree.problems and not tree.bad and _whole(store, env) == tree.tree:
            return Migration(env.name, branch, env.form, tip, None, (), (), dry_run)  # the very tree found in form
        changes: dict[FlowKey, StoredFlow | None] = {}
        problems: list[Problem] = []
        checked = _checked(store, env)
        in_form: dict[str, str] = {}
        for key, entry in sorted(tree.flows.items()):
            path = _name(key)
            if checked.get(path) == entry:
                in_form[path] = entry
                continue
            where = f"{branch}:{flow_path(env.folder, key.name, key.version)}"
            try:
                target, trouble = _target(store, env, key, entry, where)
            except RetryableError as exc:
                target, trouble = None, [Problem(where, f"cannot be read ({exc}); left as it is", flow=str(key))]
            problems += trouble
            if target is not None:
                changes[key] = target
            elif not trouble:
                in_form[path] = entry
        if in_form != checked:
            _keep(store, env, in_form)
        if not changes and not problems:
            _keep_whole(store, env, tree, in_form)
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
