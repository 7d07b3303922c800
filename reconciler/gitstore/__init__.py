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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .tls import load

pygit2 = load()  # ``import pygit2`` without parsing the CA bundle a local repository never uses (see .tls)

from reconciler.errors import RetryableError, StallError

from .history import CommitInfo, HistoryMixin
from .packwriter import PackWriter
from .reading import FlowTree, ReadingMixin
from .refs import MARKER_PREFIX, RefsMixin
from .writing import Merge, WritingMixin

if TYPE_CHECKING:
    from reconciler.config import RepositoryConfig

__all__ = ["GitStore", "CommitInfo", "FlowTree", "Merge", "MARKER_PREFIX"]

# libgit2 hashes every object it reads again to compare it with its id ("strict hash verification"),
# which was half the cost of reading a blob (10,000 flows: 0.55 s of 0.8 s). Git itself does not on
# a read (only fsck does); a damaged object still fails zlib's checksum, and the bytes that go to an
# environment unparsed have their id checked by the caller (apply._version_data). Process-wide.
pygit2.option(pygit2.GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, False)


class GitStore(RefsMixin, ReadingMixin, WritingMixin, HistoryMixin):
    """A bare repository holding every environment's branch. Refs, reading, writing and history are
    the mixins of this package's modules; this class opens the repository and locks environments."""

    def __init__(self, path: str | Path, *, author_name: str, author_email: str, create: bool = True,
                 stale_lock_after: float = 0.0):
        self.path = Path(path)
        self.stale_lock_after = stale_lock_after
        self._author = (author_name, author_email)
        self._pending = PackWriter()
        self._trees: dict[tuple[str, str], FlowTree] = {}
        self._last: dict[str, tuple[pygit2.Tree, FlowTree]] = {}  # per folder: the last tree read
        try:
            if self.is_repository(self.path):
                self.repo = pygit2.Repository(str(self.path))
            elif create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.repo = pygit2.init_repository(str(self.path), bare=True, initial_head="main")
            else:
                raise StallError(_missing_repository(self.path))
        except (pygit2.GitError, OSError) as exc:
            raise StallError(f"cannot open the git repository at {self.path}: {exc}") from exc

    @staticmethod
    def is_repository(path: Path) -> bool:
        """Is there a repository at ``path`` to open (bare, or a working tree's ``.git``)?"""
        return (path / "HEAD").exists() or (path / ".git").exists()

    @classmethod
    def from_config(cls, repository: "RepositoryConfig", *, create: bool = False) -> "GitStore":
        """The configured repository. Only ``create`` (export, demo, or a remote to fetch
        from) makes a new one: a mistyped path must never look like an empty repository."""
        return cls(repository.path, author_name=repository.author_name, author_email=repository.author_email,
                   stale_lock_after=repository.stale_lock_after, create=create)

    def cache_path(self, env: str, name: str) -> Path:
        """Where a cache of one environment kept for the next process lives (:mod:`reconciler.localcache`):
        under the git dir (``<gitdir>/reconciler/index/<env>/<name>``), so never in git's history."""
        if not re.fullmatch(r"[A-Za-z0-9._-]+", env) or env in (".", ".."):
            raise StallError(f"invalid environment name {env!r}")
        return Path(self.repo.path) / "reconciler" / "index" / env / name

    def ensure_present(self) -> None:
        """Raise :class:`RetryableError` naming the path when the repository went away
        (moved, deleted, a volume not mounted): libgit2 would answer from what it has
        open, or fail with an error that does not say what is missing."""
        if not (self.path / "HEAD").is_file() or not (self.path / "objects").is_dir():
            raise RetryableError(_missing_repository(self.path, gone=True))

    def local_path(self, name: str) -> Path:
        """Where :meth:`read_local` and :meth:`write_local` keep ``name``."""
        return Path(self.repo.path) / "reconciler" / "local" / name

    def read_local(self, name: str) -> bytes | None:
        """A small file this machine keeps in the git dir, never in the history nor pushed
        (``<gitdir>/reconciler/local/<name>``, beside the caches); None when there is none or it cannot be read."""
        try:
            return self.local_path(name).read_bytes()
        except OSError:
            return None

    def write_local(self, name: str, data: bytes) -> None:
        """Replace that file atomically (best effort: a failure only loses what it remembers)."""
        folder = Path(self.repo.path) / "reconciler" / "local"
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, folder / name)
        except OSError:
            tmp.unlink(missing_ok=True)

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


def _missing_repository(path: Path, gone: bool = False) -> str:
    what = "the git repository is gone from" if gone else "no git repository at"
    return (f"{what} {path}: check [repository] path in the config (a typo? a volume not mounted?); "
            "nothing is read as empty. `reconciler export ENV` creates a new repository from an environment's flows")
