"""The command line's config cache (reconciler.configcache): a hit is exactly what validating gives;
anything that may differ (the bytes, the code, what the checks read elsewhere, a damaged cache file)
means validating again, and a bad config's errors are load_config's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import reconciler.config as config_module
from reconciler import configcache, localcache
from reconciler.config import load_config
from reconciler.configcache import load_config_cached
from reconciler.envconfig import settings_json
from reconciler.errors import ConfigError
from tests.conftest import flow

CONFIG = """[repository]
path = "state/flows.git"

[[environment]]
name = "acceptance"
driver = "directory"
path = "envs/acceptance"
drift = "adopt"
ignore = ["/exportedAt"]
params = { region = "eu" }

[[environment]]
name = "production"
driver = "directory"
path = "envs/production"
prune = true

[[notify]]
type = "webhook"
url = "https://hooks.example.com/flows"
secret_env = "HOOK_KEY"
"""


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    for env in ("acceptance", "production"):
        (tmp_path / "envs" / env).mkdir(parents=True)
    (tmp_path / "reconciler.toml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    return Path("reconciler.toml"), tmp_path / "cache"


class Validations:
    """Counts the configs validated (parse_config calls), to tell a hit from a miss."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.n = 0
        real = config_module.parse_config

        def counting(*args, **kw):
            self.n += 1
            return real(*args, **kw)

        monkeypatch.setattr(config_module, "parse_config", counting)


def same(a, b) -> None:
    assert a == b
    assert a.source == b.source and [e.path for e in a.environments] == [e.path for e in b.environments]
    assert [settings_json(e) for e in a.environments] == [settings_json(e) for e in b.environments]
    assert a.model_dump_json() == b.model_dump_json()


def cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if not p.name.startswith(".")) if cache.exists() else []


def test_a_hit_is_what_validating_gives_and_validates_nothing(setup, monkeypatch) -> None:
    path, cache = setup
    first = load_config_cached(path, cache)
    same(first, load_config(path))
    assert len(cache_files(cache)) == 1 and oct(cache_files(cache)[0].stat().st_mode & 0o777) == "0o600"
    counted = Validations(monkeypatch)
    again = load_config_cached(path, cache)
    assert counted.n == 0
    same(again, load_config(path))
    assert again.environments[0].params == {"region": "eu"}
    assert again.env("production").policy == first.env("production").policy


def test_an_edit_of_the_same_size_and_time_is_seen(setup, monkeypatch) -> None:
    path, cache = setup
    load_config_cached(path, cache)
    st = path.stat()
    edited = CONFIG.replace('region = "eu"', 'region = "us"')  # same length
    assert len(edited) == len(CONFIG)
    path.write_text(edited)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime, same second
    got = load_config_cached(path, cache)
    assert got.env("acceptance").params == {"region": "us"}
    same(got, load_config(path))


def test_the_clock_set_back_changes_nothing(setup) -> None:
    path, cache = setup
    load_config_cached(path, cache)
    path.write_text(CONFIG.replace("prune = true", "prune = false"))
    os.utime(path, (1_000_000, 1_000_000))  # 1970: older than the cache file
    got = load_config_cached(path, cache)
    assert got.env("production").prune is False
    same(got, load_config(path))


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped", "foreign format", "other key", "not a pickle"])
def test_a_damaged_cache_file_means_validating_again(setup, monkeypatch, damage: str) -> None:
    path, cache = setup
    load_config_cached(path, cache)
    [file] = cache_files(cache)
    raw = file.read_bytes()
    head, _, body = raw.partition(b"\n")
    parts = head.split(b" ")
    if damage == "truncated":
        file.write_bytes(raw[: len(raw) - 40])
    elif damage == "empty":
        file.write_bytes(b"")
    elif damage == "flipped":
        file.write_bytes(head + b"\n" + body[:30] + bytes([body[30] ^ 1]) + body[31:])
    elif damage == "foreign format":
        file.write_bytes(b" ".join([parts[0], b"999", *parts[2:]]) + b"\n" + body)
    elif damage == "other key":
        file.write_bytes(b" ".join([parts[0], parts[1], b"0" * 64, parts[3]]) + b"\n" + body)
    else:
        import hashlib

        junk = b"not a pickle at all"
        file.write_bytes(b" ".join([*parts[:3], hashlib.sha256(junk).hexdigest().encode()]) + b"\n" + junk)
    counted = Validations(monkeypatch)
    got = load_config_cached(path, cache)
    assert counted.n == 1
    assert load_config_cached(path, cache) == got and counted.n == 1  # written again, whole: a hit
    same(got, load_config(path))


def test_changed_code_means_validating_again(setup, monkeypatch) -> None:
    path, cache = setup
    load_config_cached(path, cache)
    counted = Validations(monkeypatch)
    monkeypatch.setattr(localcache, "code_fingerprint", lambda: "another version of the code")
    got = load_config_cached(path, cache)
    assert counted.n == 1
    same(got, load_config(path))


