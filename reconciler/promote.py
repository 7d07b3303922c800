"""Promotion and rollback: changes to an environment's branch prepared as ordinary git commits.

- :func:`promote` writes a branch ``promote/FROM-to-TO/<id>`` starting at TO's
  branch tip with FROM's versions of the chosen flows (all by default), one
  commit. A person reviews it as a merge request (``validate``, ``plan
  --against``) and merges it; the normal sync applies it. ``--as`` imports a
  flow under another name or version, as the platforms' import dialogs allow:
  the file moves and the identity fields inside change with it; its sidecar files (the split form's
  code) move with it, unchanged.
- :func:`~reconciler.rollback.rollback` (its own module) commits to an environment's branch the
  flows as they were at an earlier revision (a revert-style commit: history is kept).

Both copy flows as git holds them (a flow's JSON and its sidecar folder together, whatever their
form), and refuse to write anything the secret scan objects to, naming the file (the sidecar, for
code) and the JSON pointer, never the value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from reconciler.canonical import InvalidJSON, canonicalize, parse_json, parse_pointer
from reconciler.errors import Problem, StallError
from reconciler.flows import FlowInvalid, FlowKey
from reconciler.gitform import can_split, stored_doc
from reconciler.gitstore import GitStore
from reconciler.names import InvalidName, case_collisions, encode, flow_path
from reconciler.remote import REMOTE_PREFIX, Remote
from reconciler.scanning import environment_templating
from reconciler.sidecars import StoredFlow

if TYPE_CHECKING:
    from reconciler.config import Config, EnvironmentConfig

__all__ = [
    "FlowSelector",
    "parse_selector",
    "Promotion",
    "SecretScanRefused",
    "promote",
    "PROMOTE_PREFIX",
]

PROMOTE_PREFIX = "promote/"


class FlowSelector(NamedTuple):
    """``NAME`` (every version) or ``NAME@VERSION`` (split at the last ``@``)."""

    name: str
    version: str | None = None

    def matches(self, key: FlowKey) -> bool:
        return key.name == self.name and (self.version is None or key.version == self.version)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


def parse_selector(text: str, *, need_version: bool = False) -> FlowSelector:
    name, at, version = text.rpartition("@")
    if not at:
        name, version = text, ""
    if not name or (at and not version):
        raise StallError(f"{text!r} is not NAME or NAME@VERSION")
    if need_version and not at:
        raise StallError(f"{text!r} needs a version: NAME@VERSION")
    try:
        encode(name)
        if version:
            encode(version)
    except InvalidName as exc:
        raise StallError(f"{text!r}: {exc}") from exc
    return FlowSelector(name, version or None)


class SecretScanRefused(StallError):
    """A commit refused by the secret scan; ``problems`` name files and pointers, never values."""

    def __init__(self, what: str, problems: list[Problem]):
        self.problems = problems
        super().__init__(f"{what} refused by the secret scan: {len(problems)} problem(s); nothing was written")


def _select(selectors: Sequence[FlowSelector], *sides: Mapping[FlowKey, Any], where: str) -> set[FlowKey]:
    """Keys of ``sides`` the selectors name; a selector naming nothing is an error."""
    keys = set().union(*sides)
    chosen: set[FlowKey] = set()
    missing = []
    for sel in selectors:
        hit = {k for k in keys if sel.matches(k)}
        if not hit:
            missing.append(str(sel))
        chosen |= hit
    if missing:
        raise StallError(f"no flow {', '.join(repr(m) for m in missing)} in {where}")
    return chosen


def _tip(store: GitStore, branch: str, remote: Remote | None) -> str | None:
    """A branch's tip; with a remote, the remote's branch (what a merge request targets) when it exists."""
    if remote is not None:
        tip = store.tip(REMOTE_PREFIX + branch)
        if tip is not None:
            return tip
    return store.tip(branch)


def _scan(envs: Sequence[EnvironmentConfig], folder: str, contents: Mapping[FlowKey, StoredFlow]) -> list[Problem]:
    """The secret scan of whole flows (sidecars read): a problem in code names its sidecar file."""
    scanner = environment_templating(envs)
    problems = []
    for key, stored in sorted(contents.items()):
        where = flow_path(folder, key.name, key.version)
        try:
            doc, refs, joined = stored_doc(stored, where=where, flow=str(key))
        except InvalidJSON as exc:
            problems.append(Problem(where, f"not valid JSON ({exc}); it cannot be scanned for secrets", exc.pointer, str(key)))
            continue
        if joined:
            problems += [replace(p, message=f"{p.message}; it cannot be scanned for secrets") for p in joined]
            continue
        problems += [Problem(refs.get(pointer, where), message, pointer, str(key)) for pointer, message in scanner.scan(doc)]
    return problems


# -- promote --------------------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    source: str
    target: str
    source_branch: str
    target_branch: str
    source_commit: str
    base: str | None  # the target branch's tip the promotion starts from
    branch: str | None  # None: nothing to promote
    commit: str | None
    added: tuple[FlowKey, ...] = ()
    changed: tuple[FlowKey, ...] = ()
    removed: tuple[FlowKey, ...] = ()
    renamed: tuple[tuple[FlowKey, FlowKey], ...] = ()  # (as in FROM, as written)
    pushed_to: str | None = None
    reused: bool = False  # an identical promotion branch existed already

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "from_branch": self.source_branch,
            "to_branch": self.target_branch,
            "from_commit": self.source_commit,
            "base": self.base,
            "branch": self.branch,
            "commit": self.commit,
            "added": [str(k) for k in self.added],
            "changed": [str(k) for k in self.changed],
            "removed": [str(k) for k in self.removed],
            "renamed": [{"from": str(a), "to": str(b)} for a, b in self.renamed],
            "pushed_to": self.pushed_to,
            "reused": self.reused,
            "merge_request": {"source": self.branch, "target": self.target_branch} if self.branch else None,
        }


def promote(
    config: Config,
    store: GitStore,
    source: str,
    target: str,
    selectors: Sequence[FlowSelector] = (),
    *,
    rename: FlowSelector | None = None,
    push: bool = False,
) -> Promotion:
    """Prepare the promotion of ``source``'s flows to ``target`` as a branch (and push it with ``push``)."""
    src, dst = config.env(source), config.env(target)
    if src.name == dst.name:
        raise StallError("promote needs two different environments")
    if rename is not None and (len(selectors) != 1):
        raise StallError("--as renames one flow: give exactly one --flow")
    remote = Remote.fetched(store, config.repository)
    from_tip = _tip(store, src.branch_name, remote)
    if from_tip is None:
        raise StallError(f"{src.branch_name} does not exist yet; run `reconciler export {src.name}` first")
    to_tip = _tip(store, dst.branch_name, remote)
    if to_tip is None:  # nothing to open a merge request into (and a branch without a base merges nowhere)
        raise StallError(f"{dst.branch_name} does not exist yet; nothing was written. Start {dst.name}'s branch first: "
                         f"`git -C {config.repository.path} branch {dst.branch_name} {src.branch_name}` (from "
                         f"{src.name}'s), or `reconciler export {dst.name}` (from what {dst.name} runs)")
    at = store.flows_at(from_tip, src.folder)
    if at.missing is not None:  # never "no flows": that would promote the removal of every flow
        what = f"has no {src.folder}/ folder" if at.missing == "absent" else f"holds {at.missing} at {src.folder}"
        raise StallError(f"{src.branch_name} {what}, not a folder of flows; nothing was written. "
                         f"Check `folder` of environment {src.name} in the config")
    there = at.flows
    here = store.flows_at(to_tip, dst.folder).flows
    chosen = _select(selectors, there, where=f"{src.branch_name} ({src.name})") if selectors else set(there)

    contents: dict[FlowKey, str | None] = {}  # key -> entry id (None: removed)
    renamed: tuple[tuple[FlowKey, FlowKey], ...] = ()
    if rename is not None:
        if len(chosen) != 1:
            raise StallError(f"--as renames one flow, but {selectors[0]} names {len(chosen)} in {src.name}: add @VERSION")
        (old,) = chosen
        new = FlowKey(rename.name, rename.version or old.version)
        stored = store.flow_files(there[old])
        # The JSON changes (its identity fields); the sidecar files move with it, unchanged.
        moved = replace(stored, json=_renamed(stored.json, src, dst, old, new))
        contents[new] = store.put_flow(moved if can_split(new) else _inlined(moved, dst, new))
        renamed = ((old, new),)
    else:
        for key in chosen:
            contents[key] = there[key]
        if not selectors:
            contents.update((key, None) for key in here if key not in there)
    # What already holds the same files is no change.
    contents = {k: v for k, v in contents.items() if here.get(k) != v}

    base = Promotion(src.name, dst.name, src.branch_name, dst.branch_name, from_tip, to_tip, None, None)
    if not contents:
        return base
    problems = _scan([src, dst], dst.folder, {k: store.flow_files(v) for k, v in contents.items() if v is not None})
    if problems:
        raise SecretScanRefused(f"promoting {src.name} to {dst.name}", problems)
    added = tuple(sorted(k for k, v in contents.items() if v is not None and k not in here))
    clash = case_collisions([*sorted({encode(k.name) for k in here}), *(encode(k.name) for k in added)])
    if clash:
        first, later = clash[0]
        raise StallError(f"{later!r} differs only in case from {first!r} in {dst.branch_name}; "
                         "they would collide on a case-insensitive checkout: promote it under another name (--as)")
    changed = tuple(sorted(k for k, v in contents.items() if v is not None and k in here))
    removed = tuple(sorted(k for k, v in contents.items() if v is None))
    message = _promote_message(src, dst, from_tip, added, changed, removed, renamed)
    tree = store.tree_with(to_tip, dst.folder, contents)
    prefix = f"{PROMOTE_PREFIX}{src.name}-to-{dst.name}/"
    same = next((b for b in store.branches() if b.startswith(prefix) and store.parents(store.tip(b)) == (to_tip,)
                 and store.tree_of(store.tip(b)) == tree), None)
    if same is not None:  # the same promotion is already prepared (an open merge request): reuse it
        commit, branch, reused = store.tip(same), same, True
    else:
        commit = store.commit(None, to_tip, tree, message)
        branch, reused = f"{prefix}{commit[:10]}", False
        store.create_branch(branch, commit, f"reconciler: promote {src.name} to {dst.name}")
    pushed = None
    if push and remote is not None:
        remote.push_branch(f"refs/heads/{branch}")
        pushed = remote.safe_url
    return Promotion(src.name, dst.name, src.branch_name, dst.branch_name, from_tip, to_tip, branch, commit,
                     added, changed, removed, renamed, pushed, reused)


