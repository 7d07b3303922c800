"""The swap write of one flow file (Linux ``renameat2(RENAME_EXCHANGE)``): the name never disappears.

The file is read and checked against what the plan saw *before* the swap, so
that what comes out of the swap only has to be compared byte for byte with
what was checked. The moment between the swap and that comparison is the
only one in which the name shows our new version while a save made just
before the swap is under the hidden ``.swap`` name, and a person's editor
that reads the file then would later save over the save; a byte comparison
keeps that moment to a read and a compare (the check of a hand-saved file,
a parse and a canonicalisation, used to happen inside it, about a
millisecond for a 5 KB flow and more for larger ones). A save that landed
between the check and the swap is swapped back at once, and only then looked at.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from reconciler.canonical import blob_id
from reconciler.drivers import Change
from reconciler.drivers._common import Refused, moved
from reconciler.logsetup import get_logger

from .hidden import SWAP

if TYPE_CHECKING:
    from .write import Writer

__all__ = ["swap_in"]

log = get_logger("reconciler.drivers.directory")

# errors of a swap that mean "this file system cannot" (EPERM too, until a swap has worked here)
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV}


def swap_in(w: Writer, change: Change, path: str, tmp: str) -> bool:
    """Replace ``path`` by the new version in ``tmp`` atomically, then check what came out; a save
    made meanwhile is swapped back under its name.

    ``path`` is first read and checked against the plan (``change.expect``): a file that is no
    longer what the plan saw is refused without a swap. ``tmp`` (complete, synced) is then renamed
    to a ``.swap`` name; from then on this function owns that file and the caller's clean-up of
    ``tmp`` cannot touch it: it is removed only when it holds our version or what the plan saw,
    else put back under a flow's name, or, if even that fails (or we are interrupted), left for the
    next run's recovery. Returns False (nothing done, ``tmp`` as it was) where the file system
    cannot swap."""
    if not w._can_exchange or not change.expect or change.data is None:
        return False
    try:
        seen = w.fs.read(path)
    except FileNotFoundError:
        raise Refused(moved(path, change.expect, None)) from None
    except OSError:
        return False  # the move-aside write reports it
    if blob_id(seen) != change.expect:  # not the canonical bytes: what flow do they hold?
        found = w.decoded(path, seen, change.expect)
        if found != change.expect:
            raise Refused(moved(path, change.expect, found))
    swap = w._hidden(SWAP, path, expect=change.expect, new=change.oid or blob_id(change.data))
    try:
        ours = w.fs.stat(tmp)
        w.fs.rename(tmp, swap)
    except OSError:
        return False  # the move-aside write will do
    try:
        w.fs.exchange(swap, path)
    except OSError as exc:
        unsupported = exc.errno in _NO_EXCHANGE or (exc.errno == errno.EPERM and not w._exchanged)
        try:
            w.fs.rename(swap, tmp)  # still ours, untouched: back to the temporary name
        except OSError:
            w.fs.unlink(swap, missing_ok=True)
        if isinstance(exc, FileNotFoundError):
            raise Refused(moved(path, change.expect, None)) from None
        if unsupported:
            w._can_exchange = False
            log.info("this file system cannot swap two names; files are replaced by moving them aside",
                     folder=str(w.root), error=exc.strerror)
            return False
        raise
    w._exchanged = True
    try:
        return _check_swapped(w, change, path, swap, ours, seen)
    except BaseException:
        w.interrupted = True  # a .swap file may be left: the next run sorts it out first
        raise


def _check_swapped(w: Writer, change: Change, path: str, swap: str, ours: os.stat_result, seen: bytes) -> bool:
    assert change.data is not None
    try:
        out = w.fs.read(swap)  # what was at path the moment the new version went in
    except OSError:
        out = None
    if out == seen:
        w.fs.unlink(swap, missing_ok=True)  # what the plan saw: already saved to drift/<env>
        return True
    # A save landed between the check and the swap: it goes back under its name first.
    data = change.data

    def is_ours() -> bool:  # our file (inode) with our bytes: not a save, not edited in place
        try:
            st = w.fs.lstat(swap)
        except OSError:
            return False
        return os.path.samestat(st, ours) and w.hash_of(swap) == blob_id(data)

    kept = None
    try:
        w.fs.exchange(swap, path)
        if not is_ours():  # saved again after our swap: the newest keeps the name
            w.fs.exchange(swap, path)
        if is_ours():
            w.fs.unlink(swap, missing_ok=True)
        else:
            kept = w.restore(swap, path, change.key)
    except FileNotFoundError:  # the name was deleted after our swap: the save takes it back
        kept = w.restore(swap, path, change.key)
    except OSError:
        kept = w.restore(swap, path, change.key)
        raise
    w.touched.add(os.path.basename(path))
    if kept is not None and kept != path:
        raise Refused(f"{path} was saved twice during the write; the earlier save is kept as {kept}, "
                      f"the next run re-checks it")
    found = "unreadable" if out is None else w.decoded(path, out, change.expect)
    raise Refused(moved(path, change.expect, found))
