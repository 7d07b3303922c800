"""The git store: flows in a bare repository, read and written with pygit2.

Layout per environment branch: ``<folder>/<name>/<version>.json`` (folder
``flows`` by default; names encoded by :mod:`reconciler.names`). Besides the
branches the store keeps, per environment:

- ``refs/reconciler/applied/<env>``: the applied marker, a commit whose tree
  is what the environment was last known to hold (the base of the three-way
  comparison);
- ``refs/heads/drift/<env>``: live content saved before the reconciler
  overwrote or deleted it.

Branch updates are compare-and-swap: ``create_commit(ref, ..., parents=[tip])``
fails when the tip moved, which surfaces as :class:`BranchMovedError` so the
caller re-reads and re-plans instead of losing a concurrent push. Every
``pygit2`` error is translated here; none reaches the core.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pygit2
import structlog

from reconciler.errors import BranchMovedError, Problem, RetryableError, StallError
from reconciler.flows import FlowKey
from reconciler.names import InvalidName, encode, parse_flow_path
from reconciler.packwriter import MODE_BLOB, MODE_TREE, OBJ_BLOB, OBJ_TREE, PackWriter, tree_bytes

if TYPE_CHECKING:
    from reconciler.config import RepositoryConfig

log = structlog.get_logger("reconciler.gitstore")

__all__ = ["GitStore", "CommitInfo", "FlowTree", "Merge", "MARKER_PREFIX"]

MARKER_PREFIX = "refs/reconciler/applied/"
_BLOB = pygit2.GIT_OBJECT_BLOB
_TREE = pygit2.GIT_OBJECT_TREE
# Tree entry modes of regular files (a symlink is 0o120000, a submodule 0o160000).
_FILE_MODES = frozenset({0o100644, 0o100755})
_ZERO_ID = b"\0" * 20
# Fewer queued objects than this are written loose; more go into one pack.
PACK_THRESHOLD = 64


@dataclass(frozen=True)
class CommitInfo:
    id: str
    time: int  # seconds since the epoch
    offset: int  # minutes east of UTC
    author: str
    email: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "time": self.time,
            "author": self.author,
            "email": self.email,
            "message": self.message,
        }


@dataclass(frozen=True)
class Merge:
    """A merge computed in memory: the merged tree (None when it conflicts), the conflicting
    paths, and every path of the merged tree with its blob id."""

    tree: str | None
    conflicts: tuple[str, ...]
    entries: Mapping[str, tuple[str, int]]  # path -> (blob id, mode)


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


class GitStore:
    """A bare repository holding every environment's branch."""

    def __init__(self, path: str | Path, *, author_name: str, author_email: str, create: bool = True,
                 stale_lock_after: float = 0.0):
        self.path = Path(path)
        self.stale_lock_after = stale_lock_after
        self._author = (author_name, author_email)
        self._pending = PackWriter()
        self._trees: dict[tuple[str, str], FlowTree] = {}
        self._last: dict[str, tuple[pygit2.Tree, FlowTree]] = {}  # per folder: the last tree read
        try:
            if (self.path / "HEAD").exists() or (self.path / ".git").exists():
                self.repo = pygit2.Repository(str(self.path))
            elif create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.repo = pygit2.init_repository(str(self.path), bare=True, initial_head="main")
            else:
                raise StallError(_missing_repository(self.path))
        except (pygit2.GitError, OSError) as exc:
            raise StallError(f"cannot open the git repository at {self.path}: {exc}") from exc

    @classmethod
    def from_config(cls, repository: "RepositoryConfig", *, create: bool = False) -> "GitStore":
        """The configured repository. Only ``create`` (export, demo, or a remote to fetch
        from) makes a new one: a mistyped path must never look like an empty repository."""
        return cls(repository.path, author_name=repository.author_name, author_email=repository.author_email,
                   stale_lock_after=repository.stale_lock_after, create=create)

    def ensure_present(self) -> None:
        """Raise :class:`RetryableError` naming the path when the repository went away
        (moved, deleted, a volume not mounted): libgit2 would answer from what it has
        open, or fail with an error that does not say what is missing."""
        if not (self.path / "HEAD").is_file() or not (self.path / "objects").is_dir():
            raise RetryableError(_missing_repository(self.path, gone=True))

    # -- refs ------------------------------------------------------------------

    def _clear_stale_lock(self, ref: str) -> bool:
        """Remove ``<ref>.lock`` if it is older than ``stale_lock_after``: left by a crash.

        git holds a ref lock for the milliseconds of one update, so a lock that
        old belongs to a process that died (``kill -9``, power loss) and would
        otherwise stall the environment until a person deletes it.
        """
        if self.stale_lock_after <= 0:
            return False
        lock = self.path / (self.branch_ref(ref) + ".lock")
        try:
            age = time.time() - lock.stat().st_mtime
            if age < self.stale_lock_after:
                return False
            held = lock.read_bytes()[:64].decode("ascii", "replace").strip()
            lock.unlink()
        except OSError:
            return False
        log.warning("removed a stale ref lock", file=str(lock), age_s=round(age, 1), held=held)
        return True

    @staticmethod
    def branch_ref(branch: str) -> str:
        return branch if branch.startswith("refs/") else f"refs/heads/{branch}"

    def tip(self, ref: str) -> str | None:
        """The commit a ref points at, or None when it does not exist."""
        try:
            reference = self.repo.references.get(self.branch_ref(ref))
            return None if reference is None else str(reference.resolve().target)
        except (pygit2.GitError, ValueError) as exc:
            raise RetryableError(f"cannot read {ref} in {self.path}: {exc}") from exc

    def marker(self, env: str) -> str | None:
        return self.tip(MARKER_PREFIX + env)

    def branches(self) -> list[str]:
        """Local branch names (``env/production``), sorted."""
        try:
            return sorted(r.removeprefix("refs/heads/") for r in self.repo.references if r.startswith("refs/heads/"))
        except (pygit2.GitError, OSError) as exc:
            raise RetryableError(f"cannot list the branches of {self.path}: {exc}") from exc

    def missing_branch(self, branch: str) -> str:
        """What to say about a branch that does not exist: the known ones, and what to do."""
        known = [b for b in self.branches() if not b.startswith(("drift/", "promote/"))]
        shown = ", ".join(known[:10]) + (f", … ({len(known) - 10} more)" if len(known) > 10 else "")
        return f"branch {branch} does not exist in {self.path} (known branches: {shown or 'none'})"

    def point_head_at(self, branch: str) -> None:
        """Make HEAD name ``branch`` if HEAD names a branch that does not exist, so that a
        ``git clone`` of the repository checks something out."""
        try:
            head = self.repo.references.get("HEAD")
            target = head.target if head is not None else None
            if isinstance(target, str) and self.repo.references.get(target) is None:
                self.repo.set_head(self.branch_ref(branch))
        except (pygit2.GitError, OSError) as exc:
            log.warning("could not point HEAD at a branch", branch=branch, error=str(exc))

    def set_marker(self, env: str, commit: str) -> None:
        self._set_ref(MARKER_PREFIX + env, commit, f"reconciler: applied marker of {env}")

    def _set_ref(self, ref: str, commit: str, message: str) -> None:
        for attempt in (1, 2):
            try:
                self.repo.create_reference_direct(ref, pygit2.Oid(hex=commit), True, message=message)
                return
            except (pygit2.GitError, OSError) as exc:
                if attempt == 1 and self._clear_stale_lock(ref):
                    continue
                raise RetryableError(f"cannot update {ref}: {self._lock_hint(ref) or exc}") from exc

    def _lock_hint(self, ref: str) -> str:
        lock = self.path / (self.branch_ref(ref) + ".lock")
        if not lock.exists():
            return ""
        after = f"; it is removed automatically once {self.stale_lock_after:g} s old" if self.stale_lock_after > 0 else ""
        return (f"{lock} exists. Another git process holds it, or one crashed and left it behind; "
                f"if no git process is running on this repository, delete that file{after}")

    # -- reading ---------------------------------------------------------------

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
                    if not removing and side.mode not in _FILE_MODES:
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
            if entry.type != _TREE:
                kind = _entry_kind(entry).removeprefix("a ")
                problems.append(Problem(where, f"unexpected {kind} in {folder}/: flows live at {folder}/<name>/<version>.json"))
                continue
            for sub in self.repo[entry.id]:
                rel = f"{entry.name}/{sub.name}"
                try:
                    name, version = parse_flow_path(rel)
                except InvalidName as exc:
                    problems.append(Problem(f"{folder}/{rel}", f"not a flow path ({exc}); expected {folder}/<name>/<version>.json"))
                    continue
                key = FlowKey(name, version)
                if sub.type != _BLOB or sub.filemode not in _FILE_MODES:
                    # At a flow's path but not a file: that flow is unusable, not deleted.
                    why = f"{_entry_kind(sub)}, not a file; replace it with the flow's JSON"
                    bad[key] = why
                    problems.append(Problem(f"{folder}/{rel}", why, flow=str(key)))
                    continue
                flows[key] = str(sub.id)
        return FlowTree(commit, flows, tuple(problems), bad=bad)

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
                return None, _entry_kind(entry)
            tree = self.repo[entry.id]
        return tree, None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        if ancestor == descendant:
            return True
        try:
            return self.repo.descendant_of(pygit2.Oid(hex=descendant), pygit2.Oid(hex=ancestor))
        except (pygit2.GitError, OSError):
            return False

    # -- writing ---------------------------------------------------------------

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

    def tree_with(self, commit: str | None, folder: str, changes: Mapping[FlowKey, str | None]) -> str:
        """Tree id of ``commit``'s tree with the flows in ``changes`` set (blob id) or removed (None)."""
        base = self._commit(commit).tree_id.raw if commit else None
        edits: dict[tuple[str, ...], bytes | None] = {}
        for key, oid in changes.items():
            path = (*folder.split("/"), encode(key.name), encode(key.version) + ".json")
            edits[path] = None if oid is None else bytes.fromhex(oid)
        try:
            new = self._edit(base, edits)
        except (pygit2.GitError, OSError) as exc:
            raise RetryableError(f"cannot read a tree in {self.path}: {exc}") from exc
        return (new if new is not None else self._pending.add(OBJ_TREE, b"")).hex()

    def _entries(self, raw_id: bytes) -> dict[str, tuple[int, bytes]]:
        """name -> (mode, raw id) of a stored or queued tree."""
        if raw_id in self._pending:
            return _parse_tree(self._pending.get(raw_id))
        tree = self.repo[pygit2.Oid(raw=raw_id)]
        return {e.name: (e.filemode, e.id.raw) for e in tree}

    def _edit(self, tree: bytes | None, edits: Mapping[tuple[str, ...], bytes | None]) -> bytes | None:
        """Apply path edits to a tree; returns the new tree's id, None when it is empty."""
        entries = self._entries(tree) if tree is not None else {}
        groups: dict[str, dict[tuple[str, ...], bytes | None]] = {}
        for path, raw in edits.items():
            if len(path) == 1:
                if raw is None:
                    entries.pop(path[0], None)
                else:
                    entries[path[0]] = (MODE_BLOB, raw)
            else:
                groups.setdefault(path[0], {})[path[1:]] = raw
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
            if mode not in _FILE_MODES:
                bad[key] = f"{_mode_kind(mode)}, not a file; replace it with the flow's JSON"
                problems.append(Problem(path, bad[key], flow=str(key)))
                continue
            flows[key] = oid
        return FlowTree(None, flows, tuple(problems), bad=bad)

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

    def create_branch(self, branch: str, commit: str, message: str) -> None:
        """Create a new branch; an existing one of that name is an error (never moved)."""
        try:
            self.repo.create_reference_direct(self.branch_ref(branch), pygit2.Oid(hex=commit), False, message=message)
        except (pygit2.GitError, ValueError) as exc:
            raise RetryableError(f"cannot create the branch {branch}: {exc}") from exc

    def set_branch(self, branch: str, commit: str, message: str) -> None:
        """Point a branch at a commit, whatever it pointed at (the local copy of a branch the
        server rewrote; never used to move a branch the server does not own)."""
        self._set_ref(self.branch_ref(branch), commit, message)

    def set_ref(self, ref: str, commit: str, message: str) -> None:
        """Create or move one of the reconciler's own refs (``refs/reconciler/...``)."""
        if not ref.startswith("refs/reconciler/"):
            raise ValueError(f"{ref} is not one of the reconciler's own refs")
        self._set_ref(ref, commit, message)

    def subject(self, commit: str) -> str:
        """The first line of a commit's message."""
        lines = self._commit(commit).message.strip().splitlines()
        return lines[0] if lines else ""

    def tree_of(self, commit: str | None) -> str | None:
        return None if commit is None else str(self._commit(commit).tree_id)

    def commit_changes(self, branch: str, parent: str | None, folder: str, changes: Mapping[FlowKey, bytes | None], message: str) -> str | None:
        """Write flows to a branch in one commit (compare-and-swap from ``parent``).

        Returns the new commit id, or None when the tree did not change (no
        empty commits). Raises :class:`BranchMovedError` when the tip moved.
        """
        blobs = {k: (None if v is None else self.write_blob(v)) for k, v in changes.items()}
        tree = self.tree_with(parent, folder, blobs)
        if parent is not None and tree == self.tree_of(parent):
            self._pending.clear()  # everything queued already exists
            return None
        return self.commit(branch, parent, tree, message)

    def save_drift(self, env: str, folder: str, flows: Mapping[FlowKey, bytes], message: str, attempts: int = 5) -> str | None:
        """Commit live content to ``drift/<env>`` before it is overwritten; retries on a moved tip."""
        ref = f"refs/heads/drift/{env}"
        for _ in range(attempts):
            try:
                return self.commit_changes(ref, self.tip(ref), folder, flows, message)
            except BranchMovedError:
                continue
        raise RetryableError(f"drift/{env} kept moving; live content was not saved, nothing was overwritten")

    # -- history ---------------------------------------------------------------

    def history(self, ref: str, path: str | None = None, limit: int | None = None) -> list[CommitInfo]:
        """Commits reachable from ``ref`` (newest first); with ``path``, those that changed it."""
        tip = self.tip(ref)
        if tip is None:
            return []
        out: list[CommitInfo] = []
        try:
            # Unsorted is incremental, like `git log`: any sort (time, topological) walks all history first.
            walker = self.repo.walk(pygit2.Oid(hex=tip), pygit2.GIT_SORT_NONE)
            ahead: dict[pygit2.Oid, str | None] = {}  # parents' entries, computed once (the walk reaches them next)
            for c in walker:
                if path is not None:
                    mine = ahead.pop(c.id) if c.id in ahead else _entry_id(c.tree, path)
                    theirs = []
                    for p in c.parent_ids:
                        if p not in ahead:
                            ahead[p] = _entry_id(self.repo[p].tree, path)
                        theirs.append(ahead[p])
                    if theirs and all(t == mine for t in theirs):
                        continue
                    if not theirs and mine is None:
                        continue
                    if len(theirs) > 1 and mine in theirs:
                        continue  # a merge that took one side's version unchanged
                out.append(
                    CommitInfo(str(c.id), c.author.time, c.author.offset, c.author.name, c.author.email, c.message.strip())
                )
                if limit is not None and len(out) >= limit:
                    break
        except (pygit2.GitError, OSError) as exc:
            raise RetryableError(f"cannot walk the history of {ref}: {exc}") from exc
        return out

    # -- locking -----------------------------------------------------------------

    @contextmanager
    def lock(self, env: str, *, required: bool = True) -> Iterator[bool]:
        """One reconciler at a time per environment, across processes (flock).

        Yields True when this process holds the lock. With ``required`` (anything
        that writes) a lock held elsewhere raises :class:`RetryableError`; without
        it (read-only commands: plan, status) the caller goes on without the lock
        and says its answer may be stale.
        """
        if not re.fullmatch(r"[A-Za-z0-9._-]+", env):
            raise StallError(f"invalid environment name {env!r}")
        self.ensure_present()
        lockdir = self.path / "reconciler-locks"
        try:
            lockdir.mkdir(exist_ok=True)
            fd = os.open(lockdir / f"{env}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if not required and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                yield False  # a read-only repository: reading needs no lock
                return
            raise RetryableError(f"cannot take the lock of environment {env} in {lockdir}: {exc.strerror}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
            except BlockingIOError as exc:
                if required:
                    raise RetryableError(f"environment {env} is being reconciled by another process; try again") from exc
                held = False
            yield held
        finally:
            os.close(fd)


def _entry_kind(entry: pygit2.Object) -> str:
    return _mode_kind(entry.filemode)


def _mode_kind(mode: int) -> str:
    if mode == 0o160000:
        return "a submodule"
    if mode == 0o120000:
        return "a symlink"
    if mode == 0o040000:
        return "a folder"
    return "a file"


def _missing_repository(path: Path, gone: bool = False) -> str:
    what = "the git repository is gone from" if gone else "no git repository at"
    return (f"{what} {path}: check [repository] path in the config (a typo? a volume not mounted?); "
            "nothing is read as empty. `reconciler export ENV` creates a new repository from an environment's flows")


def _parse_tree(data: bytes) -> dict[str, tuple[int, bytes]]:
    out: dict[str, tuple[int, bytes]] = {}
    i = 0
    while i < len(data):
        space = data.index(b" ", i)
        nul = data.index(b"\0", space)
        out[data[space + 1 : nul].decode("utf-8")] = (int(data[i:space], 8), data[nul + 1 : nul + 21])
        i = nul + 21
    return out


def _entry_id(tree: pygit2.Tree, path: str) -> str | None:
    try:
        return str(tree[path].id)
    except KeyError:
        return None
