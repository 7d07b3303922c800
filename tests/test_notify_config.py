"""``[[notify]]`` in the config file: one model per type, credentials by name only, one line per problem."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest

from reconciler.config import config_json_schema, load_config
from reconciler.errors import ConfigError
from reconciler.events import KINDS
from reconciler.notify import ForgeNotify, SlackNotify, WebhookNotify, status_link

ENV = '[[environment]]\nname = "production"\ndriver = "directory"\npath = "envs/production"\n\n'

EXAMPLE = ENV + """
[server]
public_url = "https://reconciler.example.com"

[[notify]]
type = "webhook"
name = "ops"
url = "https://hooks.example.com/flows"
secret_file = "secrets/webhook-hmac"
events = ["applied", "failed"]

[[notify]]
type = "slack"
url_env = "SLACK_WEBHOOK_URL"
environments = ["production"]

[[notify]]
type = "github"
repository = "acme/flows"
token_env = "GITHUB_TOKEN"

[[notify]]
type = "gitlab"
api = "https://gitlab.example.com/api/v4"
repository = "platform/flows"
token_file = "/run/secrets/gitlab-token"

[[notify]]
type = "gitea"
api = "https://gitea.example.com/api/v1"
repository = "platform/flows"
token_env = "GITEA_TOKEN"
"""


def tables(*sinks: dict) -> str:
    """``[[notify]]`` tables in TOML, one per dict."""
    return "".join("\n[[notify]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in sink.items()) for sink in sinks)


def load(tmp_path: Path, text: str):
    (tmp_path / "reconciler.toml").write_text(text)
    return load_config(tmp_path / "reconciler.toml")


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return "\n".join(str(p) for p in info.value.problems)


def test_every_sink_type_reads_from_its_table(tmp_path: Path) -> None:
    """Each table gets its type's model; defaults: every kind, every environment, the type as its name."""
    config = load(tmp_path, EXAMPLE)
    webhook, slack, github, gitlab, gitea = config.notify
    assert isinstance(webhook, WebhookNotify) and webhook.sink == "ops" and webhook.events == ("applied", "failed")
    assert webhook.secret_file == tmp_path / "secrets/webhook-hmac"  # relative to the config file
    assert isinstance(slack, SlackNotify) and slack.sink == "slack" and slack.events == KINDS
    assert isinstance(github, ForgeNotify) and github.base_url == "https://api.github.com"
    assert gitlab.base_url == "https://gitlab.example.com/api/v4" and gitlab.token_file == Path("/run/secrets/gitlab-token")
    assert gitea.type == "gitea" and gitea.environments == ()
    assert status_link(config.server.public_url, "production") == "https://reconciler.example.com/environments/production"


def test_the_published_schema_accepts_the_example_and_knows_every_type(tmp_path: Path) -> None:
    jsonschema.validate(tomllib.loads(EXAMPLE), config_json_schema())
    bad = tomllib.loads(EXAMPLE)
    bad["notify"][0]["type"] = "pager"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, config_json_schema())


def test_a_credential_comes_from_exactly_one_variable_or_file(tmp_path: Path) -> None:
    text = problems(tmp_path, ENV + tables({"type": "github", "repository": "a/b"},
                                           {"type": "webhook", "name": "w", "url": "https://h.example.com/x",
                                            "secret_env": "A", "secret_file": "b"}))
    assert "set exactly one of token_env (an environment variable) or token_file (a file)" in text
    assert "set exactly one of secret_env" in text


def test_a_credential_written_in_the_config_is_refused(tmp_path: Path) -> None:
    """No token key, no Slack URL in the file, no user:password in a URL (and it is not echoed)."""
    text = problems(tmp_path, ENV + tables({"type": "slack", "url": "https://hooks.slack.com/services/T/B/xyz"},
                                           {"type": "github", "repository": "a/b", "token": "ghp_abcdef", "token_env": "T"},
                                           {"type": "webhook", "url": "https://me:hunter22@h.example.com/x",
                                            "secret_env": "S"}))
    assert "notify[0].url: unknown key" in text and "notify[1].token: unknown key" in text
    assert "must not carry credentials" in text and "hunter22" not in text and "ghp_abcdef" not in text


def test_each_problem_is_one_line_naming_the_table(tmp_path: Path) -> None:
    text = problems(tmp_path, ENV + tables({"type": "pager"},
                                           {"type": "gitlab", "repository": "5", "token_env": "T"},
                                           {"type": "gitea", "api": "https://g.example.com/api/v1", "repository": "x",
                                            "token_env": "T"},
                                           {"type": "webhook", "url": "https://h.example.com/x", "secret_env": "S",
                                            "events": ["applyed"]}))
    assert "notify[0].type = 'pager': unknown type; use one of gitea, github, gitlab, slack, webhook" in text
    assert "api is required for gitlab" in text
    assert "repository = 'x': must be owner/repo for gitea" in text
    assert "notify[3].events = ['applyed']: unknown event kind(s) 'applyed'" in text


def test_sinks_need_their_own_names_and_known_environments(tmp_path: Path) -> None:
    github = {"type": "github", "repository": "a/b", "token_env": "T"}
    text = problems(tmp_path, ENV + tables(github, {**github, "environments": ["prod"]}))
    assert "notify[1]: its name 'github' is also notify[0]'s; give each a name" in text
    assert "notify[1].environments: no environment named 'prod' (known: production)" in text


def test_public_url_is_an_http_url_without_credentials(tmp_path: Path) -> None:
    assert "must be an http:// or https:// URL" in problems(tmp_path, ENV + '[server]\npublic_url = "reconciler"\n')
    assert load(tmp_path, ENV).server.public_url is None
    assert status_link(None, "production") is None


def test_the_readme_example_is_a_valid_config(tmp_path: Path) -> None:
    """The TOML of the README's "Notifications and commit status" loads as it is written."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("### Notifications and commit status\n")
    block = re.search(r"```toml\n(.*?)```", readme[start:], flags=re.S).group(1)
    config = load(tmp_path, ENV + block)
    assert [n.type for n in config.notify] == ["webhook", "slack", "github"]
