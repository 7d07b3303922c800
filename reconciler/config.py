"""The configuration file: TOML, validated with pydantic; every default lives here.

Found at ``--config PATH``, else ``$RECONCILER_CONFIG``, else ``./reconciler.toml``.
Relative paths in it are relative to the file. A bad file is reported as one
line per problem: ``file: key = value: why``.

Environments are a list of tables, each validated by the model of its
``driver``; :data:`DRIVER_MODELS` is the registry. Notification sinks
(``[[notify]]``) are validated the same way, by the model of their ``type``
(:data:`reconciler.notify.settings.NOTIFY_MODELS`).
"""

# No `from __future__ import annotations`: pydantic would compile and eval each field's annotation string
# when the model class is created (every command's import of the config); evaluated here, they are bytecode.

import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, StrictBool, ValidationError, field_validator

from reconciler.configbase import ConfigMethods, find_config
from reconciler.drivers._common import http_url
from reconciler.envconfig import EnvironmentConfig, Model as _Model
from reconciler.errors import ConfigError, Problem
from reconciler.names import redact_url
from reconciler.notify.settings import NOTIFY_MODELS, NotifyConfig

__all__ = [
    "Config",
    "RepositoryConfig",
    "ServerConfig",
    "EnvironmentConfig",
    "DRIVER_MODELS",
    "load_config",
    "find_config",
    "parse_listen",
    "config_json_schema",
]

class RepositoryConfig(_Model):
    path: Path = Field(Path("state/flows.git"), description="Bare git repository; created if missing.")
    author_name: str = Field("flow-reconciler", description="Author and committer name of the reconciler's commits.")
    author_email: str = Field("reconciler@localhost", description="Author and committer e-mail.")
    remote: str | None = Field(
        None,
        description="URL of the git server holding the branches (https://, ssh:// or a path). "
        "Fetched every fetch_interval and on webhooks; the reconciler's commits are pushed there.",
    )
    fetch_interval: float = Field(60.0, gt=0, description="Seconds between fetches from the remote.")
    remote_token_env: str = Field(
        "RECONCILER_GIT_TOKEN", description="Environment variable holding an https token for the remote."
    )
    ssh_key: Path | None = Field(
        None, description="ssh remotes: the private key file (a '<file>.pub' beside it is used when present); "
        "without it, the ssh agent.",
    )
    ssh_known_hosts: Path | None = Field(
        None, description="ssh remotes: a known_hosts file with the server's host key (else ~/.ssh/known_hosts). "
        "An unknown or changed host key is refused, never trusted on first use.",
    )
    ssh_passphrase_env: str = Field(
        "RECONCILER_SSH_PASSPHRASE", description="Environment variable holding the ssh key's passphrase, if it has one."
    )
    max_flow_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="A flow larger than this in git is refused before it is read into memory."
    )
    replan_attempts: int = Field(
        5, ge=1, le=100,
        description="How often one run reads and plans again when the branch or the environment moved meanwhile.",
    )
    stale_lock_after: float = Field(
        60.0, ge=0,
        description="Seconds after which a ref .lock file that blocks the reconciler's own commit is taken "
        "for one left by a crashed process and removed (git holds one for milliseconds); 0: never, report it.",
    )


