"""The history of a branch or of one flow, newest first, walked incrementally like ``git log``; one
commit's description, and the blob at one path of a commit (what the status page shows)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pygit2

from reconciler.errors import RetryableError

__all__ = ["HistoryMixin", "CommitInfo"]


@dataclass(frozen=True)
class CommitInfo:
    """One commit of a branch's history, as the history commands show it."""

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


class HistoryMixin:
    """Walking history (mixed into :class:`~reconciler.gitstore.GitStore`)."""

    repo: pygit2.Repository
    path: Path

    def history(self, ref: str, path: str | tuple[str, ...] | None = None, limit: int | None = None) -> list[CommitInfo]:
        """Commits reachable from ``ref`` (newest first); with ``path``, those that changed it (with several
        paths, any of them: a flow's JSON and its sidecar folder)."""
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
                    if not theirs and (mine is None or (isinstance(mine, tuple) and not any(mine))):
                        continue
                    if len(theirs) > 1 and mine in theirs:
                        continue  # a merge that took one side's version unchanged
                out.append(_info(c))
                if limit is not None and len(out) >= limit:
                    break
        except (pygit2.GitError, OSError) as exc:
            raise RetryableError(f"cannot walk the history of {ref}: {exc}") from exc
        return out

    def commit_info(self, commit: str) -> CommitInfo:
        """One commit's id, time, author and message."""
        return _info(self._peeled(commit))

    def blob_at(self, commit: str, path: str) -> str | None:
        """The blob id at ``path`` in ``commit`` (None when there is no file there), without reading the folder."""
        tree = self._peeled(commit).tree
        try:
            entry = tree[path]
        except KeyError:
            return None
        return str(entry.id) if entry.type == pygit2.GIT_OBJECT_BLOB else None

    def _peeled(self, commit: str) -> pygit2.Commit:
        try:
            return self.repo[pygit2.Oid(hex=commit)].peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise RetryableError(f"cannot read commit {commit}: {exc}") from exc


def _info(c: pygit2.Commit) -> CommitInfo:
    return CommitInfo(str(c.id), c.author.time, c.author.offset, c.author.name, c.author.email, c.message.strip())


def _entry_id(tree: pygit2.Tree, path: str | tuple[str, ...]) -> str | tuple[str | None, ...] | None:
    if isinstance(path, tuple):
        return tuple(_one(tree, p) for p in path)
    return _one(tree, path)


def _one(tree: pygit2.Tree, path: str) -> str | None:
    try:
        return str(tree[path].id)
    except KeyError:
        return None
