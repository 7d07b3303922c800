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

import stat
from pathlib import Path

from reconciler.drivers._common import Refused
from reconciler.flows import FlowKey

from .fs import FileSystem
from .write import Writer

__all__ = ["crashed", "remove_leftovers"]


def crashed(fs: FileSystem, root: Path) -> bool:
    """Whether the folder holds any hidden file of a write (raises OSError when it cannot be listed)."""
    with fs.scandir(root) as it:
        return any(e.name.startswith(".reconciler-") for e in it)


def remove_leftovers(w: Writer) -> None:
    """Files of a run that crashed (the engine holds the environment's lock).

    Temporary files go. An old version moved aside goes back under its own
    name when that is free (the write never happened); when a newer file
    took the name, it is dropped only if it holds exactly what the plan
    expected (already saved to drift/<env>), else kept beside it, where the
    duplicate is reported. Nothing that could be an edit is deleted.
    """
    for leftover in _hidden(w, ".tmp"):
        w.fs.unlink(str(leftover), missing_ok=True)
    for swap in _hidden(w, ".swap"):
        _recover_swap(w, swap)
    for aside in _hidden(w, ".aside"):
        parts, target = _leftover(w, aside, ".aside")
        expect = parts[-1] if len(parts) >= 4 else ""
        if w.fs.lexists(target):
            try:
                try:
                    regular = stat.S_ISREG(w.fs.lstat(target).st_mode)
                except FileNotFoundError:
                    regular = False
                if regular and w.fs.read(target) == w.fs.read(aside):
                    w.fs.unlink(str(aside), missing_ok=True)  # the same bytes are in place already
                    continue
                if len(expect) == 12 and (w.current(str(aside)) or "").startswith(expect):
                    w.fs.unlink(str(aside), missing_ok=True)  # the write finished; this version is in drift/<env>
                    continue
            except (OSError, Refused):
                pass
        w.restore(str(aside), str(target), FlowKey("", ""))


def _leftover(w: Writer, path: Path, suffix: str) -> tuple[list[str], Path]:
    """A crashed write's hidden file ``.reconciler-<a>-<b>-...[.<name>]<suffix>``: the dash-separated
    parts of its head, and the file it belongs under (``recovered.json`` if the name is missing or
    would leave the folder)."""
    head, _, original = path.name[len(".reconciler-"):-len(suffix)].partition(".")
    if not original or original.startswith("."):
        original = "recovered.json"
    try:
        return head.split("-"), w.inside(original)
    except Refused:
        return head.split("-"), w.root / "recovered.json"


def _recover_swap(w: Writer, swap: Path) -> None:
    """A crash during a swap write left ``swap``: our new version (not swapped in yet), the
    old version the plan saw (swapped out; already saved to drift/<env>), or a save the swap
    took the place of, which goes back under its name."""
    parts, target = _leftover(w, swap, ".swap")
    expect, new = (parts[3], parts[4]) if len(parts) == 5 else ("", "")
    if w.same_file(swap, target):
        w.fs.unlink(str(swap), missing_ok=True)  # a second name of the file in place
        return
    if not w.fs.lexists(swap):
        return
    if len(new) == 12 and (w.hash_of(str(swap)) or "").startswith(new):
        w.fs.unlink(str(swap), missing_ok=True)  # our version; the next run re-plans
        return
    try:
        current = w.current(str(swap))
    except Refused:
        current = None
    if len(expect) == 12 and current is not None and current.startswith(expect):
        w.fs.unlink(str(swap), missing_ok=True)  # what the plan saw: saved to drift/<env> before the write
        return
    if len(new) == 12 and (w.hash_of(str(target)) or "").startswith(new):
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


def _hidden(w: Writer, suffix: str) -> list[Path]:
    """A crashed run's hidden files ``.reconciler-*<suffix>``, in name order."""
    try:
        with w.fs.scandir(w.root) as it:
            names = [e.name for e in it if e.name.startswith(".reconciler-") and e.name.endswith(suffix)]
    except PermissionError:
        return []  # a folder that cannot be listed: nothing to sort out here (the export reports it)
    return [w.root / name for name in sorted(names)]
