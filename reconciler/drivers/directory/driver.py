"""The directory driver: the folder's export (:mod:`.scan`) and its crash-safe writes
(:mod:`.write`, :mod:`.recovery`) behind the driver port, on an injectable file system
(:mod:`.fs`)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

from reconciler.canonical import InvalidJSON, Rules, parse_json
from reconciler.drivers import Change, LiveSet, Progress
from reconciler.drivers._common import Refused
from reconciler.flows import CanonicalFlow, FlowKey, Identity, flow_from_doc

from .fs import FileSystem
from .recovery import crashed, remove_leftovers
from .scan import Scanner, ensure_root
from .write import Writer

__all__ = ["DirectoryDriver"]


class DirectoryDriver:
    """An environment that is a folder of ``*.json`` flow exports (see the package's docstring)."""

    def __init__(self, path: str | Path, identity: Identity = Identity(), rules: Rules = Rules(), *,
                 fs: FileSystem | None = None):
        self.root = Path(path)
        self.fs = fs if fs is not None else FileSystem()
        self.identity, self.rules = identity, rules
        self.location = str(self.root)
        touched: set[str] = set()  # files the writes touched since the last export (it reads them again)
        self._scan = Scanner(self.root, self.fs, identity, rules, touched)
        self._write = Writer(self.root, self.fs, identity, rules, touched)
        self._recovered = False
        # Set by the service when its folder watch saw no change since the last
        # export (a run caused only by a push): the next export reuses the last result.
        self.assume_unchanged = False

    def export(self, progress: Progress | None = None) -> LiveSet:
        """Read every flow file; only files whose stat signature changed are re-read.

        The last result is kept (ids only) with each file's signature. The next
        export stats every file, like ``git status``, and patches that result
        for the files that changed, were written by :meth:`apply`, or were
        "racy" (modified within a second of being read, when a later edit
        might not move their timestamps). When the service's folder watch
        vouches that nothing changed (``assume_unchanged``), not even the stat
        pass runs. Anything unusual (problems, duplicates) rebuilds it all.
        """
        ensure_root(self.fs, self.root)
        trust_watch, self.assume_unchanged = self.assume_unchanged, False
        return self._scan.export(trust_watch, progress)

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> dict[FlowKey, str]:
        """Write a batch (see :mod:`.write`), after sorting out what a crashed run left."""
        ensure_root(self.fs, self.root)
        remove_leftovers(self._write)
        if self._scan.files is None:
            self.export()
        assert self._scan.files is not None
        return self._write.apply(changes, self._scan.files, progress)

    def load(self, key: FlowKey) -> CanonicalFlow | None:
        """The flow with its canonical bytes: as the last export read it, else from its file now.

        The caller compares the result's id with the one it planned with.
        """
        kept = self._scan.fresh.get(key)
        if kept is not None:
            return CanonicalFlow(key, zlib.decompress(kept[1]), kept[0])
        path = (self._scan.files or {}).get(key)
        if path is None:
            return None
        try:
            got = flow_from_doc(parse_json(self.fs.read(path)), self.identity, self.rules, where=path)
        except (OSError, InvalidJSON):
            return None
        return got if isinstance(got, CanonicalFlow) and got.key == key else None

    def reread(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        """Canonical blob ids of these flows as the files hold them now (for read-after-write)."""
        files = self._scan.files or {}
        out: dict[FlowKey, str | None] = {}
        for key in keys:
            path = files.get(key)
            try:
                out[key] = None if path is None else self._write.current(path)
            except Refused:
                out[key] = "unreadable"
        return out

    def recover(self) -> None:
        """Clean up after a run that crashed; the engine calls it under the environment's lock.

        Skipped only when the folder watch vouches that nothing changed since
        the last export (a crashed process's files would have been an event)
        and no write of this driver was interrupted with a hidden file left.
        """
        if self._recovered and self.assume_unchanged and not self._write.interrupted:
            return
        self._recovered, self._write.interrupted = True, False
        try:
            found = crashed(self.fs, self.root)
        except OSError:
            return  # the export reports an unreadable folder
        if found:
            remove_leftovers(self._write)
