"""Reading flows out of commits: one folder's ``key -> blob id`` (a tree-to-tree diff from the last
tree read when it can, so the cost follows what changed), blobs, commits and ancestry.

A folder that is missing or not a folder, and entries at a flow's path that are
not files (a submodule, a symlink), are reported, never read as "no flows".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import pygit2

from reconciler.errors import Problem, RetryableError, StallError
from reconciler.flows import FlowKey, sql_export
from reconciler.names import InvalidName, parse_flow_path

from .packwriter import PackWriter

__all__ = ["ReadingMixin", "FlowTree", "entry_kind", "mode_kind", "FILE_MODES"]

_BLOB = pygit2.GIT_OBJECT_BLOB
_TREE = pygit2.GIT_OBJECT_TREE
# Tree entry modes of regular files (a symlink is 0o120000, a submodule 0o160000).
FILE_MODES = frozenset({0o100644, 0o100755})
_ZERO_ID = b"\0" * 20


@dataclass(frozen=True)
class FlowTree:
    """The flows of one folder at one commit: key -> blob id, plus bad entries.

    ``missing`` says why there is no folder to read (None when there is one):
    ``"absent"`` (the commit has no such folder) or what stands in its place
    (``"a file"``, ``"a submodule"``, ``"a symlink"``). A missing folder is never
    the same as a folder without flows: the caller decides what it means.
    """

    commit: str | None
    flows: Mapping[FlowKey, str]
    problems: tuple[Problem, ...] = ()
    missing: str | None = None
    bad: Mapping[FlowKey, str] = field(default_factory=dict)  # entries at a flow's path that are not files
    tree: str | None = None  # the folder's tree id: the same id means the same flows


class ReadingMixin:
    """Reading flows, blobs and commits (mixed into :class:`~reconciler.gitstore.GitStore`)."""

    repo: pygit2.Repository
    path: Path
    _pending: PackWriter
    _trees: dict[tuple[str, str], FlowTree]
    _last: dict[str, tuple[pygit2.Tree, FlowTree]]

    def flows_at(self, commit: str | None, folder: str) -> FlowTree:
        """Every ``<folder>/<name>/<version>.json`` of a commit.

        Trees never change, so the result is cached by the folder's tree id: a
        reconcile where nothing changed in git reads no tree at all.
        """
        if commit is None:
            return FlowTree(None, {}, missing="absent")
        tree, missing = self._subtree(self._commit(commit).tree, folder)
        if tree is None:
            return FlowTree(commit, {}, missing=missing)
        cached = self._trees.get((str(tree.id), folder))
        if cached is not None:
            return FlowTree(commit, cached.flows, cached.problems, bad=cached.bad, tree=cached.tree)
        result = self._read_changed(commit, tree, folder) or self._read_flows(commit, tree, folder)
        result = replace(result, tree=str(tree.id))
        if len(self._trees) >= 8:
            self._trees.pop(next(iter(self._trees)))
        self._trees[(str(tree.id), folder)] = result
        self._last[folder] = (tree, result)
        return result

    def remember_tree(self, folder: str, tree: str, flows: Mapping[FlowKey, str]) -> None:
        """The flows of a folder's tree as a previous process read them (the engine's kept reads,
        :mod:`reconciler.readindex`): a commit with this folder then reads no tree, and one with
        another folder diffs from it. Ignored when the repository has no such tree."""
        try:
            obj = self.repo.get(pygit2.Oid(hex=tree))
        except (ValueError, pygit2.GitError):
            return
        if obj is None or obj.type != _TREE or (tree, folder) in self._trees:
            return
        known = FlowTree(None, flows, tree=tree)
        if len(self._trees) >= 8:
            self._trees.pop(next(iter(self._trees)))
        self._trees[(tree, folder)] = known
        self._last.setdefault(folder, (obj, known))

    def _read_changed(self, commit: str, tree: pygit2.Tree, folder: str) -> FlowTree | None:
        """The flows of ``tree`` from the last tree read and a tree-to-tree diff.

        libgit2 descends only into sub-trees whose ids differ, so the cost grows
        with the number of changed flows, not with the number of flows. Returns
        None (read everything) when there is nothing to start from, or when
        either side has entries that are not flow paths.
        """
        last = self._last.get(folder)
        if last is None or last[1].problems:
            return None
        old_tree, old = last
        flows = dict(old.flows)
        try:
            deltas = old_tree.diff_to_tree(tree).deltas
            for delta in deltas:
                for side, removing in ((delta.old_file, True), (delta.new_file, False)):
                    if side.id.raw == _ZERO_ID:  # the side that does not exist
                        continue
                    if not removing and side.mode not in FILE_MODES:
                        return None  # a submodule, a symlink: the full read reports the entry
                    key = FlowKey(*parse_flow_path(side.path))
                    if removing:
                        flows.pop(key, None)
                    else:
                        flows[key] = str(side.id)
        except InvalidName:
            return None
        except (pygit2.GitError, OSError) as exc:
            raise RetryableError(f"cannot diff trees in {self.path}: {exc}") from exc
        return FlowTree(commit, flows)

    def _read_flows(self, commit: str, tree: pygit2.Tree, folder: str) -> FlowTree:
        flows: dict[FlowKey, str] = {}
        bad: dict[FlowKey, str] = {}
        problems: list[Problem] = []
        for entry in tree:
            where = f"{folder}/{entry.name}"
            if entry.type != _TREE and entry.name.endswith(".sql"):
                problems.append(Problem(where, sql_export(f"`{entry.name}`")))
                continue
            if entry.type != _TREE:
                kind = entry_kind(entry).removeprefix("a ")
                problems.append(Problem(where, f"unexpected {kind} in {folder}/: flows live at {folder}/<name>/<version>.json"))
                continue
            for sub in self.repo[entry.id]:
                rel = f"{entry.name}/{sub.name}"
                try:
                    if rel.endswith(".sql"):
                        problems.append(Problem(f"{folder}/{rel}", sql_export(f"`{sub.name}`")))
                        continue
                    name, version = parse_flow_path(rel)
                except InvalidName as exc:
                    problems.append(Problem(f"{folder}/{rel}", f"not a flow path ({exc}); expected {folder}/<name>/<version>.json"))
                    continue
                key = FlowKey(name, version)
                if sub.type != _BLOB or sub.filemode not in FILE_MODES:
                    # At a flow's path but not a file: that flow is unusable, not deleted.
                    why = f"{entry_kind(sub)}, not a file; replace it with the flow's JSON"
                    bad[key] = why
                    problems.append(Problem(f"{folder}/{rel}", why, flow=str(key)))
                    continue
                flows[key] = str(sub.id)
        return FlowTree(commit, flows, tuple(problems), bad=bad)

    def flows_in(self, entries: Mapping[str, tuple[str, int]], folder: str) -> FlowTree:
        """The flows of ``folder`` among the entries of a merged tree (path -> (blob id, mode))."""
        flows: dict[FlowKey, str] = {}
        bad: dict[FlowKey, str] = {}
        problems: list[Problem] = []
        prefix = folder + "/"
        for path, (oid, mode) in sorted(entries.items()):
            if not path.startswith(prefix):
                continue
            try:
                key = FlowKey(*parse_flow_path(path[len(prefix):]))
            except InvalidName as exc:
                problems.append(Problem(path, f"not a flow path ({exc}); expected {folder}/<name>/<version>.json"))
                continue
            if mode not in FILE_MODES:
                bad[key] = f"{mode_kind(mode)}, not a file; replace it with the flow's JSON"
                problems.append(Problem(path, bad[key], flow=str(key)))
                continue
            flows[key] = oid
        return FlowTree(None, flows, tuple(problems), bad=bad)

    def read_state(self, ref: str) -> dict | None:
        """The JSON document :meth:`write_state` keeps at ``ref`` (None when there is none, or it is empty)."""
        import orjson

        tip = self.tip(ref)
        if tip is None:
            return None
        try:
            entry = self._commit(tip).tree["state.json"]
            return orjson.loads(self.repo[entry.id].data) or None
        except (KeyError, pygit2.GitError, orjson.JSONDecodeError) as exc:
            raise RetryableError(f"cannot read {ref}: {exc}") from exc

    def blob_size(self, oid: str) -> int:
        try:
            return self.repo.odb.read_header(pygit2.Oid(hex=oid))[1]
        except (KeyError, pygit2.GitError, ValueError) as exc:
            raise RetryableError(f"cannot read object {oid}: {exc}") from exc

    def read_blob(self, oid: str) -> bytes:
        if bytes.fromhex(oid) in self._pending:
            return self._pending.get(bytes.fromhex(oid))
        try:
            return self.repo[pygit2.Oid(hex=oid)].data
        except (KeyError, pygit2.GitError) as exc:
            raise RetryableError(f"cannot read object {oid}: {exc}") from exc

    def has_object(self, oid: str) -> bool:
        return bytes.fromhex(oid) in self._pending or pygit2.Oid(hex=oid) in self.repo.odb

    def _commit(self, oid: str) -> pygit2.Commit:
        try:
            obj = self.repo[pygit2.Oid(hex=oid)]
            return obj.peel(pygit2.Commit)
        except (KeyError, pygit2.GitError, ValueError) as exc:
            raise RetryableError(f"cannot read commit {oid}: {exc}") from exc

    def _subtree(self, tree: pygit2.Tree, folder: str) -> tuple[pygit2.Tree | None, str | None]:
        """The folder's tree, or (None, why it is missing)."""
        for seg in folder.split("/"):
            if seg not in tree:
                return None, "absent"
            entry = tree[seg]
            if entry.type != _TREE:
                return None, entry_kind(entry)
            tree = self.repo[entry.id]
        return tree, None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        if ancestor == descendant:
            return True
        try:
            return self.repo.descendant_of(pygit2.Oid(hex=descendant), pygit2.Oid(hex=ancestor))
        except (pygit2.GitError, OSError):
            return False

    def resolve(self, ref: str, *, prefer: tuple[str, ...] = ()) -> str:
        """The commit a branch, tag, remote branch, commit id or revision expression names.

        ``prefer``: full ref names to try first (a remote's branches, what a merge request holds).
        """
        short = ref.removeprefix("origin/")
        candidates = [*prefer, ref if ref.startswith("refs/") else f"refs/heads/{ref}", f"refs/tags/{ref}",
                      f"refs/remotes/origin/{short}"]
        try:
            for name in candidates:
                if pygit2.reference_is_valid_name(name):
                    tip = self.tip(name)
                    if tip is not None:
                        return str(self.repo[pygit2.Oid(hex=tip)].peel(pygit2.Commit).id)
            return str(self.repo.revparse_single(ref).peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise StallError(f"{ref!r} is not a branch, tag or commit of {self.path}") from exc

    def commit_time(self, commit: str) -> int:
        return self._commit(commit).commit_time

    def ref_mtime(self, ref: str) -> float | None:
        """When a loose ref file was last written (None when the ref is packed or absent)."""
        try:
            return os.stat(self.path / self.branch_ref(ref)).st_mtime
        except OSError:
            return None

    def parents(self, commit: str | None) -> tuple[str, ...]:
        return () if commit is None else tuple(str(p) for p in self._commit(commit).parent_ids)

    def subject(self, commit: str) -> str:
        """The first line of a commit's message."""
        lines = self._commit(commit).message.strip().splitlines()
        return lines[0] if lines else ""

    def tree_of(self, commit: str | None) -> str | None:
        return None if commit is None else str(self._commit(commit).tree_id)


def entry_kind(entry: pygit2.Object) -> str:
    return mode_kind(entry.filemode)


def mode_kind(mode: int) -> str:
    if mode == 0o160000:
        return "a submodule"
    if mode == 0o120000:
        return "a symlink"
    if mode == 0o040000:
        return "a folder"
    return "a file"
