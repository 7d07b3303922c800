"""The directory driver: the folder's export (:mod:`.scan`) and its crash-safe writes
(:mod:`.write`, :mod:`.recovery`) behind the driver port, on an injectable file system
(:mod:`.fs`).

It implements :class:`~reconciler.drivers.Driver`, :class:`~reconciler.drivers.Recoverable`
(a crashed write's hidden files), :class:`~reconciler.drivers.Watchable` (the service
watches the folder and lets the next export look only at the files the watch saw change
instead of its stat pass) and :class:`~reconciler.drivers.Indexed` (what it read is kept
for the next process in a stat index, :mod:`.index`; the service writes it when idle,
:class:`~reconciler.drivers.IndexedLater`).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler.canonical import InvalidJSON, Rules, blob_id, parse_json
from reconciler.drivers import Change, LiveSet, Progress
from reconciler.drivers._common import DriverBase, Refused
from reconciler.flows import CanonicalFlow, FlowKey, Identity, flow_from_doc

from .fs import FileSystem
from .recovery import crashed, remove_leftovers
from .scan import Scanner, ensure_root, is_flow_name
from .write import Writer

__all__ = ["DirectoryDriver"]


class DirectoryDriver(DriverBase):
    """An environment that is a folder of ``*.json`` flow exports (see the package's docstring).

    ``fs``: the file system to work through (tests pass a subclass of :class:`FileSystem`);
    ``clock``: nanoseconds since the epoch, for the racy-file rule (tests move it).
    """

    def __init__(self, path: str | Path, identity: Identity = Identity(), rules: Rules = Rules(), *,
                 fs: FileSystem | None = None, clock: Callable[[], int] | None = None):
        self.root = Path(path)
        self.fs = fs if fs is not None else FileSystem()
        self.identity, self.rules = identity, rules
        self.location = str(self.root)
        touched: set[str] = set()  # files the writes touched since the last export (it reads them again)
        self._scan = Scanner(self.root, self.fs, identity, rules, touched, clock or time.time_ns)
        self._write = Writer(self.root, self.fs, identity, rules, touched)
        self._recovered = False
        self._trust_watch = False  # the next export may rely on the folder watch
        self._watch: Callable[[], frozenset[str] | None] | None = None  # the service's folder watch
        self._saw: frozenset[str] | None = frozenset()  # what it saw change since the last export (None: unknown)
        self._vouched = False  # the last recover() found no crashed run's files (or the watch vouched)

    # -- Watchable ------------------------------------------------------------------

    def watch_paths(self) -> tuple[Path, ...]:
        return (self.root,)

    def is_flow_file(self, path: Path) -> bool:
        """``*.json``, not hidden: what the export reads (the write protocol's files are hidden)."""
        return is_flow_name(Path(path).name)

    def watched_by(self, changed: Callable[[], frozenset[str] | None]) -> None:
        """The service's folder watch (see :meth:`trust_watch`)."""
        self._watch = changed

    def trust_watch(self, trust: bool = True) -> None:
        """The next export may rely on the folder watch: it stats and reads only the files the watch
        saw change since the last export (and what it always reads again: files its writes touched,
        racy ones) instead of its stat pass; when the watch cannot say (not watching, restarted),
        it scans. When nothing changed at all (a run caused only by a push), recovery also skips its
        look for a crash's files. Without a watch (:meth:`watched_by`) nothing is trusted."""
        self._trust_watch = trust

    def _watch_says(self) -> frozenset[str] | None:
        """What the watch saw change since the last export, asking it now (None: it cannot say)."""
        if self._watch is None:
            return None
        if self._saw is not None:
            got = self._watch()
            self._saw = None if got is None else self._saw | got
        return self._saw

    # -- Indexed --------------------------------------------------------------------

    def keep_index(self, path: Path) -> None:
        """Keep what the exports read (stat signature -> canonical id, per file) in ``path`` for the
        next process (:mod:`.index`); before the first export."""
        self._scan.keep_index(Path(path))

    def save_index_later(self) -> None:
        self._scan.save_later = True

    def save_index(self) -> None:
        self._scan.save_index()

    # -- Driver ---------------------------------------------------------------------

    def preflight(self) -> None:
        ensure_root(self.fs, self.root)

    def export(self, progress: Progress | None = None) -> LiveSet:
        """Read every flow file; only files whose stat signature changed are re-read.

        The last result is kept (ids only) with each file's signature. The next
        export stats every file, like ``git status``, and patches that result
        for the files that changed, were written by :meth:`apply`, or were
        "racy" (modified within a second of being read, when a later edit
        might not move their timestamps). When the service's folder watch
        vouches that nothing changed (:meth:`trust_watch`), not even the stat
        pass runs. Anything unusual (problems, duplicates) rebuilds it all.
        """
        ensure_root(self.fs, self.root)
        trust_watch, self._trust_watch = self._trust_watch, False
        saw = self._watch_says()  # asked at every export: the next one counts from here
        self._saw = frozenset()
        if saw is None:
            trust_watch = False
        elif trust_watch and saw:  # read again like the files the writes touched
            self._scan.touched.update(n for n in saw if is_flow_name(n) and n == Path(n).name)
        return self._scan.export(trust_watch, progress)

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> dict[FlowKey, str]:
        """Write a batch (see :mod:`.write`), after sorting out what a crashed run left (unless
        :meth:`recover` found nothing and no write of this driver was interrupted since)."""
        ensure_root(self.fs, self.root)
        if not self._vouched or self._write.interrupted:
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
            raw = self.fs.read(path)
            # A file holding exactly the canonical bytes the last export derived for this flow there (their
            # blob id is its canonical id: the canonical form is a fixed point) is that flow: not parsed again.
            last = self._scan._last
            seen = last.live.flows.get(key) if last is not None else None
            if seen is not None and blob_id(raw) == seen.oid:
                return CanonicalFlow(key, raw, seen.oid)
            got = flow_from_doc(parse_json(raw), self.identity, self.rules, where=path)
        except (OSError, InvalidJSON):
            return None
        return got if isinstance(got, CanonicalFlow) and got.key == key else None

    def reread(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        """Canonical blob ids of these flows as the files hold them now (for read-after-write; a file
        holding exactly the bytes the last batch wrote is hashed, not parsed: :meth:`Writer.reread`)."""
        files = self._scan.files or {}
        out: dict[FlowKey, str | None] = {}
        for key in keys:
            path = files.get(key)
            try:
                out[key] = None if path is None else self._write.reread(key, path)
            except Refused:
                out[key] = "unreadable"
        return out

    def recover(self) -> None:
        """Clean up after a run that crashed; the engine calls it under the environment's lock.

        Skipped only when the folder watch vouches that nothing changed since
        the last export (a crashed process's files would have been an event)
        and no write of this driver was interrupted with a hidden file left.
        When it is skipped or finds nothing, the writes of the run do not list
        the folder again (under the lock, only an interrupted write of ours can
        leave such files, and that one is known).
        """
        if self._recovered and self._trust_watch and not self._write.interrupted and self._watch_says() == frozenset():
            self._vouched = True
            return
        self._recovered, self._write.interrupted, self._vouched = True, False, False
        try:
            found = crashed(self.fs, self.root)
        except OSError:
            return  # the export reports an unreadable folder
        if found:
            remove_leftovers(self._write)
        else:
            self._vouched = True  # the writes of this run need not list the folder again
