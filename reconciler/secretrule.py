"""Which values of a flow are secrets (pure): the one rule every check and every mask uses.

A *secret field* is named two ways:

- **by pointer** (an environment's ``secret_fields``, ``*`` matching any key or
  index): the user says this field holds a secret, so everything but an empty
  string, ``null`` or a ``${secret:NAME}`` placeholder there is refused:
  strings, numbers, booleans, objects and arrays alike;
- **by key name** (``secret_keys``: ``password``, ``token``, ``apikey``…): a
  normalised *suffix* match (case, ``-`` and ``_`` ignored), so ``dbPassword``
  and ``api_token`` are secret fields and ``tokenizer`` is not. A name is only a
  hint, so a value that cannot be a credential is let through: an empty string,
  a ``${…}`` or ``$NAME`` environment-variable reference, a file path
  (``/etc/ssl/key.pem``, ``C:\\certs\\key.pem``), a boolean, ``null``. Under an
  object or array held by such a key every leaf is judged the same way, a
  number being let through only where its own key names a port, a size, a
  count or a time (``"privateKey": {"path": "/k.pem", "port": 22}``). Pointers in
  ``secret_allow`` are never refused for their name alone.

Known secret *values* are a separate check (:mod:`reconciler.templating`):
they are refused anywhere, whatever the field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from reconciler.canonical import parse_pointer
from reconciler.pointers import matches

__all__ = ["SecretRule", "DEFAULT_SECRET_KEYS", "PLACEHOLDER", "SECRET_PLACEHOLDER", "norm_key"]

DEFAULT_SECRET_KEYS = ("password", "passwd", "secret", "token", "apikey", "api_key", "privatekey", "private_key", "credential")
PLACEHOLDER = re.compile(r"\$\{(param|secret):([A-Za-z0-9_.-]+)\}")
SECRET_PLACEHOLDER = re.compile(r"\$\{secret:[A-Za-z0-9_.-]+\}")
# Not credentials, whatever the key is called: references to where the value lives.
_ENV_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\{\{\s*[\w.]+\s*\}\}")
_PATH = re.compile(r"(?:/|~/|\./|\.\./|[A-Za-z]:[\\/]|\\\\)[^\s]*")
# Leaf keys under a secret object whose numbers are not secrets.
_NUMERIC_KEYS = ("port", "timeout", "ttl", "size", "length", "count", "retries", "interval", "expiry", "expires",
                 "version", "bits", "iterations")


@lru_cache(maxsize=8192)
def norm_key(key: str) -> str:
    return key.lower().replace("-", "").replace("_", "")


@dataclass(frozen=True)
class SecretRule:
    """Which values of a flow are secrets: by key name, by pointer, minus the allowed pointers."""

    keys: tuple[str, ...] = DEFAULT_SECRET_KEYS
    pointers: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()

    @property
    def _norm_keys(self) -> tuple[str, ...]:
        return _normed(self.keys)

    def _by_key(self, key: Any) -> bool:
        if not isinstance(key, str):
            return False
        k = norm_key(key)
        return any(k.endswith(n) for n in self._norm_keys)

    def _by_pointer(self, path: Sequence[Any]) -> bool:
        return any(matches(segs, path) for segs in _parsed(self.pointers))

    def _allowed(self, path: Sequence[Any]) -> bool:
        """``path`` is an allowed pointer or under one."""
        return any(len(segs) <= len(path) and matches(segs, path[:len(segs)]) for segs in _parsed(self.allow))

    def kind(self, path: Sequence[Any]) -> str | None:
        """``"pointer"``, ``"key"`` when ``path`` is (or is under) a secret field, else None."""
        for i in range(len(path), 0, -1):
            prefix = path[:i]
            if self._by_pointer(prefix):
                return "pointer"
        if any(self._by_key(seg) for seg in path) and not self._allowed(path):
            return "key"
        return None

    def is_field(self, path: Sequence[Any]) -> bool:
        """True when the value at ``path`` must be masked wherever it is shown."""
        return self.kind(path) is not None

    def refuses(self, value: Any, path: Sequence[Any]) -> bool:
        """True when ``value`` (a leaf at ``path``) may not be written to git as it is."""
        kind = self.kind(path)
        if kind is None or value is None or value == "":
            return False
        if isinstance(value, str) and PLACEHOLDER.fullmatch(value) and value.startswith("${secret:"):
            return False
        if kind == "pointer":
            return True
        if isinstance(value, bool):
            return False
        if isinstance(value, str):
            return not (_ENV_REF.fullmatch(value) or _PATH.fullmatch(value))
        if isinstance(value, (int, float)):
            leaf = norm_key(str(path[-1])) if path else ""
            return not (isinstance(path[-1], str) and any(leaf.endswith(k) for k in _NUMERIC_KEYS))
        return True


@lru_cache(maxsize=64)
def _normed(keys: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(norm_key(k) for k in keys)


@lru_cache(maxsize=256)
def _parsed(pointers: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(parse_pointer(p) for p in pointers)
