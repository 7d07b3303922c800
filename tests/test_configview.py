"""The views a cached config is made of (reconciler.configview) agree with the pydantic models they mirror:
every field (walked through ``model_fields``), every method and property the engine uses, equality and
hash, what the engine derives from them (settings_json, readindex's fingerprints), and whatever a view
leaves to its model (model_dump, model_copy, model_fields_set, resolved). Real config files: the
examples under manifests/ and configs holding every kind of environment and setting."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from reconciler.config import DRIVER_MODELS, load_config
from reconciler.configbase import EnvironmentMethods, remember_settings_json
from reconciler.configcache import load_config_cached
from reconciler.configview import View, _checked_mixin, model_of, model_ref, view_of
from reconciler.envconfig import settings_json
from reconciler.events import KINDS
from reconciler.notify.settings import NOTIFY_MODELS
from reconciler.notify.settingsbase import ForgeMethods, NotifyMethods
from reconciler.readindex import derivation, deriving_settings, fingerprint

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "manifests" / "examples").glob("*/reconciler.toml"))

#: every kind of environment and setting: windows, sidecars, identity, secrets, schema, params, notify sinks
EVERYTHING = """[repository]
path = "state/flows.git"
remote = "../upstream.git"
ssh_key = "keys/id"
fetch_interval = 30

[server]
listen = "127.0.0.1:9500"
public_url = "https://reconciler.example.com"
token_file = "secrets/token"

[[environment]]
name = "acceptance"
driver = "directory"
path = "envs/acceptance"
drift = "adopt"
prune = true
max_delete = "25%"
ignore = ["/exportedAt", "/meta/*/stamp"]
sort = { "/steps" = "/id" }
identity = { name = "/meta/name", version = "/meta/version" }
params = { region = "eu", tier = "gold" }
secrets_dir = "secrets/acceptance"
secrets_env_prefix = "ACC_SECRET_"
secret_fields = ["/steps/*/password"]
secret_allow = ["/steps/*/certificate_key"]
sidecars = [{ pointer = "/steps/*/script", ext = "py" }]
layout = "ignore"
layout_fields = ["/steps/*/position"]
schema = "schema.json"
interval = 15

[[environment.window]]
kind = "deny"
schedule = "0 22 * * *"
duration = "8h"
timezone = "Europe/Berlin"
name = "night"

[[environment.window]]
kind = "allow"
schedule = "0 9 * * 1-5"
duration = 3600
manual = true

[[environment]]
name = "single"
driver = "directory"
path = "envs/single"
form = "single-file"
max_delete = 3
branch = "refs/heads/other/single"

[[environment]]
name = "nodered"
driver = "node-red"
url = "http://127.0.0.1:1880/"
username_env = "NR_USER"
password_env = "NR_PASSWORD"
deploy = "full"
health_check = false
ignore = ["/tab/info"]

[[environment]]
name = "sql"
driver = "flink-sql"
path = "envs/sql"
drift = "restore"

[[environment]]
name = "dpm"
driver = "http"
url = "https://dpm.example.com/api/v1"
prune = true
identity = { name = "/name", fixed_version = "1" }
fields = ["/name", "/steps"]
defaults = { "/enabled" = true }
auth = { env = "DPM_TOKEN" }
list = { path = "/flows", items = "/items", id = "/id", cursor = { from = "/cursor", param = "after" }, name_query = "name" }
export = { path = "/flows/{id}/export", flow = "/flow" }
create = { path = "/flows", flow = "/flow", name = "/name" }
update = { method = "PATCH", path = "/flows/{id}", merged = ["/settings"] }
delete = { path = "/flows/{id}" }
health = { path = "/flows/{id}/state", state = "/state", healthy = ["running", 1, true], unhealthy = ["failed"], message = "/reason" }
credentials = { path = "/credentials", items = "/data" }

[[notify]]
type = "webhook"
url = "https://hooks.example.com/flows"
secret_file = "secrets/hook"
events = ["applied", "failed"]

[[notify]]
type = "slack"
name = "team"
url_env = "SLACK_URL"
environments = ["acceptance"]

[[notify]]
type = "github"
repository = "acme/flows"
token_env = "GH_TOKEN"

[[notify]]
type = "gitlab"
api = "https://gitlab.example.com/api/v4"
repository = "42"
token_file = "secrets/gitlab"

