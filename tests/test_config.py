"""The config file: defaults, relative paths, one clear message per problem, the published schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import tomllib

from reconciler.config import config_json_schema, load_config
from reconciler.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "reconciler.toml"
    p.write_text(text)
    return p


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    return [str(p) for p in exc.value.problems]


def test_defaults_are_filled_in_and_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    """branch defaults to env/<name>, drift to report, paths resolve against the config's folder."""
    cfg = load_config(write(tmp_path, '[[environment]]\nname = "acc"\ndriver = "directory"\npath = "envs/acc"\n'))
    env = cfg.env("acc")
    assert (env.branch_name, env.drift, env.prune, env.override, env.folder) == ("env/acc", "report", False, True, "flows")
    assert env.path == tmp_path / "envs/acc"
    assert cfg.repository.path == tmp_path / "state/flows.git"
    assert cfg.server.listen == "127.0.0.1:9420"


def test_toml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    """A TOML syntax error is reported with its position."""
    (msg,) = problems(tmp_path, "[repository\n")
    assert "not valid TOML" in msg and "line 1" in msg


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Wrong types, unknown keys and bad values each get their own line."""
    msgs = problems(
        tmp_path,
        '[repository]\npath = 3\n[[environment]]\nname = "a"\ndriver = "directory"\npath = "x"\n'
        'prune = "yes"\nignore = ["exportedAt"]\nbranch = "bad..name"\n',
    )
    text = "\n".join(msgs)
    assert "environment[0].prune = 'yes'" in text
    assert "environment[0].ignore" in text and "must be a JSON pointer" in text
    assert "repository.path = 3" in text
    assert "not a valid branch name" in text
    assert len(msgs) == 4


def test_missing_required_keys_are_named(tmp_path: Path) -> None:
    """A directory environment without a path says so."""
    assert problems(tmp_path, '[[environment]]\nname = "a"\ndriver = "directory"\n') == [
        f"{tmp_path / 'reconciler.toml'}: environment[0].path: required key is missing"
    ]


def test_two_environments_cannot_share_a_name_or_a_branch(tmp_path: Path) -> None:
    """Duplicate names and two environments on one branch folder are refused."""
    env = '[[environment]]\nname = "{n}"\ndriver = "directory"\npath = "{n}"\nbranch = "env/shared"\n'
    text = "\n".join(problems(tmp_path, env.format(n="a") + env.format(n="a") + env.format(n="b")))
    assert "also used by environment[0]" in text
    assert "is also used by 'a'" in text


def test_a_missing_schema_file_is_a_config_error(tmp_path: Path) -> None:
    """schema = "..." must name a readable JSON Schema."""
    text = "\n".join(problems(tmp_path, '[[environment]]\nname = "a"\ndriver = "directory"\npath = "x"\nschema = "nope.json"\n'))
    assert "schema = 'nope.json': no such file" in text


def test_a_missing_config_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    """The message mentions --config and RECONCILER_CONFIG."""
    with pytest.raises(ConfigError, match="RECONCILER_CONFIG"):
        load_config(tmp_path / "absent.toml")


def test_the_published_schema_is_up_to_date() -> None:
    """manifests/schemas/config.schema.json is what `reconciler schema` prints."""
    published = json.loads((ROOT / "manifests/schemas/config.schema.json").read_text())
    assert published == config_json_schema()


@pytest.mark.parametrize("example", sorted((ROOT / "manifests/examples").rglob("*.toml")), ids=lambda p: p.parent.name)
def test_every_example_config_is_valid(example: Path) -> None:
    """The examples load, and satisfy the published JSON Schema."""
    load_config(example)
    jsonschema.validate(tomllib.loads(example.read_text()), config_json_schema())


def test_the_schema_rejects_what_the_loader_rejects() -> None:
    """An unknown drift policy fails the JSON Schema too (editors can flag it)."""
    bad = {"environment": [{"name": "a", "driver": "directory", "path": "x", "drift": "sometimes"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, config_json_schema())


def test_credentials_in_a_url_are_never_echoed(tmp_path: Path) -> None:
    """A bad value holding user:password@ is shown masked."""
    from reconciler.config import _redact

    assert _redact("https://bob:hunter2@dpm.example.com/api") == "https://***@dpm.example.com/api"
    assert _redact("https://dpm.example.com/a@b") == "https://dpm.example.com/a@b"


def test_two_environments_sharing_a_folder_are_refused(tmp_path: Path) -> None:
    """Each environment needs its own folder: two would undo each other's writes."""
    (tmp_path / "reconciler.toml").write_text(
        '[[environment]]\nname = "a"\ndriver = "directory"\npath = "envs/x"\n\n'
        '[[environment]]\nname = "b"\ndriver = "directory"\npath = "envs/./x/"\nbranch = "env/other"\n')
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "reconciler.toml")
    assert "environment[1].path" in str(err.value) and "also the folder of environment 'a'" in str(err.value)
