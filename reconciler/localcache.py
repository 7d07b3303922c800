"""What one process leaves for the next beside the repository: versioned, checksummed cache files.

A command line run starts cold: without help it would re-read and canonicalise
every flow of both sides, where git answers ``status`` from its index. The
caches kept here (the directory driver's stat index, the engine's read cache)
live under the repository's git dir (``<gitdir>/reconciler/index/<env>/``), so
they are never part of git's history, never pushed, and go away with the
repository.

Every file is ``reconciler-cache <kind> <format> <sha256 of the body>\\n`` and
a JSON body holding the *fingerprint* of what produced it (this code's version
and the settings that shape its content). The rule is the one of every cache
here: it may cost a full read, never give a wrong answer. A file that is
missing, of another kind or format, with another fingerprint, truncated or
corrupt (checksum) is ignored, and the reader reads everything again.

Files are written to a unique temporary name in the same folder and renamed
over the old one (atomic), so two processes writing at once leave one whole
file or the other, never a mix, and a reader sees a whole file. They are not
fsync'ed: a crash that leaves a torn or empty file is caught by the checksum.
They are private (0600): their ids are hashes of flows that may hold rendered
secrets.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import orjson

from reconciler.codeprint import DEPENDENCIES, FORMAT, code_fingerprint, dependencies
from reconciler.logsetup import get_logger

__all__ = ["FORMAT", "code_fingerprint", "dependencies", "DEPENDENCIES", "read_cache", "write_cache", "digest"]

log = get_logger("reconciler.localcache")

_MAGIC = b"reconciler-cache"


def digest(*parts: object) -> str:
    """A fingerprint of settings (their ``repr``), with the code's."""
    return hashlib.sha256(repr((code_fingerprint(), parts)).encode()).hexdigest()


def read_cache(path: Path, kind: str, fingerprint: str, *, field: str = "fingerprint") -> dict[str, Any] | None:
    """The body a previous process kept at ``path``, or None (and why, at debug level) when there is
    none usable: missing, another kind or format, another fingerprint, truncated or corrupt.
    ``field``: the body's member compared with ``fingerprint`` (a cache may name several)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.debug("cache unreadable; reading everything", path=str(path), error=str(exc))
        return None
    head, sep, body = raw.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 4 or parts[0] != _MAGIC or parts[1] != kind.encode():
        return _unusable(path, "not a cache of this kind")
    if parts[2] != str(FORMAT).encode():
        return _unusable(path, f"format {parts[2].decode(errors='replace')}, not {FORMAT}")
    if hashlib.sha256(body).hexdigest().encode() != parts[3]:
        return _unusable(path, "checksum mismatch (truncated or corrupt)")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _unusable(path, "not JSON")
    if not isinstance(doc, dict) or not fingerprint or doc.get(field) != fingerprint:
        return _unusable(path, "made by other code or settings")
    return doc


def _unusable(path: Path, why: str) -> None:
    log.debug("cache not used; reading everything", path=str(path), why=why)
    return None


def write_cache(path: Path, kind: str, fingerprint: str, body: dict[str, Any]) -> bool:
    """Keep ``body`` at ``path`` (atomically: a unique temporary file renamed over it). A failure
    (read-only repository, full disk) is logged and ignored: the next process reads everything."""
    data = orjson.dumps({"fingerprint": fingerprint, **body})
    head = b" ".join((_MAGIC, kind.encode(), str(FORMAT).encode(), hashlib.sha256(data).hexdigest().encode()))
    try:
        replace_private(path, head + b"\n" + data)
    except OSError as exc:
        log.info("cannot keep a cache for the next run; it will read everything", path=str(path), error=str(exc))
        return False
    return True


def replace_private(path: Path, data: bytes) -> None:
    """``data`` at ``path``, atomically and private: written to a unique temporary file (0600, created
    new, never through a symlink) in the same folder (made, 0700, if missing) and renamed over ``path``.
    An ``OSError`` is raised with the temporary file removed; ``path`` is then as it was."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