class ServerConfig(_Model):
    listen: str = Field("127.0.0.1:9420", description="HOST:PORT of the HTTP surface of `reconciler run`.")
    token_file: Path | None = Field(
        None, description="File holding the bearer token for POST /api/v1/... (else $RECONCILER_API_TOKEN)."
    )
    webhook_secret_file: Path | None = Field(
        None, description="File holding the webhook secret (else $RECONCILER_WEBHOOK_SECRET)."
    )
    shutdown_grace: float = Field(30.0, ge=0, description="Seconds a reconcile in flight may take to finish on SIGTERM.")
    max_body: int = Field(1_048_576, gt=0, description="Largest accepted request body in bytes.")
    request_timeout: float = Field(
        10.0, gt=0, le=300,
        description="Seconds a client has to send one whole request (request line, headers and body), and that "
        "an idle keep-alive connection stays open.",
    )
    retry_base: float = Field(1.0, gt=0, description="First retry delay (seconds) after a transient failure.")
    retry_max: float = Field(300.0, gt=0, description="Longest retry delay (seconds); delays double up to it.")
    debounce_ms: int = Field(50, ge=0, description="Quiet time (ms) that ends a burst of file or ref changes.")
    public_url: str | None = Field(
        None, description="The service's address as people reach it (https://reconciler.example.com): "
        "notifications and commit statuses link to <public_url>/environments/<env>. Without it, no link.",
    )
    secure_cookie: StrictBool | None = Field(
        None, description="Mark the status page's login cookie Secure (the browser sends it over HTTPS only). "
        "Default: on when public_url is an https:// address (a TLS proxy in front), off otherwise.",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_listen(v)
        return v

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        return None if v is None else http_url(v, credentials_hint="it is a link shown to people")


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class _DriverModels(Mapping[str, type[EnvironmentConfig]]):
    """Each driver module (:data:`reconciler.drivers.DRIVERS`) defines its settings model as SETTINGS;
    a module is imported when a config names its driver (a command on a directory environment does
    not pay for importing the HTTP and Node-RED drivers)."""

    def __init__(self) -> None:
        self._models: dict[str, type[EnvironmentConfig]] = {}

    def __getitem__(self, name: str) -> type[EnvironmentConfig]:
        from reconciler.drivers import DRIVERS

        if name not in self._models:
            module = DRIVERS[name]
            try:
                self._models[name] = importlib.import_module(module).SETTINGS
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
                raise KeyError(name) from exc
        return self._models[name]

    def __iter__(self) -> Iterator[str]:
        from reconciler.drivers import DRIVERS

        return iter([name for name in DRIVERS if name in self])

    def __len__(self) -> int:
        return len(list(iter(self)))


DRIVER_MODELS: Mapping[str, type[EnvironmentConfig]] = _DriverModels()


class Config(ConfigMethods, _Model):
    repository: RepositoryConfig = RepositoryConfig.model_construct()
    server: ServerConfig = ServerConfig.model_construct()
    environments: tuple[EnvironmentConfig, ...] = Field((), alias="environment")
    notify: tuple[NotifyConfig, ...] = Field(
        (), description="Notification sinks, one table each ([[notify]]): webhook, slack, github, gitlab, gitea.",
    )
    source: Path | None = Field(None, exclude=True)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


def load_config(path: str | Path) -> Config:
    """Read, validate and resolve a config file; raises ConfigError listing every problem."""
    import tomllib  # here: a command whose config comes from reconciler.configcache parses no TOML

    path = Path(path)
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError([Problem(where, f"no such file (looked for {path.absolute()}); pass --config PATH, "
                                          "set RECONCILER_CONFIG, or run from the folder holding reconciler.toml")]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(where, f"cannot read: {exc}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(where, f"not valid TOML: {exc}")]) from exc
    return parse_config(raw, base=path.parent.resolve(), where=where)


def parse_config(raw: dict[str, Any], *, base: Path, where: str = "config") -> Config:
    problems: list[Problem] = []
    envs_raw, parsed = _tables(raw, "environment", "driver", DRIVER_MODELS, where, problems)
    envs: list[EnvironmentConfig] = [env for _, env in parsed]
    _, notify = _tables(raw, "notify", "type", NOTIFY_MODELS, where, problems)
    try:
        top = Config.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_problems(exc, where, "", raw))
        top = None
    names: dict[str, int] = {}
    places: dict[tuple[str, str], str] = {}
    for i, env in enumerate(envs):
        if env.name in names:
            problems.append(Problem(where, f"environment[{i}].name = {env.name!r}: also used by environment[{names[env.name]}]"))
        names.setdefault(env.name, i)
        place = (env.branch_name, env.folder)
        if place in places:
            problems.append(
                Problem(where, f"environment[{i}]: branch {env.branch_name!r} folder {env.folder!r} is also used by {places[place]!r}")
            )
        places.setdefault(place, env.name)
    resolved = [_resolve_paths(env, base, where, problems) for env in envs]
    if not envs_raw and not problems:
        problems.append(Problem(where, "no environment: add at least one [[environment]] table "
                                       "(`reconciler schema` lists its keys)"))
    places_taken: dict[str, str] = {}
    for i, env in enumerate(resolved):
        exclusive = env.exclusive_location()
        if exclusive is None:
            continue
        key, kind, place = exclusive
        if place in places_taken:
            problems.append(Problem(where, f"environment[{i}].{key} = {str(getattr(envs[i], key))!r}: also the {kind} "
                                           f"of environment {places_taken[place]!r}; each environment needs its own {kind}"))
        places_taken.setdefault(place, env.name)
    _check_notify(notify, [e.name for e in envs], where, problems)
    _check_utf8(resolved, top, base, where, problems)
    if problems or top is None:
        raise ConfigError(problems)
    repo = top.repository.model_copy(update={"path": _abs(base, top.repository.path), **{
        k: _abs(base, getattr(top.repository, k)) for k in ("ssh_key", "ssh_known_hosts")
        if getattr(top.repository, k) is not None}})
    remote = top.repository.remote
    if remote and "://" not in remote and not remote.startswith("git@"):
        repo = repo.model_copy(update={"remote": str(_abs(base, Path(remote)))})
    server = top.server.model_copy(
        update={
            k: _abs(base, getattr(top.server, k))
            for k in ("token_file", "webhook_secret_file")
            if getattr(top.server, k) is not None
        }
    )
    notify = [n.model_copy(update={k: _abs(base, getattr(n, k)) for k in n.secret_files() if getattr(n, k) is not None})
              for _, n in notify]
    return top.model_copy(
        update={"repository": repo, "server": server, "environments": tuple(resolved), "notify": tuple(notify),
                "source": Path(where)}
    )


def _tables(raw: dict[str, Any], key: str, tag: str, models: Mapping[str, type[_Model]], where: str,
            problems: list[Problem]) -> tuple[list[Any], list[tuple[int, Any]]]:
    """The array of tables ``raw[key]`` (taken out of ``raw``), each validated by the model its ``tag`` names:
    ``(the tables as written, [(index, model), ...])``; every problem is added to ``problems``."""
    tables = raw.pop(key, [])
    if not isinstance(tables, list):
        problems.append(Problem(where, f"{key}: must be an array of tables ([[{key}]])"))
        return [], []
    out = []
    for i, table in enumerate(tables):
        loc = f"{key}[{i}]"
        if not isinstance(table, dict):
            problems.append(Problem(where, f"{loc}: must be a table"))
            continue
        name = table.get(tag)
        model = models.get(name) if isinstance(name, str) else None
        if model is None:
            known = ", ".join(sorted(models))
            problems.append(Problem(where, f"{loc}.{tag} = {name!r}: unknown {tag}; use one of {known}"))
            continue
        try:
            out.append((i, model.model_validate(table)))
        except ValidationError as exc:
            problems.extend(_problems(exc, where, loc, table))
    return tables, out


def _check_notify(notify: list[tuple[int, Any]], envs: list[str], where: str, problems: list[Problem]) -> None:
    """Each sink's name is its own (metrics and logs tell them apart by it); its environments exist."""
    names: dict[str, int] = {}
    for i, n in notify:
        if n.sink in names:
            problems.append(Problem(where, f"notify[{i}]: its name {n.sink!r} is also notify[{names[n.sink]}]'s; "
                                           "give each a name = \"...\""))
        names.setdefault(n.sink, i)
        for env in n.environments:
            if env not in envs:
                problems.append(Problem(where, f"notify[{i}].environments: no environment named {env!r} "
                                               f"(known: {', '.join(envs) or 'none'})"))


def _check_utf8(envs: list[EnvironmentConfig], top: Config | None, base: Path, where: str,
                problems: list[Problem]) -> None:
    """Every path the config resolves to is text git, JSON and the caches can hold: a folder named in
    bytes that are not UTF-8 (the config's own, most often, which relative paths start from) is refused
    here, by name, rather than failing half-way through a command."""
    from reconciler.configbase import settings_json

    def bad(p: Any) -> bool:
        try:
            str(p).encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False

    shown = ascii(str(base))[1:-1]
    fix = (f"paths are relative to the config's folder {shown}" if bad(base) else "") or "paths come from the config"
    for i, env in enumerate(envs):
        try:
            settings_json(env)  # the fingerprint every read needs (remembered: no cost later)
        except Exception as exc:  # noqa: BLE001 - pydantic wraps the UnicodeEncodeError
            if "surrogates not allowed" not in str(exc) and "UnicodeEncodeError" not in str(exc):
                raise
            problems.append(Problem(where, f"environment[{i}] ({env.name}): a path it resolves to is not valid UTF-8 "
                                           f"({fix}); rename the folder or give an absolute path in UTF-8"))
    if top is not None:
        repo = top.repository
        for key in ("path", "ssh_key", "ssh_known_hosts", "remote"):
            value = getattr(repo, key)
            if key == "remote" and value is not None and ("://" in value or value.startswith("git@")):
                continue  # a URL, not a path
            if value is not None and (bad(value) or (not Path(value).expanduser().is_absolute() and bad(base))):
                problems.append(Problem(where, f"repository.{key}: resolves to a path that is not valid UTF-8 ({fix}); "
                                               "rename the folder or give an absolute path in UTF-8"))


def _abs(base: Path, p: Path) -> Path:
    p = p.expanduser()
    return p if p.is_absolute() else (base / p)


def _resolve_paths(env: EnvironmentConfig, base: Path, where: str, problems: list[Problem]) -> EnvironmentConfig:
    resolved = env.resolved(base)
    if resolved.schema_ is not None:
        from reconciler.schemas import check_usable  # here: most environments have no schema of their own

        why = check_usable(Path(resolved.schema_))
        if why is not None:
            problems.append(Problem(where, f"environment {env.name!r}: schema = {str(env.schema_)!r}: {why}"))
    return resolved


def _problems(exc: ValidationError, where: str, prefix: str, raw: Any) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = prefix
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        if err["type"] == "extra_forbidden":
            out.append(Problem(where, f"{loc}: unknown key; check the spelling (`reconciler schema` prints every key)"))
        elif err["type"] == "missing":
            out.append(Problem(where, f"{loc}: required key is missing"))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            out.append(Problem(where, f"{loc} = {_redact(err.get('input'))!r}: {msg}"))
    return out


def _redact(value: Any) -> Any:
    """Never echo credentials: a URL's user:password@ part is masked in messages."""
    return redact_url(value) if isinstance(value, str) else value


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (published under manifests/schemas/)."""
    schema = Config.model_json_schema(by_alias=True, mode="validation")
    defs = schema.setdefault("$defs", {})
    variants = []
    for driver, model in sorted(DRIVER_MODELS.items()):
        sub = model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        defs[model.__name__] = sub
        variants.append({"$ref": f"#/$defs/{model.__name__}"})
    schema["properties"]["environment"] = {
        "type": "array",
        "items": {"oneOf": variants},
        "description": "The environments, one table each ([[environment]]).",
    }
    schema["properties"].pop("source", None)
    defs.pop("EnvironmentConfig", None)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "flow-reconciler configuration"
    return schema
