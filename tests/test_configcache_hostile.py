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


def test_the_same_bytes_in_another_folder_resolve_against_that_folder(tmp_path: Path, monkeypatch) -> None:
    """Two configs with the same bytes (relative paths) in two folders, read from a third working folder
    and then from each: every answer's paths are its own folder's, as load_config's."""
    from reconciler.config import load_config
    from reconciler.configcache import load_config_cached

    cache = tmp_path / "cache"
    text = CONFIG.format(repo="state/flows.git", path="envs/acceptance") + 'schema = "schema.json"\n'
    for d in ("a", "b"):
        (tmp_path / d / "envs" / "acceptance").mkdir(parents=True)
        (tmp_path / d / "schema.json").write_text('{"type": "object"}')
        (tmp_path / d / "reconciler.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    for name in ("a/reconciler.toml", "b/reconciler.toml", "a/reconciler.toml"):
        got = load_config_cached(Path(name), cache)
        assert got == load_config(Path(name))
        assert got.env("acceptance").path == tmp_path / name.split("/")[0] / "envs" / "acceptance"
    for d in ("b", "a"):
        monkeypatch.chdir(tmp_path / d)
        got = load_config_cached(Path("reconciler.toml"), cache)
        assert got.env("acceptance").schema_ == tmp_path / d / "schema.json" and got == load_config(Path("reconciler.toml"))


def test_a_schema_file_made_unusable_since_is_an_error_again(tmp_path: Path, monkeypatch) -> None:
    from reconciler.config import load_config
    from reconciler.configcache import load_config_cached
    from reconciler.errors import ConfigError

    cache = _cache_setup(tmp_path, monkeypatch)
    Path("schema.json").write_text('{"type": "object"}')
    with open("reconciler.toml", "a") as f:
        f.write('schema = "schema.json"\n')
    load_config_cached(Path("reconciler.toml"), cache)
    Path("schema.json").write_text('{"type": 12}')  # not a JSON Schema any more
    with pytest.raises(ConfigError) as cached:
        load_config_cached(Path("reconciler.toml"), cache)
    with pytest.raises(ConfigError) as full:
        load_config(Path("reconciler.toml"))
    assert [str(p) for p in cached.value.problems] == [str(p) for p in full.value.problems]
