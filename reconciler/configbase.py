"""What the config's objects *do*, without pydantic: one copy of each method, for two kinds of objects.

The pydantic models (:mod:`reconciler.config`, :mod:`reconciler.envconfig`, each driver's and the
``[[notify]]`` settings) validate a config; they inherit these mixins. A config loaded from
:mod:`reconciler.configcache` is a tree of frozen views (:mod:`reconciler.configview`) holding the
same fields, inheriting the same mixins: a command whose config was validated before imports no
pydantic. A mixin holds no field and no annotation (pydantic would take one for a field), only
methods, properties and class constants, and reads nothing but the fields both kinds hold.

Also here, for the same reason: :func:`find_config` and each environment's remembered
:func:`settings_json` (:mod:`reconciler.envconfig` re-exports them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.canonical import Rules
from reconciler.codefields import CodeField, Declared
from reconciler.flows import Identity
from reconciler.plan import Policy

if TYPE_CHECKING:  # a window's mixin builds one (and imports the module) only when a config has windows
    from reconciler.windows import Window

__all__ = ["ConfigMethods", "EnvironmentMethods", "WindowMethods", "find_config", "settings_json",
           "remember_settings_json", "UNTIMED"]


def find_config(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get("RECONCILER_CONFIG") or "reconciler.toml")


class ConfigMethods:
    """:class:`reconciler.config.Config`'s methods."""

    __slots__ = ()

    def env(self: Any, name: str) -> Any:
        for e in self.environments:
            if e.name == name:
                return e
        from reconciler.errors import ConfigError, Problem

        known = ", ".join(e.name for e in self.environments) or "none"
        raise ConfigError([Problem(str(self.source or "config"), f"no environment named {name!r} (known: {known})")])


class WindowMethods:
    """:class:`reconciler.envconfig.WindowConfig`'s methods."""

    __slots__ = ()

    def window(self: Any) -> "Window":
        from reconciler.windows import Window, parse_duration

        try:
            return Window(self.kind, self.schedule, parse_duration(self.duration), self.timezone, self.manual,
                          self.name)
        except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(str(exc).strip("'\"") or "unknown time zone") from exc


class EnvironmentMethods:
    """:class:`reconciler.envconfig.EnvironmentConfig`'s methods (a driver's mixin overrides some)."""

    __slots__ = ()

    #: fields holding paths relative to the config file (a driver's mixin adds its own)
    PATH_FIELDS = ("secrets_dir", "schema_")

    def exclusive_location(self) -> tuple[str, str, str] | None:
        """Where the environment lives, when no other environment may live there too: (the setting,
        what it is, an identity of the place), e.g. ("path", "folder", its real path)."""
        return None

    def delete_limit(self: Any, total: int) -> int:
        """How many of ``total`` flows one run may delete."""
        if isinstance(self.max_delete, int):
            return self.max_delete
        return max(2, int(total * float(self.max_delete[:-1]) / 100))

    @property
    def branch_name(self: Any) -> str:
        assert self.branch is not None
        return self.branch

    def sync_windows(self: Any) -> "tuple[Window, ...]":
        return tuple(w.window() for w in self.windows)

    @property
    def policy(self: Any) -> Policy:
        return Policy(drift=self.drift, prune=self.prune, override=self.override)

    @property
    def rules(self: Any) -> Rules:
        return Rules.of(self.ignore, self.sort)

    @property
    def flow_identity(self: Any) -> Identity:
        return Identity(self.identity.name, self.identity.version)

    def declarations(self: Any) -> tuple[Declared, ...]:
        """What the flows' kinds and this environment say about their fields: code and layout."""
        from reconciler.kinds import declarations

        own = Declared(code=tuple(CodeField(s.pointer, s.ext) for s in self.sidecars), layout=self.layout_fields,
                       name=f"environment {self.name}")
        return (*declarations(), own) if own.code or own.layout else declarations()

    def code_declarations(self: Any) -> tuple[Declared, ...]:
        """The declarations that split flows when they are written to git (none in the single-file form)."""
        return self.declarations() if self.form == "split" else ()

    def load_secrets(self: Any, *, strict: bool = True) -> dict[str, str]:
        """Secret values from ``<secrets_env_prefix>NAME`` variables and files in ``secrets_dir``.

        ``strict``: an unreadable ``secrets_dir`` raises OSError (the engine must
        not render with missing secrets); otherwise it is skipped (CI checks).
        """
        secrets: dict[str, str] = {}
        prefix = self.secrets_env_prefix
        if prefix:
            secrets.update((k[len(prefix):], v) for k, v in os.environ.items() if k.startswith(prefix) and len(k) > len(prefix))
        if self.secrets_dir is not None:
            try:
                for entry in os.scandir(self.secrets_dir):
                    if entry.is_file() and not entry.name.startswith("."):
                        with open(entry.path, encoding="utf-8") as f:
                            secrets[entry.name] = f.read().rstrip("\n")
            except OSError:
                if strict:
                    raise
        return secrets

    def build_driver(self: Any) -> Any:
        """The driver for this environment (each driver's mixin implements it)."""
        raise NotImplementedError(f"driver {self.driver!r} has no implementation")


#: what :func:`settings_json` leaves out: when the environment may run, not what its flows are
UNTIMED = frozenset({"interval", "windows"})
_SETTINGS_JSON: dict[int, tuple[Any, str]] = {}  # id -> (the environment, kept alive so the id is its own; its JSON)


def settings_json(env: Any) -> str:
    """``env.model_dump_json(exclude=UNTIMED)`` (a fingerprint's part, see ``readindex``), remembered for
    this very object (frozen): a config loaded from :mod:`reconciler.configcache` brings it along, so a
    command needs no serializer built for it (nor pydantic imported)."""
    got = _SETTINGS_JSON.get(id(env))
    if got is not None and got[0] is env:
        return got[1]
    text = env.model_dump_json(exclude=set(UNTIMED))
    remember_settings_json(env, text)
    return text


def remember_settings_json(env: Any, text: str) -> None:
    if len(_SETTINGS_JSON) >= 1024:  # a service reloading its config for months: the old ones go
        _SETTINGS_JSON.clear()
    _SETTINGS_JSON[id(env)] = (env, text)
