"""Sorting out the hidden files a crashed write left in an environment folder.

A process killed mid-batch (kill -9, power loss) can leave, beside the flow
files, the hidden files of the write protocol (:mod:`.write`): temporary files
(nothing to keep: they go), a new version about to be swapped in or the old
one swapped out (``.swap``), an old version moved aside (``.aside``). Each is
put back under its flow's name when that is free, dropped only when it is
provably ours or what the plan saw (already saved to drift/<env>), and
otherwise kept beside a newer file, where the export reports the duplicate.
Nothing that could be an edit is deleted. Run under the environment's lock,
before anything reads the folder.
"""

from __future__ import annotations

import operator
import stat
from pathlib import Path

from reconciler.drivers._common import Refused
from reconciler.flows import FlowKey

from .fs import FileSystem
from .hidden import ASIDE, PREFIX, SWAP, TMP, Hidden
from .write import Writer

__all__ = ["crashed", "remove_leftovers"]


def crashed(fs: FileSystem, root: Path) -> bool:
    """Whether the folder holds any hidden file of a write (raises OSError when it cannot be listed)."""
    with fs.scandir(root) as it:  # C speed: 10,000 names, one in a crash
        return any(map(operator.methodcaller("startswith", PREFIX), map(operator.attrgetter("name"), it)))


def remove_leftovers(w: Writer) -> None:
    """Files of a run that crashed (the engine holds the environment's lock).

    Temporary files go. An old version moved aside goes back under its own
    name when that is free (the write never happened); when a newer file
    took the name, it is dropped only if it holds exactly what the plan
    expected (already saved to drift/<env>), else kept beside it, where the
    duplicate is reported. Nothing that could be an edit is deleted.
    """
    try:
        if not crashed(w.fs, w.root):
            return  # the usual case: one listing, not one per kind (10,000 files: ~15 ms each)
    except PermissionError:
        return  # a folder that cannot be listed: nothing to sort out here (the export reports it)
    for leftover, _ in _hidden(w, TMP):
        w.fs.unlink(str(leftover), missing_ok=True)
    for swap, h in _hidden(w, SWAP):
        _recover_swap(w, swap, h)
    for aside, h in _hidden(w, ASIDE):
        target = w.inside(h.name)
        if w.fs.lexists(target):
            try:
                try:
                    regular = stat.S_ISREG(w.fs.lstat(target).st_mode)
                except FileNotFoundError:
                    regular = False
                if regular and w.fs.read(target) == w.fs.read(aside):
                    w.fs.unlink(str(aside), missing_ok=True)  # the same bytes are in place already
                    continue
                if h.expect and (w.current(str(aside)) or "").startswith(h.expect):
                    w.fs.unlink(str(aside), missing_ok=True)  # the write finished; this version is in drift/<env>
                    continue
            except (OSError, Refused):
                pass
        w.restore(str(aside), str(target), FlowKey("", ""))


def _recover_swap(w: Writer, swap: Path, h: Hidden) -> None:
    """A crash during a swap write left ``swap``: our new version (not swapped in yet), the
    old version the plan saw (swapped out; already saved to drift/<env>), or a save the swap
    took the place of, which goes back under its name."""
    target, expect, new = w.inside(h.name), h.expect, h.new
    if w.same_file(swap, target):
        w.fs.unlink(str(swap), missing_ok=True)  # a second name of the file in place
        return
    if not w.fs.lexists(swap):
        return
    if new and (w.hash_of(str(swap)) or "").startswith(new):
        w.fs.unlink(str(swap), missing_ok=True)  # our version; the next run re-plans
        return
    try:
        current = w.current(str(swap))
    except Refused:
        current = None
    if expect and current is not None and current.startswith(expect):
        w.fs.unlink(str(swap), missing_ok=True)  # what the plan saw: saved to drift/<env> before the write
        return
    if new and (w.hash_of(str(target)) or "").startswith(new):
        # our version took the save's place: swap them back, drop ours
        try:
            w.fs.exchange(str(swap), str(target))
            w.touched.add(target.name)
            if (w.hash_of(str(swap)) or "").startswith(new):
                w.fs.unlink(str(swap), missing_ok=True)
                return
        except OSError:
            pass
    w.restore(str(swap), str(target), FlowKey("", ""))


def _hidden(w: Writer, kind: str) -> list[tuple[Path, Hidden]]:
    """A crashed run's hidden files of one kind, in name order, with what their names say."""
    try:
        with w.fs.scandir(w.root) as it:
            # A prefix test first: in a folder of 10,000 flows almost no name is a hidden one.
            found = [(e.name, h) for e in it
                     if e.name.startswith(PREFIX) and (h := Hidden.decode(e.name)) is not None and h.kind == kind]
    except PermissionError:
        return []  # a folder that cannot be listed: nothing to sort out here (the export reports it)
    return [(w.root / name, h) for name, h in sorted(found, key=lambda f: f[0])]
