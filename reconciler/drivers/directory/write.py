"""The crash-safe write of a batch of changes into an environment folder.

One batch: every new version is first written to a hidden temporary file
(synced: each one for a few files, the whole file system once for a batch),
so a renamed file is always complete. Then each change is carried out only
if the flow's file still holds what the plan saw (``Change.expect``), by a
protocol that never loses a save made meanwhile:

- *swap* (where the file system can, Linux ``renameat2(RENAME_EXCHANGE)``,
  :mod:`.swap`): the flow's file is checked, then swapped with the new version,
  so the name never disappears, and what came out must be byte for byte what
  was checked: then it is dropped (it is on drift/<env> already), else it is a
  save made meanwhile and is swapped back at once;
- *move aside* (elsewhere, and for deletes): the file is moved to a hidden
  name, the moved copy is checked, and the new version is hard-linked in,
  which fails rather than replace a save made meanwhile;
- *new* (a flow the folder does not hold): the new version is renamed to a
  free name without ever replacing a file (``renameat2(RENAME_NOREPLACE)``,
  else a hard link and an unlink of the temporary name);
- whatever differs from the plan is put back under its name, or kept beside
  a newer save as ``<name>-kept-<n>.json`` (a duplicate the next export
  reports), never deleted.

The folder is fsync'ed once after the batch. What the batch wrote is
remembered (:attr:`Writer.wrote`) for the read-after-write (:meth:`Writer.reread`).

A crash leaves hidden files the next run sorts out (:mod:`.recovery`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler.canonical import InvalidJSON, Rules, blob_id, parse_json
from reconciler.drivers import Change, Progress
from reconciler.drivers._common import Refused, Ticker, moved, short
from reconciler.flows import CanonicalFlow, FlowKey, Identity, flow_from_doc
from reconciler.logsetup import get_logger
from reconciler.names import encode

from .fs import FileSystem
from .hidden import ASIDE, TMP, hidden_name
from .swap import swap_in

__all__ = ["Writer"]

log = get_logger("reconciler.drivers.directory")

_FSYNC_EACH = 16


class Writer:
    """Carries out changes in one folder under their preconditions (see the module docstring).

    ``touched`` is the set the export shares (names the next export must read
    again); ``interrupted`` is set when a write stopped with a hidden file in
    the flow's place, so that the next recovery looks even if the folder
    watch saw nothing.
    """

    def __init__(self, root: Path, fs: FileSystem, identity: Identity, rules: Rules, touched: set[str], *,
                 suffix: str = ".json", decode: Callable[[str, bytes], str] | None = None):
        """``suffix`` and ``decode`` (path, bytes -> the canonical id the export reports, or "invalid")
        let a folder of another form use the same protocol (the flink-sql driver's ``*.sql``)."""
        self.root, self.fs = root, fs
        self._folder = str(root)  # for the hidden names, joined as strings (a Path costs ~5 us)
        self.identity, self.rules = identity, rules
        self.suffix, self._decode = suffix, decode
        self.touched = touched
        self.interrupted = False
        self._seq = 0
        self._can_exchange = True  # until the file system says otherwise
        self._exchanged = False  # a swap has worked here (then EPERM is an error, not "unsupported")
        self._files: dict[FlowKey, str] = {}  # the batch's: where each flow lives (the export's, updated)
        self._deleted: dict[FlowKey, str] = {}  # files the current batch removed
        # the last batch's flows written: key -> (file, blob id of our bytes); JSON files only (``decode`` None)
        self.wrote: dict[FlowKey, tuple[str, str]] = {}

    def apply(self, changes: Sequence[Change], files: dict[FlowKey, str], progress: Progress | None) -> dict[FlowKey, str]:
        """Write a batch: temp files first, one sync, then each rename under its precondition.

        Syncing once for the batch instead of twice per file keeps the crash
        guarantee (a renamed file is always complete: its data reached the disk
        before the rename) at a fraction of the cost. ``files`` (the last
        export's map of where each flow lives) is updated as files come and go.
        """
        self._files = files
        self.wrote = {}
        written = [c.key for c in changes]
        failed: dict[FlowKey, str] = {}
        temps: dict[FlowKey, str] = {}
        deleted = self._deleted = {}
        # A few files: fsync each (cheap). A batch: one syncfs, instead of
        # thousands of fsyncs. Either way data is on disk before any rename.
        each = sum(1 for c in changes if c.data is not None) <= _FSYNC_EACH
        try:
            for change in changes:
                if change.data is not None:
                    try:
                        tmp = self._hidden(TMP)
                        self.fs.write_new(tmp, change.data, sync=each)
                        temps[change.key] = tmp
                    except OSError as exc:
                        failed[change.key] = f"cannot write in {self.root}: {exc.strerror or exc}"
            if temps and not each:
                self.fs.syncfs(self.root)
            tick = Ticker(progress, len(changes))
            for i, change in enumerate(changes, 1):
                if change.key in failed:
                    continue
                tmp = temps.pop(change.key, None)
                consumed = False
                try:
                    consumed = self._apply_one(change, tmp)
                    if change.data is not None and self._decode is None:
                        self.wrote[change.key] = (self._files[change.key], change.oid or blob_id(change.data))
                except Refused as exc:
                    failed[change.key] = str(exc)
                except OSError as exc:
                    failed[change.key] = f"cannot write in {self.root}: {exc.strerror or exc}"
                finally:
                    if tmp is not None and not consumed:
                        self.fs.unlink(tmp, missing_ok=True)  # linked in, or not used: either way no longer needed
                tick(i)
            self.fs.fsync_dir(self.root)
        finally:
            for tmp in temps.values():
                self.fs.unlink(tmp, missing_ok=True)
            # The next export re-reads what this batch touched, whatever happened.
            self.touched.update(os.path.basename(p) for k in written if (p := files.get(k) or deleted.get(k)))
        return failed

    def _apply_one(self, change: Change, tmp: str | None) -> bool:
        """Replace or delete one file only if it still holds what the plan saw.

        Check-then-write would lose a save landing between the two steps, so the
        file is first moved aside (atomic), the moved file is compared, and the
        new one is linked in with ``os.link``, which never replaces a file saved
        meanwhile. Whatever differs from the plan is kept under a free name,
        never deleted. The caller removes ``tmp`` unless this returns True (it is
        gone: renamed into place as a new flow's file, or swapped in).
        """
        path = self._files.get(change.key)
        if path is None:
            if change.expect is not None:
                raise Refused(f"the flow's file is gone (expected {short(change.expect)}); the next run re-checks it")
            if change.data is not None:
                assert tmp is not None
                self._files[change.key] = self._link_new(change.key, tmp)
                return True
            return False
        if tmp is not None and self._swap_in(change, path, tmp):
            return True  # swapped in: no name left to remove
        aside = self._hidden(ASIDE, path, expect=change.expect or "")
        try:
            self.fs.rename(path, aside)
        except FileNotFoundError:
            aside = ""
        try:
            current = self.current(aside, change.expect) if aside else None
        except BaseException:
            self.restore(aside, path, change.key)  # unreadable now: put it back as it is
            raise
        if current != change.expect:
            self.restore(aside, path, change.key)
            raise Refused(moved(path, change.expect, current))
        if change.data is not None:
            assert tmp is not None
            try:
                self.fs.link(tmp, self.inside(os.path.basename(path)))
            except FileExistsError:
                # Saved while we held the old version aside: the save wins.
                self._discard(aside, change, path)
                raise Refused(f"{path} was saved during the write; left as saved, the next run re-checks it")
            except BaseException:
                self.restore(aside, path, change.key)  # e.g. no space for the link: the old file stays
                raise
        kept = self._discard(aside, change, path)
        if change.data is None and kept is None:
            del self._files[change.key]
            self._deleted[change.key] = path
        if kept is not None:
            raise Refused(f"{path} was edited during the write; the edit is kept as {kept}, the next run re-checks it")
        return False

    def _discard(self, aside: str, change: Change, path: str) -> str | None:
        """Remove the moved-aside old version, unless it changed after the check (an in-place
        save): then it is put back, and where it went is returned."""
        if not aside:
            return None
        try:
            same = self.current(aside, change.expect) == change.expect
        except Refused:
            same = False
        if same:
            self.fs.unlink(aside, missing_ok=True)  # what the plan saw: already saved to drift/<env>
            return None
        return self.restore(aside, path, change.key)

    def restore(self, aside: str, path: str, key: FlowKey) -> str | None:
        """Put a moved-aside file back, or next to a file saved meanwhile; never replace one.

        Returns where it went (None if there was nothing to put back). A hard
        link is the no-replace primitive; where the file system refuses it, a
        rename to a name checked to be free.
        """
        if not aside:
            return None
        stem = os.fsencode(os.path.basename(path).removesuffix(self.suffix))[:200].decode(errors="ignore")
        for n in range(1, 1000):
            target = path if n == 1 else str(self.root / f"{stem}-kept-{n}{self.suffix}")
            try:
                try:
                    self.fs.link(aside, target)
                    self.fs.unlink(aside, missing_ok=True)
                except FileExistsError:
                    if self.same_file(aside, target):  # put back already (a crash before the unlink)
                        self.fs.unlink(aside, missing_ok=True)
                        return target
                    continue
                except FileNotFoundError:
                    return None  # nothing aside any more
                except OSError:
                    if self.fs.lexists(target):
                        continue
                    self.fs.rename(aside, target)  # no hard links here (or a directory was moved aside)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if n == 1:
                    continue  # e.g. a name too long: try a shorter one
                log.error("could not put a flow file back; it is kept hidden", file=aside, error=str(exc),
                          flow=str(key) if key.name else None, action=f"rename it to {path}")
                return aside
            self.touched.add(os.path.basename(target))  # the next export reads it
            if n > 1:
                log.warning("kept a flow file saved during a write next to the newer one", file=target,
                            flow=str(key) if key.name else None)
            return target
        log.error("no free name to put a flow file back; it is kept hidden", file=aside, action=f"rename it to {path}")
        return aside

    def _swap_in(self, change: Change, path: str, tmp: str) -> bool:
        """The swap write (:func:`.swap.swap_in`); False where the file system cannot swap."""
        return swap_in(self, change, path, tmp)

    def reread(self, key: FlowKey, path: str) -> str | None:
        """:meth:`current` of a flow's file, for the read-after-write of the last batch: a file that holds
        exactly the bytes this writer put there holds their flow, whose canonical id is their blob id (a
        :class:`Change` carries canonical bytes, and the canonical form is a fixed point:
        ``tests/test_canonical.py``), so it is read and hashed, not parsed again. Anything else (other
        bytes, another file, a flow this batch did not write) is read in full."""
        mine = self.wrote.get(key)
        if mine is not None and mine[0] == path:
            try:
                raw = self.fs.read(path)
            except OSError:
                raw = None  # current() says what it is
            if raw is not None and blob_id(raw) == mine[1]:
                return mine[1]
        return self.current(path)

    def current(self, path: str, expect: str | None = None) -> str | None:
        """Canonical blob id of the flow a file now holds: None if it is gone, ``"invalid"`` if it
        holds no flow; raises :class:`Refused` when it cannot be read. ``expect``: the canonical id
        the caller looks for; a file whose bytes hash to it holds exactly those canonical bytes, whose
        canonical id is their blob id (the canonical form is a fixed point), so it is not parsed."""
        try:
            raw = self.fs.read(str(path))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Refused(f"cannot re-read {path}: {exc.strerror}") from exc
        return self.decoded(str(path), raw, expect)

    def decoded(self, path: str, raw: bytes, expect: str | None = None) -> str:
        """:meth:`current` of bytes already read from ``path``."""
        if self._decode is not None:
            return self._decode(path, raw)
        if expect is not None and blob_id(raw) == expect:
            return expect
        try:
            got = flow_from_doc(parse_json(raw), self.identity, self.rules, where=path)
        except InvalidJSON:
            return "invalid"
        return got.oid if isinstance(got, CanonicalFlow) else "invalid"

    def inside(self, name: str) -> Path:
        return self.root / self.inside_name(name)

    def inside_name(self, name: str) -> str:
        # one file name directly in the folder (checked on the string: no Path built to compare parents)
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise Refused(f"refusing to write {name!r}: it would leave {self.root}")
        return name

    def _link_new(self, key: FlowKey, tmp: str) -> str:
        """Rename ``tmp`` to a free name for a new flow (on failure ``tmp`` is left to the caller)."""
        stem = f"{encode(key.name)}@{encode(key.version)}"
        for n in range(1, 1000):
            name = f"{stem}{self.suffix}" if n == 1 else f"{stem}-{n}{self.suffix}"
            self.inside_name(name)
            path = os.path.join(self._folder, name)  # a string: a Path costs ~10 us, 10,000 times
            try:
                self.fs.rename_new(tmp, path)  # fails if the name is taken: never replaces a file
                return path
            except FileExistsError:
                continue
        raise Refused(f"no free file name for {key} in {self.root}")

    def _hidden(self, kind: str, path: str = "", *, expect: str = "", new: str = "") -> str:
        """A new hidden name in the folder (:mod:`.hidden`), for the flow file at ``path``."""
        self._seq += 1
        return os.path.join(self._folder, hidden_name(kind, self._seq, name=os.path.basename(path), expect=expect, new=new))

    def same_file(self, a: str | Path, b: str | Path) -> bool:
        try:
            return os.path.samestat(self.fs.lstat(a), self.fs.lstat(b))
        except OSError:
            return False

    def hash_of(self, path: str) -> str | None:
        try:
            return blob_id(self.fs.read(path))
        except OSError:
            return None
