"""The directory driver's index, kept across processes: per file, its stat signature and the flow it held.

It is git's index for an environment folder: a fresh ``reconciler plan`` stats
every file, as ``git status`` does, and reads and canonicalises only the files
whose signature (mode, mtime, ctime, size, inode) is not the one recorded. It
is kept at ``<gitdir>/reconciler/index/<env>/live`` (:mod:`reconciler.localcache`:
versioned, checksummed, written by rename, never in git's history).

What makes it never give a wrong answer:

- *racy entries are not recorded*: a file changed less than a second before
  the export that read it (:data:`RACY_NS`, more than a timestamp tick of any
  file system we run on) could change again without its timestamps moving, so
  it is read again next time, as git re-reads an entry as new as its index;
- *a clock that went back* (now is earlier than when the index was written)
  makes the whole index untrusted: a file edited "in the past" could carry a
  recorded timestamp;
- the index names what shaped it (this code, the folder's real path, device and
  inode, the identity and normalisation rules): another folder or other rules
  make it unused; so does a missing, foreign-version, truncated or corrupt file;
- only flows are recorded; an unreadable or invalid file is read again every time.
"""

from __future__ import annotations

import operator
import os
import time
from collections.abc import Callable, Mapping
from itertools import chain, islice
from pathlib import Path

from reconciler.canonical import Rules
from reconciler.flows import CanonicalFlow, FlowKey, Identity, light_flows
from reconciler.localcache import digest, read_cache, write_cache
from reconciler.logsetup import get_logger

__all__ = ["StatIndex", "Columns", "RACY_NS", "Entry"]

log = get_logger("reconciler.drivers.directory")

#: a file modified this close to (or after) the time it was read is racy: never trusted from its signature
RACY_NS = 1_000_000_000
_KIND = "directory-index"  # its body: columns (names, sigs, keys, oids), see Columns

_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)
_MTIME, _CTIME = operator.itemgetter(1), operator.itemgetter(2)  # of a signature (mode, mtime, ctime, size, inode)
_KEY, _OID = operator.attrgetter("key"), operator.attrgetter("oid")

Sig = tuple[int, ...]
Entry = tuple[Sig, "CanonicalFlow | Problem"]


def is_racy(sig: Sig, now: int) -> bool:
    """Modified (or its inode changed) within :data:`RACY_NS` of ``now``, or after it."""
    return now - max(sig[1], sig[2]) <= RACY_NS


class StatIndex:
    """One folder's index file. ``clock``: nanoseconds since the epoch (tests move it)."""

    def __init__(self, path: Path, root: Path, identity: Identity, rules: Rules,
                 clock: Callable[[], int] = time.time_ns):
        self.path, self.clock = path, clock
        try:
            st = os.stat(root)
            where: object = (os.path.realpath(root), st.st_dev, st.st_ino)
        except OSError:
            where = None  # the export reports the missing folder
        self.fingerprint = digest("directory", where, identity, rules.ignore, rules.sort)

    def load(self) -> dict[str, Entry]:
        """file name -> (signature, flow with its id only); empty when the index cannot be trusted."""
        got = self.load_columns()
        return {} if got is None else got.entries()

    def load_columns(self) -> "Columns | None":
        """The index as it was written (its columns checked whole, nothing built per entry); None when
        it cannot be trusted (missing, foreign, corrupt, or the clock is earlier than when it was written)."""
        doc = read_cache(self.path, _KIND, self.fingerprint)
        if doc is None:
            return None
        written = doc.get("written_at")
        if type(written) is not int:
            return None
        if self.clock() < written:
            log.info("the clock is earlier than when the folder's index was written; reading every file",
                     index=str(self.path))
            return None
        try:
            return Columns(doc, written)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def save(self, cache: Mapping[str, Entry], now: int) -> None:
        """Keep the flows of ``cache`` that are not racy at ``now`` (the time of the export that checked them)."""
        write_cache(self.path, _KIND, self.fingerprint, {"written_at": now, **_columns(cache, now)})

    def save_over(self, cols: "Columns", stale: set[str], cache: Mapping[str, Entry], now: int) -> None:
        """:meth:`save` of the entries of ``cols`` (an index read) but ``stale`` and those in ``cache``, with
        those of ``cache``: column by column, no entry per file built."""
        drop = stale | cache.keys()
        keep = [i for i, name in enumerate(cols.names) if name not in drop]
        extra = _columns(cache, now)
        sigs, keys = cols.sigs, cols.keys
        write_cache(self.path, _KIND, self.fingerprint, {
            "written_at": now, "names": [cols.names[i] for i in keep] + extra["names"],
            "sigs": list(chain.from_iterable(sigs[5 * i:5 * i + 5] for i in keep)) + extra["sigs"],
            "keys": list(chain.from_iterable(keys[2 * i:2 * i + 2] for i in keep)) + extra["keys"],
            "oids": [cols.oids[i] for i in keep] + extra["oids"]})