def test_another_home_or_folder_is_another_key(setup, monkeypatch, tmp_path) -> None:
    path, cache = setup
    load_config_cached(path, cache)
    counted = Validations(monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    load_config_cached(path, cache)
    assert counted.n == 1
    # the same file named by another path: its own entry (the source it reports is the name given)
    got = load_config_cached(Path.cwd() / path, cache)
    assert counted.n == 2 and got.source == Path.cwd() / path
    same(got, load_config(Path.cwd() / path))


def test_a_file_with_a_tilde_is_never_cached(setup, monkeypatch) -> None:
    path, cache = setup
    path.write_text(CONFIG.replace('path = "envs/production"', 'path = "envs/production"\nsecrets_dir = "~/secrets"'))
    got = load_config_cached(path, cache)
    same(got, load_config(path))
    assert cache_files(cache) == []


def bad_config_error(path: Path, loader) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        loader(path)
    return [str(p) for p in exc.value.problems]


@pytest.mark.parametrize("text", [
    CONFIG.replace('drift = "adopt"', 'drift = "sometimes"'),  # a model's error
    CONFIG.replace("[[notify]]", "[[environment]]\nname = \"acceptance\"\ndriver = \"directory\"\npath = \"envs/x\"\n\n[[notify]]"),
    CONFIG + "\n[broken",  # not TOML
    CONFIG.replace('name = "production"', 'name = "pr\xf6duction"').encode("latin-1"),  # not UTF-8
    "",  # no environment
])
def test_a_bad_config_gives_load_configs_errors_and_is_not_kept(setup, text) -> None:
    path, cache = setup
    load_config_cached(path, cache)  # a good one cached first: the edit must not be answered by it
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert bad_config_error(path, lambda p: load_config_cached(p, cache)) == bad_config_error(path, load_config)
    assert len(cache_files(cache)) == 1  # the good one's file, not replaced by anything of the bad one


def test_a_missing_config_file_gives_load_configs_error(setup) -> None:
    _, cache = setup
    missing = Path("nowhere.toml")
    assert bad_config_error(missing, lambda p: load_config_cached(p, cache)) == bad_config_error(missing, load_config)


def test_a_schema_file_gone_since_is_an_error_again(setup) -> None:
    path, cache = setup
    Path("schema.json").write_text(json.dumps({"type": "object"}))
    path.write_text(CONFIG.replace('drift = "adopt"', 'drift = "adopt"\nschema = "schema.json"'))
    load_config_cached(path, cache)
    assert load_config_cached(path, cache).env("acceptance").schema_ == Path.cwd() / "schema.json"
    Path("schema.json").unlink()
    assert bad_config_error(path, lambda p: load_config_cached(p, cache)) == bad_config_error(path, load_config)


def test_folders_made_one_by_a_symlink_since_are_an_error_again(setup) -> None:
    path, cache = setup
    Path("envs/other").mkdir()
    os.symlink("other", "envs/link")
    path.write_text(CONFIG.replace('path = "envs/production"', 'path = "envs/link"'))
    load_config_cached(path, cache)
    load_config_cached(path, cache)
    os.remove("envs/link")
    os.symlink("acceptance", "envs/link")  # now both environments are one folder
    assert bad_config_error(path, lambda p: load_config_cached(p, cache)) == bad_config_error(path, load_config)


def test_a_folder_that_cannot_be_written_means_no_cache(setup, tmp_path) -> None:
    path, _ = setup
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    got = load_config_cached(path, blocker / "cache")
    same(got, load_config(path))


def test_processes_at_once_leave_one_whole_file(setup) -> None:
    path, cache = setup
    texts = [CONFIG.replace('region = "eu"', f'region = "r{i}"') for i in range(2)]
    errors: list[BaseException] = []

    def churn(i: int) -> None:
        try:
            for _ in range(15):
                got = load_config_cached(path, cache)
                # whichever text is on disk now or was when this read it: one of the two, whole
                assert got.env("acceptance").params["region"] in ("r0", "r1", "eu")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def edit() -> None:
        for n in range(30):
            Path(f"new{n}.toml").write_text(texts[n % 2])
            os.replace(f"new{n}.toml", path)  # as an editor saves: readers see one text or the other

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(3)] + [threading.Thread(target=edit)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cache_files(cache)) == 1
    path.write_text(texts[1])
    same(load_config_cached(path, cache), load_config(path))
    # real processes at once: each gives the config on disk
    code = ("import sys; from reconciler.configcache import load_config_cached; from pathlib import Path; "
            "c = load_config_cached('reconciler.toml', Path(sys.argv[1])); print(c.env('acceptance').params['region'])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(cache)], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    assert [p.communicate(timeout=60)[0].strip() for p in procs] == ["r1"] * 4
    assert len(cache_files(cache)) == 1 and not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


def test_the_command_line_uses_it_and_sees_an_edit(ws, tmp_path) -> None:
    ws.add_env("acceptance")
    ws.put("acceptance", "a.json", flow("a"))
    cache = tmp_path / "cli-cache"
    env = dict(os.environ, RECONCILER_CACHE_DIR=str(cache))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=ws.root, env=env, capture_output=True,
                              text=True, timeout=120)

    assert cli("export", "acceptance", "-q").returncode == 0
    assert len(cache_files(cache / "config")) == 1
    assert cli("plan", "acceptance", "-q").returncode == 0
    ws.envs["renamed"] = ws.envs.pop("acceptance")
    ws.write_config()  # the environment renamed: the folder it names is gone
    wrong = cli("plan", "acceptance", "-q")
    assert wrong.returncode == 64 and "no environment named 'acceptance'" in wrong.stderr
    assert configcache.cache_folder() != cache / "config"  # this process's folder is the session's, not the test's


