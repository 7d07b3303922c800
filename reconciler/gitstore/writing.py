"""Writing to the store: objects queued and written as one pack per batch (loose for a handful),
flows put as their JSON and sidecar folder (:mod:`reconciler.sidecars`), trees edited path by path, commits moving a branch by compare-and-swap (a moved tip is
:class:`BranchMovedError`: read and plan again), the drift branch, and merges in memory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pygit2

from reconciler.errors import BranchMovedError, RetryableError
from reconciler.flows import FlowKey, Patched
from reconciler.names import encode
from reconciler.sidecars import StoredFlow, entry_id, entry_parts

from .packwriter import MODE_BLOB, MODE_TREE, OBJ_BLOB, OBJ_TREE, PackWriter, object_id, tree_bytes

__all__ = ["WritingMixin", "Merge", "PACK_THRESHOLD"]

# Fewer queued objects than this are written loose; more go into one pack.
PACK_THRESHOLD = 64


@dataclass(frozen=True)
class Merge:
    """A merge computed in memory: the merged tree (None when it conflicts), the conflicting
    paths, and every path of the merged tree with its blob id."""

    tree: str | None
    conflicts: tuple[str, ...]
    entries: Mapping[str, tuple[str, int]]  # path -> (blob id, mode)


class WritingMixin:
    """Writing objects, trees and commits (mixed into :class:`~reconciler.gitstore.GitStore`)."""

    repo: pygit2.Repository
    path: Path
    _pending: PackWriter
    _author: tuple[str, str]

    def write_blob(self, data: bytes) -> str:
        """Queue a blob for the next commit's pack; returns its id."""
        return self._pending.add(OBJ_BLOB, data).hex()

    def flush(self) -> None:
        """Store queued objects: one pack for a batch, loose objects for a handful."""
        if not len(self._pending):
            return
        try:
            if len(self._pending) >= PACK_THRESHOLD:
                self._pending.write(Path(self.repo.path) / "objects")
            else:
                for _, kind, data in self._pending.items():
                    self.repo.odb.write(kind, data)
                self._pending.clear()
        except (OSError, pygit2.GitError) as exc:
            self._pending.clear()
            raise RetryableError(f"cannot write objects to {self.path}: {exc}") from exc

    def put_flow(self, flow: StoredFlow | bytes) -> str:
        """Queue a flow's JSON and sidecar folder for the next commit; returns its entry id."""
        if isinstance(flow, bytes):
            return self.write_blob(flow)
        json_oid = self.write_blob(flow.json)
        if not flow.sidecars:
            return json_oid
        listing = [(MODE_BLOB, name, bytes.fromhex(self.write_blob(data))) for name, data in flow.sidecars.items()]
        return entry_id(json_oid, self._pending.add(OBJ_TREE, tree_bytes(listing)).hex())

    @staticmethod
    def flow_entry_id(flow: StoredFlow | bytes) -> str:
        """The entry id :meth:`put_flow` gives ``flow``, computed without queuing anything (for what was
        just committed)."""
        if isinstance(flow, bytes):
            return object_id(OBJ_BLOB, flow).hex()
        json_oid = object_id(OBJ_BLOB, flow.json).hex()
        if not flow.sidecars:
            return json_oid
        listing = [(MODE_BLOB, name, object_id(OBJ_BLOB, data)) for name, data in flow.sidecars.items()]
        return entry_id(json_oid, object_id(OBJ_TREE, tree_bytes(listing)).hex())

    def tree_with(self, commit: str | None, folder: str, changes: Mapping[FlowKey, str | None]) -> str:
        """Tree id of ``commit``'s tree with the flows in ``changes`` set (entry id) or removed (None): the
        JSON at ``<name>/<version>.json`` and the sidecar folder at ``<name>/<version>/`` (removed when the
        flow has none), so a flow's files always move together."""
        base = self._commit(commit).tree_id.raw if commit else None
        edits: dict[tuple[str, ...], tuple[int, bytes] | None] = {}
        for key, entry in changes.items():
            stem = (*folder.split("/"), encode(key.name), encode(key.version))
            json_path = (*stem[:-1], stem[-1] + ".json")
            if entry is None:
                edits[json_path] = edits[stem] = None
                continue
            json_oid, tree = entry_parts(entry)
            edits[json_path] = (MODE_BLOB, bytes.fromhex(json_oid))
            edits[stem] = None if tree is None else (MODE_TREE, bytes.fromhex(tree))
        try:
            new = self._edit(base, edits)
            if new is not None and commit is not None:
                self._learn(commit, folder, changes, new)
        except (pygit2.GitError, OSError) as exc:
            raise RetryableError(f"cannot read a tree in {self.path}: {exc}") from exc
        return (new if new is not None else self._pending.add(OBJ_TREE, b"")).hex()

    def _learn(self, commit: str, folder: str, changes: Mapping[FlowKey, str | None], root: bytes) -> None:
        """The flows of the folder tree :meth:`tree_with` just made under ``root``: those of ``commit``'s
        folder as read (a plain folder of flows: no problem, no bad entry) with ``changes`` applied, entry
        for entry as the edit wrote them. A commit of the new tree then reads no tree (an export's marker
        step reads its own commit: a diff of the 10,000-entry folder, ~50 ms)."""
        old_id, _ = self._subtree_id(self._commit(commit).tree, folder)
        old = self._trees.get((str(old_id), folder)) if old_id is not None else None
        if old is None or old.problems or old.bad or old.missing is not None:
            return
        sub: bytes = root
        for seg in folder.split("/"):
            got = self._entries(sub).get(seg)
            if got is None or got[0] != MODE_TREE:
                return
            sub = got[1]
        flows = Patched(old.flows, set(changes))  # what a derivation from the old folder reads again
        for key, entry in changes.items():
            if entry is None:
                flows.pop(key, None)
            else:
                flows[key] = entry
        self._know(sub.hex(), folder, flows)

    def _entries(self, raw_id: bytes) -> dict[str, tuple[int, bytes]]:
        """name -> (mode, raw id) of a stored or queued tree."""
        if raw_id in self._pending:
            return _parse_tree(self._pending.get(raw_id))
        kind, data = self.repo.odb.read(pygit2.Oid(raw=raw_id))  # not repo[]: an enum per entry's mode
        if kind == pygit2.GIT_OBJECT_TREE:
            try:
                return _parse_tree(data)
            except UnicodeDecodeError:  # a name that is not UTF-8: as pygit2 reads it
                pass
        return {e.name: (e.filemode, e.id.raw) for e in self.repo[pygit2.Oid(raw=raw_id)]}

    def _edit(self, tree: bytes | None, edits: Mapping[tuple[str, ...], tuple[int, bytes] | None]) -> bytes | None:
        """Apply path edits ((mode, raw id), or None to remove) to a tree; returns the new tree's id,
        None when it is empty."""
        entries = self._entries(tree) if tree is not None else {}
        groups: dict[str, dict[tuple[str, ...], tuple[int, bytes] | None]] = {}
        for path, value in edits.items():
            if len(path) == 1:
                if value is None:
                    entries.pop(path[0], None)
                else:
                    entries[path[0]] = value
            else:
                groups.setdefault(path[0], {})[path[1:]] = value
        for name, sub in groups.items():
            existing = entries.get(name)
            subtree = existing[1] if existing is not None and existing[0] == MODE_TREE else None
            new = self._edit(subtree, sub)
            if new is None:
                entries.pop(name, None)
            else:
                entries[name] = (MODE_TREE, new)
        if not entries:
            return None
        data = tree_bytes((mode, name, raw) for name, (mode, raw) in entries.items())
        return self._pending.add(OBJ_TREE, data)

    def commit(self, ref: str | None, parent: str | None, tree: str, message: str, *, extra_parents: tuple[str, ...] = ()) -> str:
        """Create a commit; when ``ref`` is given, move it by compare-and-swap from ``parent``."""
        self.flush()
        sig = pygit2.Signature(*self._author)
        parents = [pygit2.Oid(hex=p) for p in (parent, *extra_parents) if p]
        try:
            # Written first on its own: libgit2's create_commit without a ref returns the id of a commit it
            # could not store (a full disk), and the next ref update then fails with a puzzling message.
            raw = self.repo.create_commit_string(sig, sig, message, pygit2.Oid(hex=tree), parents)
            self.repo.odb.write(pygit2.enums.ObjectType.COMMIT, raw)
        except (pygit2.GitError, OSError) as exc:
            raise RetryableError(f"cannot write objects to {self.path}: {exc}") from exc
        for attempt in (1, 2):
            try:
                oid = self.repo.create_commit(
                    self.branch_ref(ref) if ref else None, sig, sig, message, pygit2.Oid(hex=tree), parents
                )
                return str(oid)
            except (pygit2.GitError, OSError) as exc:  # pygit2 reports a held ref lock as OSError
                if "current tip is not the first parent" in str(exc):
                    raise BranchMovedError(f"{ref} moved while the reconciler was writing to it") from exc
                if ref and attempt == 1 and self._clear_stale_lock(ref):
                    continue
                hint = self._lock_hint(ref) if ref else ""
                if hint:
                    raise RetryableError(f"cannot update {ref}: {hint}") from exc
                raise RetryableError(f"cannot commit to {ref or 'the repository'}: {exc}") from exc
        raise AssertionError("unreachable")

    def merge(self, ancestor: str | None, ours: str, theirs: str, *, write: bool = True) -> "Merge":
        """A three-way merge of two commits' trees in memory.

        ``ancestor`` None: their merge base. Conflicting paths are listed (each conflict is
        (ancestor, ours, theirs) entries, any of which may be missing) and no tree is made.
        ``write`` False writes nothing at all (the merged tree is only described by its entries).
        """
        try:
            repo = self.repo
            if ancestor is None:
                index = repo.merge_commits(pygit2.Oid(hex=ours), pygit2.Oid(hex=theirs))
            else:
                index = repo.merge_trees(self._commit(ancestor).tree, self._commit(ours).tree,
                                         self._commit(theirs).tree)
            if index.conflicts is not None:
                paths = sorted({next(e for e in entries if e is not None).path for entries in index.conflicts})
                return Merge(None, tuple(paths), {})
            entries = {e.path: (str(e.id), e.mode) for e in index}
            return Merge(str(index.write_tree(repo)) if write else None, (), entries)
        except (pygit2.GitError, OSError, KeyError) as exc:
            raise RetryableError(f"cannot merge {theirs[:12]} into {ours[:12]} in {self.path}: {exc}") from exc

    def write_state(self, ref: str, state: dict | None, message: str) -> None:
        """Keep a small JSON document at one of the reconciler's refs: a commit holding ``state.json`` whose
        parent is the previous state, so the ref's history is the log and replicas can tell which of two
        states is newer. None (nothing to keep) writes an empty state, never deletes the ref."""
        import orjson

        if not ref.startswith("refs/reconciler/"):
            raise ValueError(f"{ref} is not one of the reconciler's own refs")
        if state is None:
            if self.tip(ref) is None:
                return
            state = {}
        blob = self.write_blob(orjson.dumps(state, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        tree = self._pending.add(OBJ_TREE, tree_bytes([(MODE_BLOB, "state.json", bytes.fromhex(blob))])).hex()
        parent = self.tip(ref)
        commit = self.commit(None, parent, tree, message)
        self.set_ref(ref, commit, message.splitlines()[0])

    def commit_changes(self, branch: str, parent: str | None, folder: str,
                       changes: Mapping[FlowKey, StoredFlow | bytes | str | None], message: str) -> str | None:
        """Write flows (their stored form, one JSON file's bytes, or the id of a JSON blob already stored) to
        a branch in one commit (compare-and-swap from ``parent``).

        Returns the new commit id, or None when the tree did not change (no
        empty commits). Raises :class:`BranchMovedError` when the tip moved.
        """
        blobs = {k: (v if v is None or type(v) is str else self.put_flow(v)) for k, v in changes.items()}
        tree = self.tree_with(parent, folder, blobs)
        if parent is not None and tree == self.tree_of(parent):
            self._pending.clear()  # everything queued already exists
            return None
        return self.commit(branch, parent, tree, message)

    def save_drift(self, env: str, folder: str, flows: Mapping[FlowKey, StoredFlow | bytes | str], message: str,
                   attempts: int = 5) -> str | None:
        """Commit live content to ``drift/<env>`` before it is overwritten; retries on a moved tip."""
        ref = f"refs/heads/drift/{env}"
        for _ in range(attempts):
            try:
                return self.commit_changes(ref, self.tip(ref), folder, flows, message)
            except BranchMovedError:
                continue
        raise RetryableError(f"drift/{env} kept moving; live content was not saved, nothing was overwritten")


_ENTRY = re.compile(rb"([0-7]+) ([^\0]*)\0(.{20})", re.S)  # one tree entry: mode, name, raw id
_MODES = {b"40000": 0o40000, b"100644": 0o100644, b"100755": 0o100755, b"120000": 0o120000, b"160000": 0o160000}


def _parse_tree(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, raw id) of a tree object's bytes: at C speed (a regex; 10,000 entries ~8 ms, not ~28)
    when its entries tile the bytes exactly with the modes git writes, else entry by entry (which raises on
    a malformed tree as it always has)."""
    found = _ENTRY.findall(data)
    if found:
        modes, names, ids = zip(*found)
        if sum(map(len, modes)) + sum(map(len, names)) + 22 * len(found) == len(data) and set(modes) <= _MODES.keys():
            return dict(zip(map(bytes.decode, names), zip(map(_MODES.__getitem__, modes), ids)))
    return _parse_tree_each(data)


def _parse_tree_each(data: bytes) -> dict[str, tuple[int, bytes]]:
    out: dict[str, tuple[int, bytes]] = {}
    i = 0
    while i < len(data):
        space = data.index(b" ", i)
        nul = data.index(b"\0", space)
        out[data[space + 1 : nul].decode("utf-8")] = (int(data[i:space], 8), data[nul + 1 : nul + 21])
        i = nul + 21
    return out
