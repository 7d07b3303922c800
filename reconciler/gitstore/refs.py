"""Refs of the store: branch tips, the applied markers, the reconciler's own refs, and ref locks a
crash left behind (removed once ``stale_lock_after`` old). Every error is translated to
:class:`RetryableError` naming the ref (and the lock file, if one blocks it).
"""

from __future__ import annotations

import time
from pathlib import Path

import pygit2

from reconciler.errors import RetryableError
from reconciler.logsetup import get_logger

__all__ = ["RefsMixin", "MARKER_PREFIX"]

log = get_logger("reconciler.gitstore")

MARKER_PREFIX = "refs/reconciler/applied/"


class RefsMixin:
    """Reading and moving refs (mixed into :class:`~reconciler.gitstore.GitStore`)."""

    repo: pygit2.Repository
    path: Path
    stale_lock_after: float

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

    def set_branch(self, branch: str, commit: str, message: str) -> None:
        """Point a branch at a commit, whatever it pointed at (the local copy of a branch the
        server rewrote; never used to move a branch the server does not own)."""
        self._set_ref(self.branch_ref(branch), commit, message)

    def set_ref(self, ref: str, commit: str, message: str) -> None:
        """Create or move one of the reconciler's own refs (``refs/reconciler/...``)."""
        if not ref.startswith("refs/reconciler/"):
            raise ValueError(f"{ref} is not one of the reconciler's own refs")
        self._set_ref(ref, commit, message)

    def create_branch(self, branch: str, commit: str, message: str) -> None:
        """Create a new branch; an existing one of that name is an error (never moved)."""
        try:
            self.repo.create_reference_direct(self.branch_ref(branch), pygit2.Oid(hex=commit), False, message=message)
        except (pygit2.GitError, ValueError) as exc:
            raise RetryableError(f"cannot create the branch {branch}: {exc}") from exc