def _renamed(raw: bytes, src: EnvironmentConfig, dst: EnvironmentConfig, old: FlowKey, new: FlowKey) -> bytes:
    """The document with its identity fields set to ``new`` (the target environment's identity pointers)."""
    try:
        doc = parse_json(raw)
        if src.flow_identity.key_of(doc) != old:
            raise StallError(f"{old} in {src.branch_name}: its name or version fields disagree with its path; fix it first")
        if src.flow_identity != dst.flow_identity:
            for pointer in (src.identity.name, src.identity.version):
                _remove(doc, pointer)
        dst.flow_identity.set_key(doc, new)
        return canonicalize(doc, dst.rules)
    except (InvalidJSON, FlowInvalid) as exc:
        raise StallError(f"{old} in {src.branch_name} cannot be renamed: {exc}") from exc


def _inlined(stored: StoredFlow, dst: EnvironmentConfig, key: FlowKey) -> StoredFlow:
    """A flow with its sidecars put back into its JSON (a name whose folder git cannot hold)."""
    doc, _, problems = stored_doc(stored, where=flow_path(dst.folder, key.name, key.version), flow=str(key))
    if problems:
        raise StallError(str(problems[0]))
    return StoredFlow(canonicalize(doc, dst.rules))


def _remove(doc: Any, pointer: str) -> None:
    *parents, last = parse_pointer(pointer)
    node = doc
    for seg in parents:
        node = node.get(seg) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


def _promote_message(src, dst, from_tip: str, added, changed, removed, renamed) -> str:
    n = len(added) + len(changed) + len(removed)
    lines = [f"promote {src.name} to {dst.name}: {n} flow{'s' * (n != 1)}", "",
             f"{dst.branch_name} gets {src.name}'s versions from {src.branch_name} at {from_tip[:12]}.", ""]
    renames = {new: old for old, new in renamed}
    for word, keys in (("added", added), ("changed", changed), ("removed", removed)):
        for k in keys:
            lines.append(f"{word}: {k}" + (f" (as {renames[k]} in {src.name})" if k in renames else ""))
    lines += ["", f"Promoted-From: {src.name} {from_tip}", f"Environment: {dst.name}"]
    return "\n".join(lines) + "\n"


def __getattr__(name: str) -> Any:
    """``rollback`` and ``Rollback`` moved to :mod:`reconciler.rollback` (imported from here by older callers)."""
    if name in ("rollback", "Rollback"):
        from reconciler import rollback as module

        return getattr(module, name)
    raise AttributeError(name)