def test_a_hit_builds_no_validator(setup) -> None:
    """What a cold command saves: no pydantic validator built (nor its plugin loader, importlib.metadata),
    also for the fingerprint of each environment's settings the engine takes first."""
    path, cache = setup
    code = ("import sys; from pathlib import Path; from reconciler.configcache import load_config_cached; "
            "from reconciler.envconfig import settings_json; c = load_config_cached('reconciler.toml', Path(sys.argv[1])); "
            "[settings_json(e) for e in c.environments]; "
            "print(' '.join(m for m in ('pydantic.plugin._loader', 'importlib.metadata') if m in sys.modules) or 'none')")
    first, second = (subprocess.run([sys.executable, "-c", code, str(cache)], capture_output=True, text=True,
                                    timeout=60, check=True).stdout.strip() for _ in range(2))
    assert first != "none"  # validated: the validators were built
    assert second == "none"


def _file_as(cache: Path, key: bytes, payload: object) -> None:
    """Rewrite the one cache file with ``payload`` pickled under header key ``key`` (a whole, well-formed file)."""
    import hashlib
    import pickle

    [file] = cache_files(cache)
    body = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    file.write_bytes(b" ".join((configcache._MAGIC, str(configcache.FORMAT).encode(), key,
                                hashlib.sha256(body).hexdigest().encode())) + b"\n" + body)


def _current_key(path: Path) -> bytes:
    return configcache._key(path, path.parent.resolve(), path.read_bytes())


def test_a_cache_file_of_the_old_format_is_ignored(setup, monkeypatch) -> None:
    """FORMAT 1 kept the pydantic models themselves: such a file (as the old code wrote it) is not read."""
    path, cache = setup
    load_config_cached(path, cache)
    model = load_config(path)
    with monkeypatch.context() as m:
        m.setattr(configcache, "FORMAT", 1)
        old_key = _current_key(path)
        _file_as(cache, old_key, (model, tuple(settings_json(e) for e in model.environments)))
    assert cache_files(cache)[0].read_bytes().split(b" ")[1] == b"1"
    counted = Validations(monkeypatch)
    got = load_config_cached(path, cache)
    assert counted.n == 1 and type(got) is type(model)  # validated: a miss returns load_config's models
    same(got, model)
    hit = load_config_cached(path, cache)
    assert counted.n == 1 and type(hit) is not type(model)  # rewritten in the new format: a hit, views
    same(hit, model)


@pytest.mark.parametrize("payload", ["a model", "not the config's view", "a view and the wrong dumps"])
def test_a_well_formed_file_holding_something_else_means_validating_again(setup, monkeypatch, payload) -> None:
    """Right header, right key, right checksum, but not (the config's view, one JSON per environment)."""
    from reconciler.configview import view_of

    path, cache = setup
    load_config_cached(path, cache)
    model = load_config(path)
    dumps = tuple(settings_json(e) for e in model.environments)
    _file_as(cache, _current_key(path), {
        "a model": (model, dumps),
        "not the config's view": (view_of(model.environments[0]), dumps),
        "a view and the wrong dumps": (view_of(model), dumps[:1]),
    }[payload])
    counted = Validations(monkeypatch)
    got = load_config_cached(path, cache)
    assert counted.n == 1
    same(got, model)


def test_a_hit_is_frozen_views_that_validate_nothing_again(setup, monkeypatch) -> None:
    from reconciler.configview import View

    path, cache = setup
    load_config_cached(path, cache)
    hit = load_config_cached(path, cache)
    assert isinstance(hit, View) and all(isinstance(e, View) for e in hit.environments)
    with pytest.raises(AttributeError):
        hit.env("production").prune = False  # type: ignore[misc]
    counted = Validations(monkeypatch)
    assert hit.env("production").model_copy(update={"prune": False}).prune is False  # its model's, on first use
    assert counted.n == 0
