"""A command line process's config, validated once per content: what ``load_config`` made last time.

Validating a config builds the pydantic validators of every model it uses (the top level's, each
driver's, the notification sinks'), ~30-50 ms of a cold process that then plans or exports. A one-shot
command keeps the validated :class:`~reconciler.config.Config` (pickled) in the user's cache folder
(``$RECONCILER_CACHE_DIR/config/``, else ``$XDG_CACHE_HOME/flow-reconciler/config/``, else
``~/.cache/flow-reconciler/config/``; never in a repository) and the
next process on the same file loads it instead: as frozen plain views of the validated models
(:mod:`reconciler.configview`), so that such a process imports no pydantic at all (~0.1-0.2 s of a cold
command). A miss returns what ``load_config`` returns (the pydantic models), a hit their views: the
same fields, methods and properties; whatever else a view is asked is its model's, built on first use.

It is never trusted for anything that may differ. The key is a hash of the file's bytes (the very
bytes parsed, read once: an edit in the same second, of the same size, with the clock set back, is
another key), where the file was named and what its folder resolves to (relative paths are made
absolute against it), ``$HOME`` (``~`` in paths), this code (:func:`~reconciler.localcache.code_fingerprint`),
pydantic's version and Python's. A file with a ``~`` anywhere is not cached (``~user`` is the
password database's). What a config's check reads from elsewhere is checked again on every load:
each schema file is still usable, no two environments share a folder (real paths: a symlink may have
moved). A cache file that is missing, foreign, truncated or corrupt (checksum) is ignored. Only a
config that validated is kept: a bad one always takes the full path, so its errors are exactly
``load_config``'s. Files are written to a unique name and renamed (two processes at once leave one
whole file), private (0600). A pickle is code: a cache file is loaded only when it is a regular file (not
a symlink) owned by this user in a folder owned by this user, neither writable by anyone else; any other
(a shared or world-writable folder, a file another user planted or could have rewritten) is ignored.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.config import Config

__all__ = ["load_config_cached", "cache_folder", "FORMAT"]

#: the layout of a cache file; bump it whenever what one holds changes meaning
FORMAT = 2  # 2: views of the models (configview), not the pydantic models
_MAGIC = b"reconciler-config-cache"


def cache_folder() -> Path:
    if own := os.environ.get("RECONCILER_CACHE_DIR"):
        return Path(own) / "config"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "flow-reconciler" / "config"


def load_config_cached(path: str | Path, folder: Path | None = None) -> "Config":
    """``load_config(path)``, from the cache in ``folder`` (default :func:`cache_folder`) when it holds
    this very file's validated config (its view, see :mod:`reconciler.configview`); else validated (and
    kept for the next process)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        base = path.parent.resolve()
    except (OSError, RuntimeError):
        return _load_config(path)  # its errors, exactly
    if b"~" in data:
        return _load_config(path)
    folder = cache_folder() if folder is None else folder
    key = _key(path, base, data)
    file = folder / (hashlib.sha256(os.fsencode(path.absolute())).hexdigest()[:40] + ".config")
    cached = _read(file, key)
    if cached is not None and _still_valid(cached):
        return cached
    config = _parse(path, base, data)
    if config is None:
        return _load_config(path)  # not valid (or not readable as today): the full path gives today's errors
    _write(file, key, config)
    return config


def _load_config(path: Path) -> "Config":
    from reconciler.config import load_config

    return load_config(path)


def _pydantic_version() -> str:
    """pydantic's version, without importing it (``import pydantic.version`` is ~70 ms): a hash of its
    version module's bytes (which also name the pydantic_core it needs)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("pydantic")
        if spec is None or not spec.submodule_search_locations:
            return "none"
        return hashlib.sha256(Path(list(spec.submodule_search_locations)[0], "version.py").read_bytes()).hexdigest()
    except (OSError, ValueError, ImportError) as exc:
        return f"unknown: {exc}"


def _key(path: Path, base: Path, data: bytes) -> bytes:
    from reconciler.localcache import code_fingerprint

    h = hashlib.sha256(repr((FORMAT, code_fingerprint(), _pydantic_version(), sys.version, str(path),
                             str(path.absolute()), str(base), os.environ.get("HOME"))).encode())
    h.update(b"\0")
    h.update(data)
    return h.hexdigest().encode()


def _parse(path: Path, base: Path, data: bytes) -> "Config | None":
    """What ``load_config`` makes of these bytes (read as it reads them: UTF-8, universal newlines), or
    None when it would raise."""
    import tomllib

    from reconciler.config import parse_config
    from reconciler.errors import ConfigError

    try:
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        return parse_config(tomllib.loads(text), base=base, where=str(path))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError):
        return None


def _still_valid(config: "Config") -> bool:
    """The checks of a config that read more than its file (see ``parse_config``): schemas, real paths."""
    places: set[str] = set()
    for env in config.environments:
        if env.schema_ is not None:
            from reconciler.schemas import check_usable

            if check_usable(Path(env.schema_)) is not None:
                return False
        exclusive = env.exclusive_location()
        if exclusive is not None:
            if exclusive[2] in places:
                return False
            places.add(exclusive[2])
    return True


def _read(file: Path, key: bytes) -> "Config | None":
    from reconciler.configbase import remember_settings_json
    from reconciler.configview import View

    try:
        if not _private(os.stat(file.parent)):
            return None
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or not _private(st):
                return None
            raw = f.read()
    except OSError:
        return None
    head, sep, body = raw.partition(b"\n")
    parts = head.split(b" ")
    if (not sep or len(parts) != 4 or parts[0] != _MAGIC or parts[1] != str(FORMAT).encode() or parts[2] != key
            or parts[3] != hashlib.sha256(body).hexdigest().encode()):
        return None
    try:
        config = pickle.loads(body)
    except Exception:  # noqa: BLE001 - whatever an unreadable cache raises, the answer is the full path
        return None
    if (type(config) is not tuple or len(config) != 2 or not isinstance(config[0], View)
            or config[0]._v_ref != "reconciler.config:Config"):
        return None
    config, dumps = config
    if type(dumps) is not tuple or len(dumps) != len(config.environments) or not all(type(d) is str for d in dumps):
        return None
    for env, text in zip(config.environments, dumps):
        remember_settings_json(env, text)
    return config


def _private(st: os.stat_result) -> bool:
    """Whether only this user (or root) can have written what ``st`` describes: a pickle is code, so a
    cache file is unpickled only when it and its folder are this user's and nobody else may write them
    (a shared or world-writable cache folder, a file planted or left writable by another user: ignored)."""
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _write(file: Path, key: bytes, config: "Config") -> None:
    """Best effort: a folder that cannot be written means no cache, never an error. Each environment's
    :func:`~reconciler.envconfig.settings_json` is kept with it (what a command's first read needs)."""
    from reconciler.configview import view_of
    from reconciler.envconfig import settings_json

    try:
        body = pickle.dumps((view_of(config), tuple(settings_json(e) for e in config.environments)),
                            protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - a config a view or pickle cannot keep is not cached
        return
    data = b" ".join((_MAGIC, str(FORMAT).encode(), key, hashlib.sha256(body).hexdigest().encode())) + b"\n" + body
    import secrets  # here: a hit (most commands) writes nothing

    tmp = file.with_name(f".{file.name}.{secrets.token_hex(8)}.tmp")
    try:
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _private(os.stat(file.parent)):
            return  # never read from there (see _read): not worth writing
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, file)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
