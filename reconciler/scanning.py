"""An environment's secret store as the checks see it: the scanner of one or several environments.

The engine loads an environment's secrets strictly (it must not render without
them); a merge-request check may run where none are (CI): it searches flows for
the values it has, and always for credentials in secret fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from reconciler.templating import Templating

if TYPE_CHECKING:
    from reconciler.envconfig import EnvironmentConfig

__all__ = ["read_secrets", "environment_templating"]


def read_secrets(env: EnvironmentConfig) -> dict[str, str]:
    """The environment's secret values where this machine has them (none is fine: CI has none).

    Used only to search flows for those values; they are never printed.
    """
    return env.load_secrets(strict=False)


def environment_templating(envs: Iterable[EnvironmentConfig], *, with_secrets: bool = True) -> Templating:
    """A scanner for the secret fields and secret values of several environments at once."""
    envs = list(envs)
    secrets: dict[str, str] = {}
    pointers: list[str] = []
    keys: list[str] = []
    allow: list[str] | None = None
    for env in envs:
        if with_secrets:
            for name, value in read_secrets(env).items():
                # Only names appear in messages; qualify them when several environments are scanned.
                secrets[name if len(envs) == 1 else f"{env.name}:{name}"] = value
        pointers += [p for p in env.secret_fields if p not in pointers]
        keys += [k for k in env.secret_keys if k not in keys]
        # A field is let through only where every environment allows it.
        allow = list(env.secret_allow) if allow is None else [p for p in allow if p in env.secret_allow]
    kwargs: dict[str, Any] = {"secrets": secrets, "secret_pointers": tuple(pointers), "secret_allow": tuple(allow or ())}
    if keys:
        kwargs["secret_keys"] = tuple(keys)
    return Templating(**kwargs)
