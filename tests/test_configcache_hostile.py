"""The config cache (reconciler.configcache) against a hostile cache folder: a pickle is code, so only a
file this user wrote, in a folder only this user can write, is ever unpickled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_fast_hostile import CONFIG

class _Planted:
    """What an attacker's pickle does when loaded: here, make a folder (any code could run)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _plant(tmp_path: Path, cache: Path, marker: Path) -> Path:
    """A cache file with the right key, checksum and name for ./reconciler.toml, holding ``_Planted``."""
    import hashlib
    import pickle

    from reconciler import configcache

    path = Path("reconciler.toml")
    data = path.read_bytes()
    key = configcache._key(path, path.parent.resolve(), data)
    body = pickle.dumps(_Planted(str(marker)))
    file = cache / (hashlib.sha256(os.fsencode(path.absolute())).hexdigest()[:40] + ".config")
    file.write_bytes(b" ".join((configcache._MAGIC, str(configcache.FORMAT).encode(), key,
                                hashlib.sha256(body).hexdigest().encode())) + b"\n" + body)
    return file


def _cache_setup(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "envs" / "acceptance").mkdir(parents=True)
    (tmp_path / "reconciler.toml").write_text(CONFIG.format(repo="state/flows.git", path="envs/acceptance"))
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    return cache



@pytest.mark.parametrize("how", ["file-world-writable", "file-group-writable", "folder-world-writable",
                                 "file-of-another-user", "folder-of-another-user", "file-a-symlink"])
def test_a_cache_file_others_could_have_written_is_never_unpickled(tmp_path: Path, monkeypatch, how: str) -> None:
    from reconciler.config import load_config
    from reconciler.configcache import load_config_cached

    cache = _cache_setup(tmp_path, monkeypatch)
    if how.endswith("another-user") and os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")
    marker = tmp_path / "code-ran"
    where = cache
    file = _plant(tmp_path, cache, marker)
    if how == "file-a-symlink":  # to a file elsewhere (ours here; another user's folder in an attack)
        planted = tmp_path / "planted"
        file.rename(planted)
        file.symlink_to(planted)
    if how == "file-world-writable":
        file.chmod(0o666)
    elif how == "file-group-writable":
        file.chmod(0o620)
    elif how == "folder-world-writable":
        where.chmod(0o777)
    elif how == "file-of-another-user":
        os.chown(file, 65534, 65534)
    elif how == "folder-of-another-user":
        os.chown(where, 65534, 65534)
    got = load_config_cached(Path("reconciler.toml"), cache)
    assert not marker.exists(), "a pickle others could have written was loaded (code ran)"
    assert got == load_config(Path("reconciler.toml"))


def test_the_cache_made_by_this_user_is_still_used(tmp_path: Path, monkeypatch) -> None:
    import reconciler.config as config_module
    from reconciler.configcache import load_config_cached

    cache = _cache_setup(tmp_path, monkeypatch)
    first = load_config_cached(Path("reconciler.toml"), cache)
    calls = []
    real = config_module.parse_config
    monkeypatch.setattr(config_module, "parse_config", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert load_config_cached(Path("reconciler.toml"), cache) == first and calls == []