[[notify]]
type = "gitea"
api = "https://gitea.example.com/api/v1"
repository = "acme/flows"
token_env = "GITEA_TOKEN"
"""


def everything(tmp_path: Path) -> Path:
    for folder in ("envs/acceptance", "envs/single", "envs/sql", "secrets/acceptance"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "secrets" / "acceptance" / "db").write_text("s3cret\n")
    (tmp_path / "schema.json").write_text(json.dumps({"type": "object"}))
    (tmp_path / "reconciler.toml").write_text(EVERYTHING)
    return tmp_path / "reconciler.toml"


def configs(tmp_path: Path) -> list[Path]:
    return [everything(tmp_path), *EXAMPLES]


def walk(model: Any, view: Any, where: str = "config") -> int:
    """Asserts ``view`` mirrors ``model`` field by field (recursively); returns the fields compared."""
    if isinstance(model, BaseModel):
        assert isinstance(view, View) and view._v_ref == model_ref(type(model)), where
        assert type(view).__name__ == type(model).__name__, where
        n = 0
        for name in type(model).model_fields:
            n += 1 + walk(getattr(model, name), getattr(view, name), f"{where}.{name}")
        assert view.model_fields_set == model.model_fields_set, where
        return n
    if isinstance(model, (tuple, list)):
        assert type(view) is type(model) and len(view) == len(model), where
        return sum(walk(m, v, f"{where}[{i}]") for i, (m, v) in enumerate(zip(model, view)))
    if isinstance(model, dict):
        assert type(view) is dict and list(view) == list(model), where
        return sum(walk(model[k], view[k], f"{where}[{k!r}]") for k in model)
    assert type(view) is type(model) and view == model, where
    return 0


def same_environment(model: Any, view: Any) -> None:
    assert isinstance(view, EnvironmentMethods) and isinstance(view, type(model).__mro__[1])
    for prop in ("branch_name", "policy", "rules", "flow_identity", "PATH_FIELDS"):
        assert getattr(view, prop) == getattr(model, prop), prop
    assert view.sync_windows() == model.sync_windows()
    assert [w.window() for w in view.windows] == [w.window() for w in model.windows]
    assert view.declarations() == model.declarations() and view.code_declarations() == model.code_declarations()
    assert [view.delete_limit(n) for n in (0, 1, 7, 100, 10_000)] == [model.delete_limit(n) for n in (0, 1, 7, 100, 10_000)]
    assert view.load_secrets(strict=False) == model.load_secrets(strict=False)
    assert view.exclusive_location() == model.exclusive_location()
    assert type(view.build_driver()) is type(model.build_driver())
    if model.driver == "http":
        assert view.list_.rechecked == model.list_.rechecked
    # what the engine derives from the settings: the same fingerprints, also with the JSON a cache brings
    assert settings_json(view) == settings_json(model)
    for settings in ("", "params:x"):
        assert fingerprint(view, settings, 1000) == fingerprint(model, settings, 1000)
        assert derivation(view, settings, 1000) == derivation(model, settings, 1000)
    assert deriving_settings(view) == deriving_settings(model)


def same_config(model: Any, view: Any) -> None:
    assert walk(model, view) > 10
    assert view == model and model == view and view == view_of(model) and hash(view) == hash(view_of(model))
    assert view.model_dump_json() == model.model_dump_json() and view.model_dump() == model.model_dump()
    for env in model.environments:
        assert view.env(env.name) == env
        same_environment(env, view.env(env.name))
    for m, v in zip(model.notify, view.notify):
        assert isinstance(v, NotifyMethods) and isinstance(v, type(m).__mro__[1])
        assert (v.sink, v.secret_files(), v.credential) == (m.sink, m.secret_files(), m.credential)
        assert [v.wants(k, e.name) for k in KINDS for e in model.environments] == \
               [m.wants(k, e.name) for k in KINDS for e in model.environments]
        assert isinstance(v, ForgeMethods) == isinstance(m, ForgeMethods)
        if isinstance(m, ForgeMethods):
            assert v.base_url == m.base_url


def test_every_model_class_can_be_mirrored() -> None:
    """No model class defines, outside its mixins, what a mixin has (its view would run the mixin's)."""
    from reconciler.config import Config, RepositoryConfig, ServerConfig
    from reconciler.drivers.http import settings as http

    classes = {Config, RepositoryConfig, ServerConfig, *DRIVER_MODELS.values(), *NOTIFY_MODELS.values(),
               *(getattr(http, n) for n in http.__all__ if n != "SETTINGS")}
    for cls in classes:
        _checked_mixin(cls)
    assert len(classes) > 20


def test_views_agree_with_the_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACC_SECRET_token", "from-the-environment")
    paths = configs(tmp_path)
    kinds = set()
    for path in paths:
        model = load_config(path)
        kinds |= {e.driver for e in model.environments} | {n.type for n in model.notify}
        same_config(model, view_of(model))
        same_config(model, pickle.loads(pickle.dumps(view_of(model))))
    assert kinds >= {*DRIVER_MODELS, *NOTIFY_MODELS}  # every driver and every sink type was compared


def test_a_cached_config_is_the_views_and_agrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache's own round trip: a hit is a tree of views, equal to what validating gives."""
    for i, path in enumerate(configs(tmp_path)):
        cache = tmp_path / f"cache{i}"
        missed = load_config_cached(path, cache)
        assert isinstance(missed, BaseModel)  # a miss: what load_config returns
        hit = load_config_cached(path, cache)
        assert isinstance(hit, View)
        same_config(load_config(path), hit)


def test_what_a_view_leaves_to_its_model_is_the_models(tmp_path: Path) -> None:
    model = load_config(everything(tmp_path))
    view = view_of(model)
    env, env_view = model.environments[0], view.environments[0]
    assert env_view.resolved(tmp_path / "elsewhere") == env.resolved(tmp_path / "elsewhere")
    assert env_view.model_copy(update={"prune": False}) == env.model_copy(update={"prune": False})
    assert view.repository.model_fields_set == model.repository.model_fields_set
    assert env_view.identity.model_fields_set == {"name", "version"}
    assert view.environments[4].identity.model_fields_set == model.environments[4].identity.model_fields_set
    assert model_of(view) == model and type(model_of(view)) is type(model)
    assert dict(env_view) == dict(env) and str(env_view) == str(env) and repr(env_view) == repr(env)
    assert type(model_of(env_view)) is type(env)
    with pytest.raises(AttributeError):
        env_view.no_such_setting  # noqa: B018 - a name neither has is an AttributeError, as for the model
    with pytest.raises(AttributeError):
        env_view.__no_such_dunder__  # noqa: B018


def test_views_are_frozen_hashable_and_compare_by_class_and_fields(tmp_path: Path) -> None:
    model = load_config(everything(tmp_path))
    view = view_of(model)
    env = view.environments[0]
    for attempt in (lambda: setattr(env, "prune", False), lambda: delattr(env, "prune"),
                    lambda: setattr(view, "environments", ())):
        with pytest.raises(AttributeError):
            attempt()
    assert env.prune is True and len(view.environments) == 5
    other = view_of(model.model_copy(update={"environments": (model.environments[0].model_copy(update={"prune": False}),)}))
    assert other != view and other.environments[0] != env and hash(other.environments[0]) != hash(env)
    assert {view_of(model), view} == {view}  # hashable (its dict fields too), equal views hash alike
    # same fields, another class: not equal (the directory and flink-sql settings have the same names)
    acceptance, single = view.env("acceptance"), view.env("single")
    assert acceptance != single and acceptance != model.env("single") and acceptance != object()
    import copy

    assert copy.copy(env) is env and copy.deepcopy(view) is view


def test_a_model_a_view_cannot_mirror_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model class that overrides a mixin's method outside a mixin is refused: the cache keeps nothing and
    every process validates (slower, never a view that behaves otherwise)."""
    from reconciler.drivers.directory.settings import DirectoryEnvironment

    class Odd(DirectoryEnvironment):
        def delete_limit(self, total: int) -> int:
            return total

    with pytest.raises(ValueError):
        _checked_mixin(Odd)
    path = everything(tmp_path)
    monkeypatch.setitem(DRIVER_MODELS._models, "directory", Odd)  # noqa: SLF001 - the registry's memo
    cache = tmp_path / "cache"
    first = load_config_cached(path, cache)
    assert type(first.env("acceptance")) is Odd and first.env("acceptance").delete_limit(1000) == 1000
    assert not cache.exists() or not list(cache.glob("*.config"))
    again = load_config_cached(path, cache)
    assert isinstance(again, BaseModel) and again.env("acceptance").delete_limit(1000) == 1000


def test_settings_json_remembered_for_a_view_is_its_own(tmp_path: Path) -> None:
    """The JSON a cache brings is remembered for that very view object, never for an equal other one."""
    model = load_config(everything(tmp_path))
    a, b = view_of(model), view_of(model)
    remember_settings_json(a.environments[0], "{}")
    assert settings_json(a.environments[0]) == "{}"
    assert settings_json(b.environments[0]) == settings_json(model.environments[0]) != "{}"


def test_a_view_needs_no_pydantic(tmp_path: Path) -> None:
    """Unpickled in a fresh process, a cached config's views answer every method without importing pydantic
    or a model module (every driver but http, whose package imports its models)."""
    path = everything(tmp_path)
    blob = tmp_path / "views.pickle"
    model = load_config(path)
    model = model.model_copy(update={"environments": tuple(e for e in model.environments if e.driver != "http")})
    blob.write_bytes(pickle.dumps(view_of(model)))
    code = (
        "import pickle, sys\n"
        f"c = pickle.loads(open({str(blob)!r}, 'rb').read())\n"
        "for e in c.environments:\n"
        "    e.policy, e.rules, e.flow_identity, e.branch_name, e.declarations(), e.code_declarations()\n"
        "    e.delete_limit(10), e.load_secrets(strict=False), e.exclusive_location(), e.build_driver()\n"
        "[(n.sink, n.wants('applied', 'a'), n.secret_files()) for n in c.notify]\n"
        "c.env('acceptance')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_core') or m in\n"
        "       ('reconciler.config', 'reconciler.envconfig', 'reconciler.notify.settings') or m.endswith('.settings')]\n"
        "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_sinks_of_a_view_are_the_models(tmp_path: Path) -> None:
    """The notification sinks tell the settings' types apart by their mixins: a view gets the same sinks."""
    from reconciler.notify.sinks import build_sinks

    model = load_config(everything(tmp_path))
    made = [build_sinks(c.notify, environ={}) for c in (model, view_of(model))]
    try:
        assert [(type(s).__name__, s.name, getattr(s, "forge", None)) for s in made[0]] == \
               [(type(s).__name__, s.name, getattr(s, "forge", None)) for s in made[1]]
        assert len(made[1]) == 5
    finally:
        for s in (*made[0], *made[1]):
            s.close()
