"""pygit2 imported without parsing the system's CA bundle; the bundle given to libgit2 before any network call.

``import pygit2`` makes its global :class:`pygit2.Settings`, which hands libgit2 the default CA file
and folder of ``ssl.get_default_verify_paths()``; with OpenSSL, libgit2 then parses the whole bundle
file (~140 certificates): 30-50 ms of every command on this machine, though a command on a local
repository never opens a TLS connection. :func:`load` imports pygit2 with the folder only (OpenSSL
looks a certificate up there when one is needed: nothing is read at import), and :func:`ensure` sets
exactly what pygit2 would have set (file and folder) before the first fetch or push: a
:class:`reconciler.remote.Remote` calls it when it is made, so every network operation runs with
the same CA locations as before.

Nothing changes when the system has no CA file or no CA folder (pygit2 is imported as it is), when
pygit2 was imported already, or when a later pygit2 no longer asks ``ssl`` at import (then it is
simply imported; ``ensure`` sets the same locations again).
"""

from __future__ import annotations

import ssl
import sys
from types import ModuleType

_deferred = False  # pygit2 was imported with the CA folder only; ensure() still has to give it the file


def load() -> ModuleType:
    """``import pygit2``, without the CA bundle parsed when a CA folder can stand in until :func:`ensure`."""
    global _deferred
    if "pygit2" in sys.modules:
        return sys.modules["pygit2"]
    real = ssl.get_default_verify_paths
    paths = real()
    if paths.cafile is None or paths.capath is None:  # nothing to save, or no folder to stand in
        import pygit2

        return pygit2
    ssl.get_default_verify_paths = lambda: paths._replace(cafile=None)  # type: ignore[assignment]
    try:
        import pygit2
    finally:
        ssl.get_default_verify_paths = real
        settings = sys.modules.get("pygit2.settings")
        if settings is not None and getattr(settings, "get_default_verify_paths", real) is not real:
            settings.get_default_verify_paths = real  # the module took the name at import: its later uses get ssl's own
    _deferred = True
    return pygit2


def ensure() -> None:
    """Before a network operation: the CA file and folder pygit2 sets at import, if :func:`load` left the file out."""
    global _deferred
    if not _deferred:
        return
    import pygit2

    paths = ssl.get_default_verify_paths()
    try:
        pygit2.settings.set_ssl_cert_locations(paths.cafile, paths.capath)
    except pygit2.GitError as exc:  # as pygit2's own import: a TLS backend without locations is not an error
        if str(exc) != "TLS backend doesn't support certificate locations":
            raise
    _deferred = False
