"""The compiled methods of dataclasses, kept from one command line process for the next.

``@dataclass`` writes the source of each class's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__``… and compiles it in every process that defines the class: ~30 of ours and ~50 of our
dependencies' on a cold ``export`` or ``sync``, ~8% of the process. :func:`install` makes the
``exec`` that :mod:`dataclasses` calls look the compiled code up by **the exact source text** in a
file kept beside the config cache, and compile only what the file does not hold (then keep it).

Why this can never give a wrong method:

- the key is the whole generated source; a class that changed (fields, defaults, options, a new
  Python writing other source) writes other text, which is compiled as before;
- the code is what ``compile(source, "<string>", "exec")`` returns for that text, compiled as
  :mod:`dataclasses`' own ``exec(source, globals, ns)`` does (no inherited ``__future__`` flags),
  and then executed with the same globals and namespace; so the functions, their defaults and
  closures are made exactly as before, only the compile is skipped;
- the file is one per Python (its version, build, bytecode magic number, ``-O`` level: marshal's
  format and the compiler's output belong to one interpreter), named by it and checked again in
  its header; a file of another Python, of another format, truncated or corrupt (a SHA-256 of the
  body), or not this user's alone (code is loaded from it, so like a ``.pyc`` it must be written by
  nobody else: owned by this user, not writable by group or others, in a folder alike) is ignored;
- it is written private (0600) to a unique temporary name and renamed over the old file at exit
  (``reconciler.localcache.replace_private``), only when something new was compiled: two
  processes at once leave one whole file or the other.

Only the command line's one-shot process installs it (``reconciler.cli``), never a library caller's
process or the service (which compiles once and runs for days). Nothing but generated method
source (field names, no values: defaults are passed as objects, not text) is in the file.
"""

from __future__ import annotations

import atexit
import builtins
import dataclasses
import hashlib
import marshal
import os
import sys
from pathlib import Path
from types import CodeType

__all__ = ["install", "uninstall", "code_folder", "code_file", "python_key"]

_MAGIC = b"reconciler-classcode"
#: the layout of the file (header and body); a change means other files, never a misread
FORMAT = 1
#: entries kept at most (~2 MB; a command uses ~400): past it only what this process used is kept, so
#: the methods of classes edited since fall out and the file a process reads stays small
MAX_ENTRIES = 2048


def python_key() -> str:
    """What the compiled code and marshal's format depend on: this interpreter's exact build."""
    from importlib.util import MAGIC_NUMBER

    return f"{sys.implementation.cache_tag}|{MAGIC_NUMBER.hex()}|{sys.version}|O{sys.flags.optimize}|{FORMAT}"


def code_folder() -> Path:
    """Beside the config cache (reconciler.configcache): ``$RECONCILER_CACHE_DIR/code`` or the user's cache."""
    if own := os.environ.get("RECONCILER_CACHE_DIR"):
        return Path(own) / "code"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "flow-reconciler" / "code"


def code_file(folder: Path | None = None) -> Path:
    key = hashlib.sha256(python_key().encode()).hexdigest()[:24]
    return (code_folder() if folder is None else folder) / f"dataclasses-{key}.code"


class _Store:
    """The source → code table of one process: what the file held, and what this process compiled."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.key = python_key().encode()
        self.known: dict[str, CodeType] = _read(file, self.key)
        self.used: set[str] = set()
        self.new = 0

    def code(self, source: str) -> CodeType:
        code = self.known.get(source)
        if type(code) is not CodeType:
            # exactly what exec(source, ...) compiles in dataclasses (a module without __future__ imports)
            code = compile(source, "<string>", "exec", dont_inherit=True)
            self.known[source] = code
            self.new += 1
        self.used.add(source)
        return code

    def save(self) -> None:
        if not self.new:
            return
        keep = self.known if len(self.known) <= MAX_ENTRIES else {s: self.known[s] for s in self.used}
        from reconciler.localcache import replace_private

        try:
            if self.file.parent.exists() and not _private(os.stat(self.file.parent)):
                return  # a folder others may write: what is kept there would not be loaded
            body = marshal.dumps(keep)
            head = b" ".join((_MAGIC, self.key.hex().encode(), hashlib.sha256(body).hexdigest().encode()))
            replace_private(self.file, head + b"\n" + body)
        except (OSError, ValueError):
            pass  # best effort: no file means compiling as before, never an error
        self.new = 0


def _private(st: os.stat_result) -> bool:
    """Code is loaded from the file: it and its folder must be this user's, writable by nobody else."""
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _read(file: Path, key: bytes) -> dict[str, CodeType]:
    """The table the file holds, or an empty one when it is missing or not usable (compiling as before)."""
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return {}
    try:
        if not (_private(os.fstat(fd)) and _private(os.stat(file.parent))):
            return {}
        with os.fdopen(fd, "rb") as f:
            fd = -1
            raw = f.read()
    except OSError:
        return {}
    finally:
        if fd >= 0:
            os.close(fd)
    head, sep, body = raw.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 3 or parts[0] != _MAGIC or parts[1] != key.hex().encode():
        return {}  # not ours, or of another Python, format or -O level
    if hashlib.sha256(body).hexdigest().encode() != parts[2]:
        return {}  # truncated or corrupt
    try:
        table = marshal.loads(body)
    except Exception:  # noqa: BLE001 - whatever a damaged body raises, it is not used
        return {}
    if type(table) is not dict:
        return {}
    return {s: c for s, c in table.items() if type(s) is str and type(c) is CodeType}


_store: _Store | None = None


def _exec(source: object, globals: dict | None = None, locals: dict | None = None, /) -> None:  # noqa: A002
    """:mod:`dataclasses`' ``exec``: its generated source from the table, anything else as the builtin."""
    if _store is not None and type(source) is str and globals is not None and locals is not None:
        return builtins.exec(_store.code(source), globals, locals)
    if globals is None:  # the builtin's defaults are the caller's namespaces (never the case in dataclasses)
        frame = sys._getframe(1)
        globals, locals = frame.f_globals, frame.f_locals if locals is None else locals
    return builtins.exec(source, globals, locals)


#: the Pythons whose dataclasses compile each method with ``exec(source, globals, ns)`` (checked below too)
_SUPPORTED = ((3, 11), (3, 12))


def install(folder: Path | None = None) -> bool:
    """From now on, dataclasses created in this process take their compiled methods from the file in
    ``folder`` (default :func:`code_folder`); what is new is kept there at exit. False (nothing done)
    on a Python whose dataclasses this was not written for, or when something else replaced its exec."""
    global _store
    if _store is not None:
        return True
    create = getattr(dataclasses, "_create_fn", None)
    if sys.version_info[:2] not in _SUPPORTED or create is None or "exec" not in create.__code__.co_names:
        return False
    if vars(dataclasses).get("exec", _exec) is not _exec:
        return False
    file = code_file(folder)
    if not file.is_absolute():  # no home folder to keep it in (``~`` left as it is): nothing to keep
        return False
    _store = _Store(file)
    dataclasses.exec = _exec  # type: ignore[attr-defined]  # a module global shadows the builtin there only
    atexit.register(_save)
    return True


def _save() -> None:
    if _store is not None:
        _store.save()


def uninstall() -> None:
    """Back to the builtin ``exec`` (for tests), keeping what is new first."""
    global _store
    _save()
    if vars(dataclasses).get("exec") is _exec:
        del dataclasses.exec  # type: ignore[attr-defined]
    atexit.unregister(_save)
    _store = None
