"""Reading flows out of commits: one folder's ``key -> entry id`` (a tree-to-tree diff from the last
tree read when it can, so the cost follows what changed), a flow's files, blobs, commits and ancestry.

A flow is ``<name>/<version>.json`` and, in the split form, its sidecar folder ``<name>/<version>/``
(:mod:`reconciler.sidecars`); its entry id is the JSON blob's id, with the folder's tree id when it
has one, so a change of any sidecar is a change of the flow. A folder that is missing or not a
folder, entries at a flow's path that are not files (a submodule, a symlink), and a sidecar folder
without its JSON are reported, never read as "no flows" (that flow is unusable, never deleted).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import pygit2

from reconciler.errors import Problem, RetryableError, StallError
from reconciler.flows import FlowKey, Patched, sql_export
from reconciler.names import InvalidName, decode, encode, parse_flow_path
from reconciler.sidecars import StoredFlow, entry_id, entry_parts

from .packwriter import MODE_TREE, OBJ_TREE, PackWriter, tree_bytes
from .entries import _BLOB, _TREE, FILE_MODES, _flow_entry, entry_kind, mode_kind

__all__ = ["ReadingMixin", "FlowTree", "entry_kind", "mode_kind", "FILE_MODES"]


@dataclass(frozen=True)
class FlowTree:
    """The flows of one folder at one commit: key -> blob id, plus bad entries.

    ``missing`` says why there is no folder to read (None when there is one):
    ``"absent"`` (the commit has no such folder) or what stands in its place
    (``"a file"``, ``"a submodule"``, ``"a symlink"``). A missing folder is never
    the same as a folder without flows: the caller decides what it means.
    """

    commit: str | None
    flows: Mapping[FlowKey, str]  # key -> entry id (the JSON's blob id, "+<tree id>" with a sidecar folder)
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
    _entries: Callable[[bytes], dict[str, tuple[int, bytes]]]  # a tree's entries (WritingMixin)

    def flows_at(self, commit: str | None, folder: str) -> FlowTree:
        """Every ``<folder>/<name>/<version>.json`` of a commit.

        Trees never change, so the result is cached by the folder's tree id: a
        reconcile where nothing changed in git reads no tree at all.
        """
        if commit is None:
            return FlowTree(None, {}, missing="absent")
        tree_id, missing = self._subtree_id(self._commit(commit).tree, folder)
        if tree_id is None:
            return FlowTree(commit, {}, missing=missing)
        cached = self._trees.get((str(tree_id), folder))
        if cached is not None:  # known by its id: the tree itself is not even loaded (10,000 flows: ~5 ms)
            return FlowTree(commit, cached.flows, cached.problems, bad=cached.bad, tree=cached.tree)
        tree = self.repo[tree_id]
        result = self._read_changed(commit, tree, folder) or self._read_flows(commit, tree, folder)
        result = replace(result, tree=str(tree.id))
        if len(self._trees) >= 8:
            self._trees.pop(next(iter(self._trees)))
        self._trees[(str(tree.id), folder)] = result
        self._last[folder] = (tree, result)
        return result

    def folder_tree(self, commit: str, folder: str) -> str | None:
        """The id of a commit's folder tree (None when it has no such folder), without reading it."""
        tree_id = self._subtree_id(self._commit(commit).tree, folder)[0]
        return None if tree_id is None else str(tree_id)

    def remember_tree(self, folder: str, tree: str, flows: Mapping[FlowKey, str]) -> None:
        """The flows of a folder's tree as a previous process read them (the engine's kept reads,
        :mod:`reconciler.readindex`): a commit with this folder then reads no tree, and one with
        another folder diffs from it. Ignored when the repository has no such tree."""
        try:
            obj = self.repo.get(pygit2.Oid(hex=tree))
        except (ValueError, pygit2.GitError):
            return
        if obj is not None and obj.type == _TREE and (tree, folder) not in self._trees:
            self._last.setdefault(folder, (obj, self._know(tree, folder, flows)))

    def _know(self, tree: str, folder: str, flows: Mapping[FlowKey, str]) -> FlowTree:
        """Keep the flows of a folder's tree (a plain folder of flows: no problem, no bad entry) by its id."""
        if len(self._trees) >= 8:
            self._trees.pop(next(iter(self._trees)))
        self._trees[(tree, folder)] = known = FlowTree(None, flows, tree=tree)
        return known

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
        flows = Patched(old.flows)
        touched: set[tuple[str, str]] = set()
        try:
            deltas = old_tree.diff_to_tree(tree).deltas
            for delta in deltas:
                for side, removing in ((delta.old_file, True), (delta.new_file, False)):
                    if side.id.raw == bytes(20):  # the side that does not exist
                        continue
                    parts = side.path.split("/")
                    if len(parts) == 2 and parts[1].endswith(".json"):
                        if not removing and side.mode not in FILE_MODES:
                            return None  # a submodule, a symlink: the full read reports the entry
                        touched.add((parts[0], parts[1][:-5]))
                    elif len(parts) == 3:  # a sidecar file: its flow changed
                        touched.add((parts[0], parts[1]))
                    else:
                        return None  # not a flow's file: the full read reports it
            keys = set()
            for name_seg, version_seg in touched:
                key = FlowKey(decode(name_seg), decode(version_seg))
                keys.add(key)
                folder_entry = tree[name_seg] if name_seg in tree else None
                sub = self.repo[folder_entry.id] if folder_entry is not None and folder_entry.type == _TREE else None
                if folder_entry is not None and sub is None:
                    return None
                json_entry = sub[version_seg + ".json"] if sub is not None and version_seg + ".json" in sub else None
                side_entry = sub[version_seg] if sub is not None and version_seg in sub else None
                entry, why = _flow_entry(json_entry, side_entry)
                if why is not None:
                    return None  # the full read reports it
                if entry is None:
                    flows.pop(key, None)
                else:
                    flows[key] = entry
        except InvalidName:
            return None
        except (pygit2.GitError, OSError) as exc:
            raise RetryableError(f"cannot diff trees in {self.path}: {exc}") from exc
        flows.changed = frozenset(keys)  # the keys the diff touched: what a derivation reads again
        return FlowTree(commit, flows)

    def _read_flows(self, commit: str, tree: pygit2.Tree, folder: str) -> FlowTree:
        flows: dict[FlowKey, str] = Patched()  # what the next diff patches
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
            subs = {sub.name: sub for sub in self.repo[entry.id]}
            for sub in subs.values():
                rel = f"{entry.name}/{sub.name}"
                if sub.type == _TREE and f"{sub.name}.json" in subs:
                    continue  # the sidecar folder of a flow: read with its JSON
                try:
                    if rel.endswith(".sql"):
                        problems.append(Problem(f"{folder}/{rel}", sql_export(f"`{sub.name}`")))
                        continue
                    if not sub.name.endswith(".json") and sub.type == _TREE:
                        key = FlowKey(decode(entry.name), decode(sub.name))
                        why = f"a sidecar folder without its flow: {sub.name}.json is missing; restore it, or delete the folder"
                        bad[key] = why
                        problems.append(Problem(f"{folder}/{rel}/", why, flow=str(key)))
                        continue
                    name, version = parse_flow_path(rel)
                except InvalidName as exc:
                    problems.append(Problem(f"{folder}/{rel}", f"not a flow path ({exc}); expected {folder}/<name>/<version>.json"))
                    continue
                key = FlowKey(name, version)
                flow_entry, why = _flow_entry(sub, subs.get(sub.name[:-5]))
                if why is not None:
                    # At a flow's path but not a file (or a sidecar folder that is not one): unusable, not deleted.
                    bad[key] = why
                    problems.append(Problem(f"{folder}/{rel}", why, flow=str(key)))
                    continue
                assert flow_entry is not None
                flows[key] = flow_entry
        return FlowTree(commit, flows, tuple(problems), bad=bad)

    def flows_in(self, entries: Mapping[str, tuple[str, int]], folder: str) -> FlowTree:
        """The flows of ``folder`` among the entries of a merged tree (path -> (blob id, mode)).

        A sidecar folder's tree is made in memory (queued, like the trees of a commit being made)."""
        flows: dict[FlowKey, str] = {}
        bad: dict[FlowKey, str] = {}
        problems: list[Problem] = []
        prefix = folder + "/"
        jsons: dict[tuple[str, str], tuple[str, int, str]] = {}
        sides: dict[tuple[str, str], list[tuple[int, str, bytes]]] = {}
        for path, (oid, mode) in sorted(entries.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            if len(parts) == 2 and parts[1].endswith(".json"):
                jsons[(parts[0], parts[1][:-5])] = (oid, mode, path)
            elif len(parts) >= 3:
                sides.setdefault((parts[0], parts[1]), []).append(
                    (mode if len(parts) == 3 else MODE_TREE, parts[2], bytes.fromhex(oid)))
            else:
                problems.append(Problem(path, f"not a flow path; expected {folder}/<name>/<version>.json"))
        for segs in sorted(set(jsons) | set(sides)):
            where = f"{prefix}{segs[0]}/{segs[1]}"
            try:
                key = FlowKey(decode(segs[0]), decode(segs[1]))
            except InvalidName as exc:
                problems.append(Problem(where + ".json", f"not a flow path ({exc}); expected {folder}/<name>/<version>.json"))
                continue
            if segs not in jsons:
                bad[key] = f"a sidecar folder without its flow: {segs[1]}.json is missing; restore it, or delete the folder"
                problems.append(Problem(where + "/", bad[key], flow=str(key)))
                continue
            oid, mode, path = jsons[segs]
            if mode not in FILE_MODES:
                bad[key] = f"{mode_kind(mode)}, not a file; replace it with the flow's JSON"
                problems.append(Problem(path, bad[key], flow=str(key)))
                continue
            tree = None
            if segs in sides:
                listing = {name: (m, raw) for m, name, raw in sides[segs]}
                tree = self._pending.add(OBJ_TREE, tree_bytes((m, n, raw) for n, (m, raw) in listing.items())).hex()
            flows[key] = entry_id(oid, tree)
        return FlowTree(None, flows, tuple(problems), bad=bad)

    def flow_files(self, entry: str) -> StoredFlow:
        """A flow's JSON and sidecar files, as git holds them (entries of its folder that are not
        regular files are listed in ``bad``). Raises RetryableError when an object cannot be read."""
        got = self.flow_files_within(entry, None)
        assert isinstance(got, StoredFlow)
        return got

    def flow_files_within(self, entry: str, limit: int | None) -> StoredFlow | int:
        """:meth:`flow_files`, or the flow's size in bytes (JSON and sidecars, from the objects' headers,
        nothing read) when it is larger than ``limit``."""
        json_oid, tree = entry_parts(entry)
        try:
            listing = self._entries(bytes.fromhex(tree)) if tree is not None else {}
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise RetryableError(f"cannot read object {tree}: {exc}") from exc
        if limit is not None:
            size = self.blob_size(json_oid) + sum(self.blob_size(raw.hex()) for mode, raw in listing.values()
                                                  if mode in FILE_MODES)
            if size > limit:
                return size
        data = self.read_blob(json_oid)
        if tree is None:
            return StoredFlow(data)
        sidecars: dict[str, bytes] = {}
        bad: dict[str, str] = {}
        for name, (mode, raw) in listing.items():
            if mode in FILE_MODES:
                sidecars[name] = self.read_blob(raw.hex())
            else:
                bad[name] = mode_kind(mode)
        return StoredFlow(data, sidecars, bad)

    def entry_at(self, commit: str, folder: str, key: FlowKey) -> str | None:
        """One flow's entry id at ``commit`` (None when it has no usable JSON there), without reading the folder."""
        tree, _ = self._subtree(self._commit(commit).tree, folder)
        name = encode(key.name)
        if tree is None or name not in tree or tree[name].type != _TREE:
            return None
        sub = self.repo[tree[name].id]
        version = encode(key.version)
        entry, _ = _flow_entry(sub[version + ".json"] if version + ".json" in sub else None,
                               sub[version] if version in sub else None)
        return entry

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
        raw = bytes.fromhex(oid)
        if raw in self._pending:
            return self._pending.get(raw)
        try:  # the object database, not repo[]: no Blob object built for every sidecar of every flow
            kind, data = self.repo.odb.read(pygit2.Oid(raw=raw))
        except (KeyError, pygit2.GitError, ValueError) as exc:
            raise RetryableError(f"cannot read object {oid}: {exc}") from exc
        if kind != _BLOB:
            raise RetryableError(f"cannot read object {oid}: not a blob (object type {kind})")
        return data

    def has_object(self, oid: str) -> bool:
        return bytes.fromhex(oid) in self._pending or pygit2.Oid(hex=oid) in self.repo.odb

    def _commit(self, oid: str) -> pygit2.Commit:
        try:
            obj = self.repo[pygit2.Oid(hex=oid)]
            return obj.peel(pygit2.Commit)
        except (KeyError, pygit2.GitError, ValueError) as exc:
            raise RetryableError(f"cannot read commit {oid}: {exc}") from exc

    def _subtree_id(self, tree: pygit2.Tree, folder: str) -> tuple[pygit2.Oid | None, str | None]:
        """The id of the folder's tree (not loaded), or (None, why it is missing)."""
        *parents, last = folder.split("/")
        if parents:
            tree, missing = self._subtree(tree, "/".join(parents))
            if tree is None:
                return None, missing
        if last not in tree:
            return None, "absent"
        entry = tree[last]
        if entry.type != _TREE:
            return None, entry_kind(entry)
        return entry.id, None

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