def _columns(cache: Mapping[str, Entry], now: int) -> dict[str, list]:
    """The index's columns of the flows of ``cache`` not racy at ``now``."""
    names: list[str] = list(cache.keys())
    entries = list(cache.values())
    found = list(map(_SECOND, entries))
    sigs_of = list(map(_FIRST, entries))
    edge = now - RACY_NS  # is_racy(sig, now): mtime or ctime at or after this
    if entries and (set(map(type, found)) != {CanonicalFlow} or max(map(_MTIME, sigs_of)) >= edge
                    or max(map(_CTIME, sigs_of)) >= edge):
        keep = [i for i, (sig, got) in enumerate(entries) if isinstance(got, CanonicalFlow) and not is_racy(sig, now)]
        names = [names[i] for i in keep]
        found = [found[i] for i in keep]
        sigs_of = [sigs_of[i] for i in keep]
    try:
        "".join(names).encode()
    except UnicodeEncodeError:  # a name that is not UTF-8 (surrogates): JSON cannot hold it, read every time
        keep = [i for i, name in enumerate(names) if _utf8(name)]
        names, found, sigs_of = [names[i] for i in keep], [found[i] for i in keep], [sigs_of[i] for i in keep]
    # the columns at C speed (10,000 entries: a Python loop over them took ~25 ms)
    sigs = list(chain.from_iterable(sigs_of))
    keys = list(chain.from_iterable(map(_KEY, found)))
    oids = list(map(_OID, found))
    return {"names": names, "sigs": sigs, "keys": keys, "oids": oids}


def _utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


class Columns:
    """An index file's columns, checked whole (types and lengths, at C speed; any mismatch raises and the
    caller reads everything): ``names``, ``sigs`` (5 integers an entry), ``keys`` (name and version an
    entry) and ``oids``; ``written``: when the export that checked them ended. ``racy``: some entry is as
    new as the index (never saved so: such an entry is dropped by :meth:`entries`)."""

    def __init__(self, doc: Mapping[str, object], written: int):
        names, sigs, keys, oids = doc["names"], doc["sigs"], doc["keys"], doc["oids"]
        if not (type(names) is type(sigs) is type(keys) is type(oids) is list):
            raise TypeError("columns")
        n = len(names)
        if len(sigs) != 5 * n or len(keys) != 2 * n or len(oids) != n or len(set(names)) != n:
            raise ValueError("column lengths")
        if n and (set(map(type, sigs)) != {int}
                  or set(map(type, names)) | set(map(type, keys)) | set(map(type, oids)) != {str}):
            raise TypeError("column types")
        self.names: list[str] = names
        self.sigs: list[int] = sigs
        self.keys: list[str] = keys
        self.oids: list[str] = oids
        self.written = written
        edge = written - RACY_NS
        self.racy = bool(n) and max(max(sigs[1::5]), max(sigs[2::5])) >= edge

    def snapshot(self, root: str | os.PathLike) -> tuple[dict, dict, dict, dict] | None:
        """The folder's flows as the index records them, with its column values (10,000 entries: a few ms;
        an entry per file first: ~40 ms): ``key -> flow`` (ids only) and ``key -> path`` in file name order
        (a rebuild's), ``name -> signature`` and ``name -> key``. None when an entry is racy (never saved
        so: :meth:`entries` drops it) or two files hold one key (the rebuild reports it)."""
        names = self.names
        if self.racy or not names:
            return None
        keys, oids = self.flow_keys(), self.oids
        it = iter(self.sigs)
        sigs: list[Sig] = list(zip(it, it, it, it, it))
        if any(map(operator.ge, names, islice(names, 1, None))):  # not in name order
            order = sorted(range(len(names)), key=names.__getitem__)
            names, keys, oids, sigs = ([col[i] for i in order] for col in (names, keys, oids, sigs))
        flows = dict(zip(keys, light_flows(keys, oids)))
        if len(flows) != len(keys):
            return None
        where = dict(zip(keys, map(os.path.join(root, "").__add__, names)))
        return flows, where, dict(zip(names, sigs)), dict(zip(names, keys))

    def flow_keys(self) -> list[FlowKey]:
        it = iter(self.keys)
        new = tuple.__new__
        return [new(FlowKey, k) for k in zip(it, it)]

    def entries(self) -> dict[str, Entry]:
        """file name -> (signature, flow with its id only)."""
        if not self.names:
            return {}
        it = iter(self.sigs)
        entry_sigs = list(zip(it, it, it, it, it))
        flows = light_flows(self.flow_keys(), self.oids)
        entries = dict(zip(self.names, zip(entry_sigs, flows)))
        # Racy entries were never saved (save leaves them out); one found here is dropped all the same.
        if self.racy:
            entries = {name: e for name, e in entries.items() if not is_racy(e[0], self.written)}
        return entries
