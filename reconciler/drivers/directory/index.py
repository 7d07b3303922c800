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

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from reconciler.canonical import Rules
from reconciler.flows import CanonicalFlow, FlowKey, Identity
from reconciler.localcache import digest, read_cache, write_cache

__all__ = ["StatIndex", "RACY_NS", "Entry"]

log = structlog.get_logger("reconciler.drivers.directory")

#: a file modified this close to (or after) the time it was read is racy: never trusted from its signature
RACY_NS = 1_000_000_000
_KIND = "directory-index"

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
        doc = read_cache(self.path, _KIND, self.fingerprint)
        if doc is None:
            return {}
        written = doc.get("written_at")
        if not isinstance(written, int):
            return {}
        if self.clock() < written:
            log.info("the clock is earlier than when the folder's index was written; reading every file",
                     index=str(self.path))
            return {}
        out: dict[str, Entry] = {}
        try:
            for name, (mode, mtime, ctime, size, ino, flow_name, version, oid) in doc["entries"].items():
                sig = (mode, mtime, ctime, size, ino)
                if all(type(v) is int for v in sig) and not is_racy(sig, written):
                    out[name] = (sig, CanonicalFlow(FlowKey(str(flow_name), str(version)), None, str(oid)))
        except (KeyError, TypeError, ValueError, AttributeError):
            return {}
        return out

    def save(self, cache: Mapping[str, Entry], now: int) -> None:
        """Keep the flows of ``cache`` that are not racy at ``now`` (the time of the export that checked them)."""
        entries = {name: [*sig, got.key.name, got.key.version, got.oid] for name, (sig, got) in cache.items()
                   if isinstance(got, CanonicalFlow) and not is_racy(sig, now)}
        write_cache(self.path, _KIND, self.fingerprint, {"written_at": now, "entries": entries})
