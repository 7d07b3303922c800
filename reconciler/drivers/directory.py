"""The directory driver: an environment is a folder of ``*.json`` flow exports.

It is the embedded default and the simplest real integration (a shared folder
another tool watches). Identity comes from the documents, not the file names:
users may drop ``my-export.json`` into the folder. New flows are written as
``<name>@<version>.json`` (names encoded as in git).

Guarantees:

- writes are atomic (temporary files in the same folder, synced to disk, then
  renamed; a crash leaves either the old or the new file, never half of one;
  the next run sorts out a crashed write's hidden files before it reads the
  folder: see ``_remove_leftovers``) and never leave the
  folder: file names come from :mod:`reconciler.names` and
  every path is checked to stay inside it;
- a new file never replaces an existing one (hard link, which fails if the
  name is taken);
- before overwriting or deleting a file the driver re-reads it and compares
  its canonical form with what the plan saw, so an edit made during a sync is
  never clobbered;
- a file being replaced never disappears: where the file system can swap two
  names atomically (Linux ``renameat2(RENAME_EXCHANGE)``), the new version is
  swapped in and the old one checked afterwards (swapped back if it was a save
  made meanwhile); elsewhere the old file is moved aside and the new one
  hard-linked in, and the name is absent for that moment;
- a file that cannot be read or parsed is reported (path and reason) and left
  as it is; so are symlinks, sub-folders and special files.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, ContextManager, Literal, NamedTuple

import structlog
from pydantic import Field

from reconciler.canonical import InvalidJSON, Rules, blob_id, parse_json
from reconciler.drivers import Change, LiveCollector, LiveSet, Progress
from reconciler.envconfig import EnvironmentConfig
from reconciler.errors import Problem, RetryableError
from reconciler.flows import CanonicalFlow, FlowKey, Identity, flow_from_doc
from reconciler.names import encode

__all__ = ["DirectoryDriver", "DirectoryEnvironment", "FileSystem", "SETTINGS"]

log = structlog.get_logger("reconciler.drivers.directory")

class DirectoryEnvironment(EnvironmentConfig):
    """An environment that is a folder of JSON exports."""

    driver: Literal["directory"]
    path: Path = Field(description="The folder (it must exist: a missing folder is an error, never 'no flows').")

    PATH_FIELDS: ClassVar[tuple[str, ...]] = (*EnvironmentConfig.PATH_FIELDS, "path")

    def exclusive_location(self) -> tuple[str, str, str]:
        # By real path: symlinks, '..' and bind paths name one folder.
        return "path", "folder", os.path.realpath(self.path)

    def build_driver(self) -> "DirectoryDriver":
        return DirectoryDriver(self.path, self.flow_identity, self.rules)


SETTINGS = DirectoryEnvironment

# Flow exports are small; a bigger file is refused rather than read into memory.
MAX_FILE_BYTES = 64 * 1024 * 1024
_RACY_NS = 1_000_000_000
_FSYNC_EACH = 16
# errors of a swap that mean "this file system cannot" (EPERM too, until a swap has worked here)
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV}


class DirectoryDriver:
    def __init__(self, path: str | Path, identity: Identity = Identity(), rules: Rules = Rules(), *,
                 fs: "FileSystem | None" = None):
        self.root = Path(path)
        self.fs = fs if fs is not None else FileSystem()
        self.identity, self.rules = identity, rules
        self.location = str(self.root)
        self._files: dict[FlowKey, str] | None = None  # where each flow lives
        self._seq = 0
        self._recovered = False
        self._can_exchange = True  # until the file system says otherwise
        self._exchanged = False  # a swap has worked here (then EPERM is an error, not "unsupported")
        # file name -> (stat signature, what it held): an unchanged file is not re-read.
        self._cache: dict[str, tuple[tuple[int, ...], CanonicalFlow | Problem]] = {}
        # Set by the service when its folder watch saw no change since the last
        # export (a run caused only by a push): the next export reuses the last result.
        self.assume_unchanged = False
        # the last export (ids only) with each file's stat, for patching; None after problems
        self._last: _Kept | None = None
        self._dirty: set[str] = set()  # files written by apply() since the last export
        self._deleted: dict[FlowKey, str] = {}  # files the current apply() removed
        self._fresh: dict[FlowKey, tuple[str, bytes]] = {}  # read by the last export: id, compressed bytes

    # -- export ------------------------------------------------------------------

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
        self._ensure_root()
        self._fresh = {}
        trust_watch, self.assume_unchanged = self.assume_unchanged, False
        last = self._last
        if trust_watch and last is not None:
            suspects = self._dirty | last.racy
            stats = last.stats if not suspects else dict(last.stats)
            for name in suspects:
                try:
                    stats[name] = self.fs.lstat(os.path.join(self.root, name))
                except FileNotFoundError:
                    stats.pop(name, None)
                except OSError as exc:
                    stats[name] = exc
        else:
            stats = self._scan()
        now = time.time_ns()
        if last is not None:
            changed = self._dirty | last.racy
            if trust_watch:  # only the suspects were stat'ed again
                changed |= {n for n in changed if _sig(stats.get(n)) != last.sigs.get(n)}
            else:
                changed |= {n for n, st in stats.items() if _sig(st) != last.sigs.get(n)}
                changed |= last.sigs.keys() - stats.keys()
            if not changed:
                return last.live
            patched = self._patch(last, stats, changed, now)
            if patched is not None:
                return patched
        return self._rebuild(stats, now, progress)

    def _scan(self) -> dict[str, os.stat_result | OSError]:
        stats: dict[str, os.stat_result | OSError] = {}
        try:
            with self.fs.scandir(self.root) as it:
                for entry in it:
                    name = entry.name
                    if name.endswith(".json") and not name.startswith("."):
                        try:
                            stats[name] = entry.stat(follow_symlinks=False)
                        except OSError as exc:
                            stats[name] = exc
        except OSError as exc:
            raise RetryableError(f"cannot list {self.root}: {exc.strerror}") from exc
        return stats

    def _rebuild(self, stats: dict[str, os.stat_result | OSError], now: int, progress: Progress | None) -> LiveSet:
        collect = LiveCollector(self.identity, self.rules)
        total = len(stats)
        for i, name in enumerate(sorted(stats), 1):
            self._read_entry(name, stats[name], now, collect)
            if progress is not None and (i % 200 == 0 or i == total):
                progress(i, total)
        for gone in set(self._cache) - set(stats):
            del self._cache[gone]
        self._files = dict(collect.where)
        result = collect.result()
        self._remember(stats, result, now)
        return result

    def _patch(self, last: "_Kept", stats: dict[str, os.stat_result | OSError], changed: set[str], now: int) -> LiveSet | None:
        """The last result with the changed files read again; None when only a rebuild is safe."""
        flows, where = dict(last.live.flows), dict(last.live.where)
        by_name = dict(last.names)
        for name in changed:
            key = by_name.pop(name, None)
            if key is not None:
                flows.pop(key, None)
                where.pop(key, None)
        fresh = LiveCollector(self.identity, self.rules)
        for name in sorted(changed):
            if name in stats:
                self._read_entry(name, stats[name], now, fresh)
        if fresh.problems or fresh.invalid or any(k in flows for k in fresh.flows):
            return None  # problems or duplicates: let a full rebuild report them properly
        for key, flow in fresh.flows.items():
            flows[key], where[key] = flow, fresh.where[key]
        for name in changed - stats.keys():
            self._cache.pop(name, None)
        self._files = dict(where)
        result = LiveSet(flows, where)
        self._dirty = set()
        names = dict(by_name)
        names.update((os.path.basename(fresh.where[k]), k) for k in fresh.flows)
        sigs = dict(last.sigs)
        for name in changed:
            if name in stats:
                sigs[name] = _sig(stats[name])
            else:
                sigs.pop(name, None)
        racy = {n for n in changed if n in stats and _is_racy(stats[n], now)}
        self._last = _Kept(stats, sigs, _light(result), names, racy)
        return result

    def _remember(self, stats: dict[str, os.stat_result | OSError], result: LiveSet, now: int) -> None:
        self._dirty = set()
        if result.problems or result.invalid or not result.complete:
            self._last = None
            return
        racy = {n for n, st in stats.items() if _is_racy(st, now)}
        names = {os.path.basename(w): k for k, w in result.where.items()}
        self._last = _Kept(stats, {n: _sig(st) for n, st in stats.items()}, _light(result), names, racy)

    def _read_entry(self, name: str, st: os.stat_result | OSError, now: int, collect: LiveCollector) -> None:
        """Add one file's flow (or problem) to ``collect``, from the cache when its signature is unchanged."""
        where = os.path.join(self.root, name)
        if isinstance(st, OSError):
            collect.problem(Problem(where, f"cannot stat: {st.strerror}; left as it is"))
            return
        if not stat.S_ISREG(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            collect.problem(Problem(where, f"{kind}; skipped and left as it is (flows must be regular files)"))
            return
        if st.st_size > MAX_FILE_BYTES:
            collect.problem(Problem(where, f"{st.st_size} bytes is larger than the {MAX_FILE_BYTES}-byte limit; skipped"))
            return
        sig = _sig(st)
        cached = self._cache.get(name)
        if cached is not None and cached[0] == sig:
            got: CanonicalFlow | Problem = cached[1]
            if isinstance(got, Problem):
                collect.problem(got)
            else:
                collect.add_flow(got, where)
            return
        try:
            raw = self.fs.read(where)
        except OSError as exc:
            collect.problem(Problem(where, f"cannot read: {exc.strerror}; left as it is"))
            return
        try:
            got = flow_from_doc(parse_json(raw), self.identity, self.rules, where=where)
        except InvalidJSON as exc:
            got = Problem(where, f"{exc}; skipped and left as it is until it is fixed", exc.pointer)
        if isinstance(got, Problem):
            collect.problem(got)
        else:
            # Snapshots keep ids only; the bytes just read are kept compressed
            # (about a quarter of their size) until the next export, so an adopt
            # of many flows does not read them again.
            self._fresh[got.key] = (got.oid, zlib.compress(got.data, 1))
            got = got.light()
            collect.add_flow(got, where)
        # A file changed within the last second may change again without its
        # timestamps moving (coarse clocks): trust the cache only for older ones.
        if now - max(st.st_mtime_ns, st.st_ctime_ns) > _RACY_NS:
            self._cache[name] = (sig, got)
        else:
            self._cache.pop(name, None)

    def _ensure_root(self) -> None:
        """The folder must be there: a missing one (a typo, a volume not mounted yet) read as
        "no flows" would delete every flow from git (adopt) or fill a wrong folder (import)."""
        try:
            st = self.fs.stat(self.root)
        except FileNotFoundError:
            raise RetryableError(
                f"the environment folder {self.root} does not exist; nothing was read or changed. Check the "
                "environment's path in the config, or whether its volume is mounted; if the environment is "
                "new, create the folder"
            ) from None
        except OSError as exc:
            raise RetryableError(f"cannot read the environment folder {self.root}: {exc.strerror}") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise RetryableError(f"the environment folder {self.root} is not a folder; nothing was read or changed")

    # -- apply ---------------------------------------------------------------------

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> dict[FlowKey, str]:
        """Write a batch: temp files first, one sync, then each rename under its precondition.

        Syncing once for the batch instead of twice per file keeps the crash
        guarantee (a renamed file is always complete: its data reached the disk
        before the rename) at a fraction of the cost.
        """
        self._ensure_root()
        self._remove_leftovers()
        if self._files is None:
            self.export()
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
                        temps[change.key] = self._write_temp(change.data, sync=each)
                    except OSError as exc:
                        failed[change.key] = f"cannot write in {self.root}: {exc.strerror or exc}"
            if temps and not each:
                self.fs.syncfs(self.root)
            total = len(changes)
            for i, change in enumerate(changes, 1):
                if change.key in failed:
                    continue
                tmp = temps.pop(change.key, None)
                try:
                    self._apply_one(change, tmp)
                except _Refused as exc:
                    failed[change.key] = str(exc)
                except OSError as exc:
                    failed[change.key] = f"cannot write in {self.root}: {exc.strerror or exc}"
                finally:
                    if tmp is not None:
                        self.fs.unlink(tmp, missing_ok=True)  # linked in, or not used: either way no longer needed
                if progress is not None and (i % 200 == 0 or i == total):
                    progress(i, total)
            self.fs.fsync_dir(self.root)
        finally:
            for tmp in temps.values():
                self.fs.unlink(tmp, missing_ok=True)
            # The next export re-reads what this batch touched, whatever happened.
            self._dirty |= {os.path.basename(p) for k in written if (p := (self._files or {}).get(k) or deleted.get(k))}
        return failed

    def load(self, key: FlowKey) -> CanonicalFlow | None:
        """The flow with its canonical bytes: as the last export read it, else from its file now.

        The caller compares the result's id with the one it planned with.
        """
        kept = self._fresh.get(key)
        if kept is not None:
            return CanonicalFlow(key, zlib.decompress(kept[1]), kept[0])
        path = (self._files or {}).get(key)
        if path is None:
            return None
        try:
            got = flow_from_doc(parse_json(self.fs.read(path)), self.identity, self.rules, where=path)
        except (OSError, InvalidJSON):
            return None
        return got if isinstance(got, CanonicalFlow) and got.key == key else None

    def reread(self, keys: Sequence[FlowKey]) -> dict[FlowKey, str | None]:
        """Canonical blob ids of these flows as the files hold them now (for read-after-write)."""
        files = self._files or {}
        out: dict[FlowKey, str | None] = {}
        for key in keys:
            path = files.get(key)
            try:
                out[key] = None if path is None else self._current(path)
            except _Refused:
                out[key] = "unreadable"
        return out

    def recover(self) -> None:
        """Clean up after a run that crashed; the engine calls it under the environment's lock.

        Skipped only when the folder watch vouches that nothing changed since
        the last export (a crashed process's files would have been an event).
        """
        if self._recovered and self.assume_unchanged:
            return
        self._recovered = True
        try:
            with self.fs.scandir(self.root) as it:
                crashed = any(e.name.startswith(".reconciler-") for e in it)
        except OSError:
            return  # the export reports an unreadable folder
        if crashed:
            self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Files of a run that crashed (the engine holds the environment's lock).

        Temporary files go. An old version moved aside goes back under its own
        name when that is free (the write never happened); when a newer file
        took the name, it is dropped only if it holds exactly what the plan
        expected (already saved to drift/<env>), else kept beside it, where the
        duplicate is reported. Nothing that could be an edit is deleted.
        """
        for leftover in self._hidden(".tmp"):
            self.fs.unlink(str(leftover), missing_ok=True)
        for swap in self._hidden(".swap"):
            self._recover_swap(swap)
        for aside in self._hidden(".aside"):
            parts, target = self._leftover(aside, ".aside")
            expect = parts[-1] if len(parts) >= 4 else ""
            if self.fs.lexists(target):
                try:
                    try:
                        regular = stat.S_ISREG(self.fs.lstat(target).st_mode)
                    except FileNotFoundError:
                        regular = False
                    if regular and self.fs.read(target) == self.fs.read(aside):
                        self.fs.unlink(str(aside), missing_ok=True)  # the same bytes are in place already
                        continue
                    if len(expect) == 12 and (self._current(str(aside)) or "").startswith(expect):
                        self.fs.unlink(str(aside), missing_ok=True)  # the write finished; this version is in drift/<env>
                        continue
                except (OSError, _Refused):
                    pass
            self._restore(str(aside), str(target), FlowKey("", ""))

    def _leftover(self, path: Path, suffix: str) -> tuple[list[str], Path]:
        """A crashed write's hidden file ``.reconciler-<a>-<b>-...[.<name>]<suffix>``: the dash-separated
        parts of its head, and the file it belongs under (``recovered.json`` if the name is missing or
        would leave the folder)."""
        head, _, original = path.name[len(".reconciler-"):-len(suffix)].partition(".")
        if not original or original.startswith("."):
            original = "recovered.json"
        try:
            return head.split("-"), self._inside(original)
        except _Refused:
            return head.split("-"), self.root / "recovered.json"

    def _swap_name(self, change: Change, path: str) -> str:
        """The name the new version takes just before it is swapped with the flow's file:
        ``.reconciler-<pid>-<seq>-<random>-<expect>-<new>.<name>.swap`` (expect: 12 hex digits of
        the canonical id the plan saw; new: of the git blob id of our bytes), so that a crash
        recovery can tell our version, the plan's old one and a save apart."""
        assert change.data is not None and change.expect
        self._seq += 1
        head = (f".reconciler-{os.getpid()}-{self._seq}-{os.urandom(3).hex()}-{change.expect[:12]}-"
                f"{blob_id(change.data)[:12]}")
        name = os.path.basename(path)
        if len(os.fsencode(head)) + len(os.fsencode(name)) + len(".swap") < 250:
            head += "." + name
        return str(self.root / (head + ".swap"))

    def _recover_swap(self, swap: Path) -> None:
        """A crash during a swap write left ``swap``: our new version (not swapped in yet), the
        old version the plan saw (swapped out; already saved to drift/<env>), or a save the swap
        took the place of, which goes back under its name."""
        parts, target = self._leftover(swap, ".swap")
        expect, new = (parts[3], parts[4]) if len(parts) == 5 else ("", "")
        if self._same_file(swap, target):
            self.fs.unlink(str(swap), missing_ok=True)  # a second name of the file in place
            return
        if not self.fs.lexists(swap):
            return
        if len(new) == 12 and (self._hash_of(str(swap)) or "").startswith(new):
            self.fs.unlink(str(swap), missing_ok=True)  # our version; the next run re-plans
            return
        try:
            current = self._current(str(swap))
        except _Refused:
            current = None
        if len(expect) == 12 and current is not None and current.startswith(expect):
            self.fs.unlink(str(swap), missing_ok=True)  # what the plan saw: saved to drift/<env> before the write
            return
        if len(new) == 12 and (self._hash_of(str(target)) or "").startswith(new):
            # our version took the save's place: swap them back, drop ours
            try:
                self.fs.exchange(str(swap), str(target))
                self._dirty.add(target.name)
                if (self._hash_of(str(swap)) or "").startswith(new):
                    self.fs.unlink(str(swap), missing_ok=True)
                    return
            except OSError:
                pass
        self._restore(str(swap), str(target), FlowKey("", ""))

    def _swap_in(self, change: Change, path: str, tmp: str) -> bool:
        """Replace ``path`` by the new version in ``tmp`` atomically (the name never disappears),
        then check what came out; a save made meanwhile is swapped back under its name.

        ``tmp`` (complete, synced) is first renamed to a ``.swap`` name; from then on this method
        owns that file and the caller's clean-up of ``tmp`` cannot touch it: it is removed only
        when it holds our version or what the plan saw, else put back under a flow's name, or, if
        even that fails (or we are interrupted), left for the next run's recovery. Returns False
        (nothing done, ``tmp`` as it was) where the file system cannot swap."""
        if not self._can_exchange or not change.expect or change.data is None:
            return False
        swap = self._swap_name(change, path)
        try:
            ours = self.fs.stat(tmp)
            self.fs.rename(tmp, swap)
        except OSError:
            return False  # the move-aside write will do
        try:
            self.fs.exchange(swap, path)
        except OSError as exc:
            unsupported = exc.errno in _NO_EXCHANGE or (exc.errno == errno.EPERM and not self._exchanged)
            try:
                self.fs.rename(swap, tmp)  # still ours, untouched: back to the temporary name
            except OSError:
                self.fs.unlink(swap, missing_ok=True)
            if isinstance(exc, FileNotFoundError):
                raise _Refused(f"{path} changed since it was read (expected {_short(change.expect)}, "
                               f"found nothing); left as it is, the next run re-checks it") from None
            if unsupported:
                self._can_exchange = False
                log.info("this file system cannot swap two names; files are replaced by moving them aside",
                         folder=str(self.root), error=exc.strerror)
                return False
            raise
        self._exchanged = True
        try:
            return self._check_swapped(change, path, swap, ours)
        except BaseException:
            self._recovered = False  # a .swap file may be left: the next run sorts it out first
            raise

    def _check_swapped(self, change: Change, path: str, swap: str, ours: os.stat_result) -> bool:
        assert change.data is not None
        try:
            current = self._current(swap)  # what was at path the moment the new version went in
        except _Refused:
            current = "unreadable"
        if current == change.expect:
            self.fs.unlink(swap, missing_ok=True)  # what the plan saw: already saved to drift/<env>
            return True
        # A save landed between the plan's read and the swap: it goes back under its name.
        data = change.data

        def is_ours() -> bool:  # our file (inode) with our bytes: not a save, not edited in place
            try:
                st = self.fs.lstat(swap)
            except OSError:
                return False
            return os.path.samestat(st, ours) and self._hash_of(swap) == blob_id(data)

        kept = None
        try:
            self.fs.exchange(swap, path)
            if not is_ours():  # saved again after our swap: the newest keeps the name
                self.fs.exchange(swap, path)
            if is_ours():
                self.fs.unlink(swap, missing_ok=True)
            else:
                kept = self._restore(swap, path, change.key)
        except FileNotFoundError:  # the name was deleted after our swap: the save takes it back
            kept = self._restore(swap, path, change.key)
        except OSError:
            kept = self._restore(swap, path, change.key)
            raise
        self._dirty.add(os.path.basename(path))
        if kept is not None and kept != path:
            raise _Refused(f"{path} was saved twice during the write; the earlier save is kept as {kept}, "
                           f"the next run re-checks it")
        raise _Refused(
            f"{path} changed since it was read (expected {_short(change.expect)}, "
            f"found {_short(current)}); left as it is, the next run re-checks it"
        )

    def _aside_name(self, path: str, expect: str) -> str:
        """A hidden, unique name for the old version: pid, sequence, a random part, what the plan
        expected (12 hex digits) and the file's name (when it fits), for a crash recovery:
        ``.reconciler-<pid>-<seq>-<random>-<expect>.<name>.aside``. It ends in ``.aside``, not
        ``.json``, so that no tool globbing ``*.json`` takes it for a flow."""
        self._seq += 1
        head = f".reconciler-{os.getpid()}-{self._seq}-{os.urandom(3).hex()}-{expect[:12]}"
        name = os.path.basename(path)
        if len(os.fsencode(head)) + len(os.fsencode(name)) + len(".aside") < 250:
            head += "." + name
        return os.path.join(self.root, head + ".aside")

    def _apply_one(self, change: Change, tmp: str | None) -> None:
        """Replace or delete one file only if it still holds what the plan saw.

        Check-then-write would lose a save landing between the two steps, so the
        file is first moved aside (atomic), the moved file is compared, and the
        new one is linked in with ``os.link``, which never replaces a file saved
        meanwhile. Whatever differs from the plan is kept under a free name,
        never deleted. The caller removes ``tmp``.
        """
        assert self._files is not None
        path = self._files.get(change.key)
        if path is None:
            if change.expect is not None:
                raise _Refused(f"the flow's file is gone (expected {_short(change.expect)}); the next run re-checks it")
            if change.data is not None:
                assert tmp is not None
                self._files[change.key] = str(self._link_new(change.key, tmp))
            return
        if tmp is not None and self._swap_in(change, path, tmp):
            return
        aside = self._aside_name(path, change.expect or "")
        try:
            self.fs.rename(path, aside)
        except FileNotFoundError:
            aside = ""
        try:
            current = self._current(aside) if aside else None
        except BaseException:
            self._restore(aside, path, change.key)  # unreadable now: put it back as it is
            raise
        if current != change.expect:
            self._restore(aside, path, change.key)
            raise _Refused(
                f"{path} changed since it was read (expected {_short(change.expect)}, "
                f"found {_short(current)}); left as it is, the next run re-checks it"
            )
        if change.data is not None:
            assert tmp is not None
            try:
                self.fs.link(tmp, self._inside(os.path.basename(path)))
            except FileExistsError:
                # Saved while we held the old version aside: the save wins.
                self._discard(aside, change, path)
                raise _Refused(f"{path} was saved during the write; left as saved, the next run re-checks it")
            except BaseException:
                self._restore(aside, path, change.key)  # e.g. no space for the link: the old file stays
                raise
        kept = self._discard(aside, change, path)
        if change.data is None and kept is None:
            del self._files[change.key]
            self._deleted[change.key] = path
        if kept is not None:
            raise _Refused(f"{path} was edited during the write; the edit is kept as {kept}, the next run re-checks it")

    def _discard(self, aside: str, change: Change, path: str) -> str | None:
        """Remove the moved-aside old version, unless it changed after the check (an in-place
        save): then it is put back, and where it went is returned."""
        if not aside:
            return None
        try:
            same = self._current(aside) == change.expect
        except _Refused:
            same = False
        if same:
            self.fs.unlink(aside, missing_ok=True)  # what the plan saw: already saved to drift/<env>
            return None
        return self._restore(aside, path, change.key)

    def _restore(self, aside: str, path: str, key: FlowKey) -> str | None:
        """Put a moved-aside file back, or next to a file saved meanwhile; never replace one.

        Returns where it went (None if there was nothing to put back). A hard
        link is the no-replace primitive; where the file system refuses it, a
        rename to a name checked to be free.
        """
        if not aside:
            return None
        stem = os.fsencode(os.path.basename(path).removesuffix(".json"))[:200].decode(errors="ignore")
        for n in range(1, 1000):
            target = path if n == 1 else str(self.root / f"{stem}-kept-{n}.json")
            try:
                try:
                    self.fs.link(aside, target)
                    self.fs.unlink(aside, missing_ok=True)
                except FileExistsError:
                    if self._same_file(aside, target):  # put back already (a crash before the unlink)
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
            self._dirty.add(os.path.basename(target))  # the next export reads it
            if n > 1:
                log.warning("kept a flow file saved during a write next to the newer one", file=target,
                            flow=str(key) if key.name else None)
            return target
        log.error("no free name to put a flow file back; it is kept hidden", file=aside, action=f"rename it to {path}")
        return aside

    def _current(self, path: str) -> str | None:
        """Canonical blob id of the flow a file now holds (None if gone or unreadable)."""
        try:
            raw = self.fs.read(str(path))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _Refused(f"cannot re-read {path}: {exc.strerror}") from exc
        try:
            got = flow_from_doc(parse_json(raw), self.identity, self.rules, where=str(path))
        except InvalidJSON:
            return "invalid"
        return got.oid if isinstance(got, CanonicalFlow) else "invalid"

    def _inside(self, name: str) -> Path:
        path = self.root / name
        if path.parent != self.root or name in (".", "..") or "/" in name or "\0" in name:
            raise _Refused(f"refusing to write {name!r}: it would leave {self.root}")
        return path

    def _link_new(self, key: FlowKey, tmp: str) -> Path:
        stem = f"{encode(key.name)}@{encode(key.version)}"
        try:
            for n in range(1, 1000):
                path = self._inside(f"{stem}.json" if n == 1 else f"{stem}-{n}.json")
                try:
                    self.fs.link(tmp, path)  # fails if the name is taken: never replaces a file
                    return path
                except FileExistsError:
                    continue
            raise _Refused(f"no free file name for {key} in {self.root}")
        finally:
            self.fs.unlink(tmp, missing_ok=True)

    def _write_temp(self, data: bytes, *, sync: bool = True) -> str:
        self._seq += 1
        tmp = str(self.root / f".reconciler-{os.getpid()}-{self._seq}.tmp")
        self.fs.write_new(tmp, data, sync=sync)
        return tmp

    def _same_file(self, a: str | Path, b: str | Path) -> bool:
        try:
            return os.path.samestat(self.fs.lstat(a), self.fs.lstat(b))
        except OSError:
            return False

    def _hash_of(self, path: str) -> str | None:
        try:
            return blob_id(self.fs.read(path))
        except OSError:
            return None

    def _hidden(self, suffix: str) -> list[Path]:
        """A crashed run's hidden files ``.reconciler-*<suffix>``, in name order."""
        try:
            with self.fs.scandir(self.root) as it:
                names = [e.name for e in it if e.name.startswith(".reconciler-") and e.name.endswith(suffix)]
        except PermissionError:
            return []  # a folder that cannot be listed: nothing to sort out here (the export reports it)
        return [self.root / name for name in sorted(names)]


class _Refused(Exception):
    pass


def _short(oid: str | None) -> str:
    return "nothing" if oid is None else oid[:12]


class _Kept(NamedTuple):
    stats: dict[str, os.stat_result | OSError]
    sigs: dict[str, tuple[int, ...] | None]
    live: LiveSet  # ids only
    names: dict[str, FlowKey]  # file name -> the flow it held
    racy: set[str]  # files modified within a second of being read: always re-read


def _light(live: LiveSet) -> LiveSet:
    """The same snapshot holding ids only (what is kept between exports)."""
    if all(f.data is None for f in live.flows.values()):
        return live
    return replace(live, flows={k: f.light() for k, f in live.flows.items()})


def _is_racy(st: os.stat_result | OSError, now: int) -> bool:
    return not isinstance(st, OSError) and now - max(st.st_mtime_ns, st.st_ctime_ns) <= _RACY_NS


def _sig(st: os.stat_result | OSError | None) -> tuple[int, ...] | None:
    if st is None or isinstance(st, OSError):
        return None
    return (st.st_mode, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class FileSystem:
    """The file-system calls the directory driver makes, and nothing else: the seam tests replace.

    Every read, write, rename and sync of the driver goes through one instance
    (``DirectoryDriver(path, identity, rules, fs=...)``), so a test injects a
    subclass that refuses a call (``exchange`` with EINVAL, as on NFS) or runs
    a hook after one (a user's save landing mid-write) instead of patching the
    driver's internals. Errors are ``OSError`` as the ``os`` module raises them.
    """

    def scandir(self, path: str | Path) -> ContextManager[Iterator[os.DirEntry[str]]]:
        return os.scandir(path)

    def stat(self, path: str | Path) -> os.stat_result:
        """Following symbolic links (the environment folder itself may be one)."""
        return os.stat(path)

    def lstat(self, path: str | Path) -> os.stat_result:
        return os.lstat(path)

    def lexists(self, path: str | Path) -> bool:
        return os.path.lexists(path)

    def read(self, path: str | Path) -> bytes:
        """A regular file's bytes (at most ``MAX_FILE_BYTES + 1``), never through a symbolic link."""
        # O_NONBLOCK: a file swapped for a FIFO after the scan must not hang us.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(0, "not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read(MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)

    def write_new(self, path: str | Path, data: bytes, *, sync: bool) -> None:
        """Create ``path`` (never an existing name, never through a link) holding ``data``, mode 0644;
        fsync'ed when ``sync``. A file left half-written by an error is removed."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
        except BaseException:
            self.unlink(path, missing_ok=True)
            raise

    def rename(self, src: str | Path, dst: str | Path) -> None:
        os.rename(src, dst)

    def link(self, src: str | Path, dst: str | Path) -> None:
        """A second name for ``src``; fails (FileExistsError) if ``dst`` is taken: never replaces a file."""
        os.link(src, dst)

    def unlink(self, path: str | Path, *, missing_ok: bool = False) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def exchange(self, a: str | Path, b: str | Path) -> None:
        """Swap two names atomically: Linux ``renameat2(..., RENAME_EXCHANGE)`` (glibc >= 2.28).
        Raises OSError; ENOSYS where there is no such call, EINVAL where the file system lacks it."""
        renameat2 = _renameat2()
        if renameat2 is None:
            raise OSError(errno.ENOSYS, "renameat2 is not available")
        import ctypes

        at_fdcwd = -100
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(a), None, str(b))

    def fsync_dir(self, path: str | Path) -> None:
        """Make the folder's entries durable; best effort (some file systems cannot)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def syncfs(self, path: str | Path) -> None:
        """Flush the data of every file written so far on path's file system (syncfs, else sync)."""
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(path, os.O_RDONLY)
            try:
                if libc.syncfs(fd) == 0:
                    return
            finally:
                os.close(fd)
        except (OSError, AttributeError):
            pass
        os.sync()


_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Any:
    """libc's renameat2, looked up once (None where there is none)."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn
