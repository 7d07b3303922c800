"""This code's fingerprint, for every file one process keeps for the next (stdlib only).

Kept files (:mod:`reconciler.localcache`'s caches, the config cache, the clean record of
:mod:`reconciler.cli.fast`) are trusted only by the code that wrote them: this package's version,
the size, mtime and ctime of each of its modules (an edit whose size and mtime were put back,
``touch -d``, still moved the ctime), and the libraries of :data:`DEPENDENCIES` (another orjson or
jsonschema may write or validate otherwise). Computed without importing anything beyond the
standard library, so the clean record can check it before any heavy import.
"""

from __future__ import annotations

import functools
import hashlib
import os

__all__ = ["FORMAT", "code_fingerprint", "fingerprint_now", "dependencies", "DEPENDENCIES"]

#: the layout of every cache file; bump it whenever what a cache holds changes meaning
FORMAT = 1

#: the libraries whose behaviour shapes what is cached (orjson: canonical bytes; jsonschema and its
#: registries: validation; pygit2: reads; pydantic: the config's models): an upgrade is other code
DEPENDENCIES = ("orjson", "jsonschema", "referencing", "jsonschema_specifications", "pygit2", "pydantic",
                "pydantic_core")


def fingerprint_now() -> str:
    """This code's version and modules, and the libraries it depends on (see the module's docstring), as
    they are on disk now (the clean record compares it before and after a run)."""
    import reconciler

    h = hashlib.sha256(f"{reconciler.__version__}\0{FORMAT}".encode())
    root = os.path.dirname(os.path.abspath(reconciler.__file__))
    paths: list[tuple[str, str]] = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for f in filenames:
            if f.endswith(".py"):
                full = os.path.join(dirpath, f)
                paths.append((os.path.relpath(full, root), full))
    for rel, full in sorted(paths, key=lambda p: tuple(p[0].split(os.sep))):  # as pathlib sorts, by parts
        st = os.stat(full)
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0".encode())
    h.update(dependencies().encode())
    return h.hexdigest()


#: :func:`fingerprint_now` once per process (the caches' readers and writers)
code_fingerprint = functools.cache(fingerprint_now)


def dependencies() -> str:
    """Where each of :data:`DEPENDENCIES` would be imported from, and the stat of its package folder and
    first file (an upgrade replaces them), found without importing it."""
    import importlib.util

    out = []
    for name in DEPENDENCIES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        where = [spec.origin] if spec is not None and spec.origin else []
        if spec is not None and spec.submodule_search_locations:
            where += list(spec.submodule_search_locations)
        for path in where:
            try:
                st = os.stat(path)
                out.append(f"{name}\0{path}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}")
            except OSError:
                out.append(f"{name}\0{path}\0gone")
        if not where:
            out.append(f"{name}\0missing")
    return "\0\0".join(out)
