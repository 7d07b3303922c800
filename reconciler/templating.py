"""Per-environment parameters and secrets (pure: values are passed in).

Flows in git may hold placeholders in string values:

- ``${param:NAME}``: the environment's ``params.NAME``;
- ``${secret:NAME}``: a secret, resolved at import from the environment's
  secret store (the adapter reads it; nothing here touches files or env vars).

``render`` substitutes them for import. ``templatize`` is its inverse for
export: every exact occurrence of a parameter's value becomes its placeholder
(longest value first, never inside a longer token: ``prod`` is not replaced
in ``production``), and the value of a *secret field* (JSON pointers, or key
names such as ``password``) becomes ``${secret:NAME}`` when it is a known
secret. So the same flow exported from acceptance and from production gives
the same bytes, and a merge between their branches has no conflicts.

``scan`` refuses what must never reach git: a configured secret value
anywhere, or anything but a placeholder in a secret field. Problems name the
pointer and the secret's name, never its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Any

from reconciler.canonical import format_pointer, parse_pointer
from reconciler.secretrule import DEFAULT_SECRET_KEYS, PLACEHOLDER, SecretRule, norm_key

__all__ = ["Templating", "PLACEHOLDER", "DEFAULT_SECRET_KEYS", "MASK"]

MASK = "***"
# A secret shorter than this is not searched for in free text (it would match everywhere).
_MIN_SECRET = 4
_WORD = re.compile(r"\w")
# Characters JSON text escapes: a value holding one cannot be found by a plain text search.
_ESCAPED = re.compile(r'["\\\x00-\x1f\x7f]')


@dataclass(frozen=True)
class Templating:
    """An environment's parameters and secrets, and where its flows hold secrets."""

    params: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)  # name -> value, resolved by the adapter
    secret_pointers: tuple[str, ...] = ()
    secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS
    keep: tuple[str, ...] = ()  # pointers never rewritten (the flow's identity)
    secret_allow: tuple[str, ...] = ()  # pointers never refused for their key name alone

    @property
    def rule(self) -> SecretRule:
        return SecretRule(self.secret_keys, self.secret_pointers, self.secret_allow)

    @property
    def active(self) -> bool:
        return bool(self.params or self.secrets or self.secret_pointers)

    def renderer(self, raw: bytes):
        """``render`` for a document whose JSON text is ``raw``, or None when it provably holds no
        placeholder (no ``${`` and no ``\\u`` escape that could spell one). An environment without
        params or secrets still renders such a document: an unresolvable placeholder must make the
        flow invalid, never reach the platform as text."""
        if b"${" in raw or b"\\u" in raw:
            return self.render
        return None

    # -- import: placeholders -> values ---------------------------------------------

    def render(self, doc: Any, *, secrets: bool = True) -> tuple[Any, list[tuple[str, str]]]:
        """Substitute placeholders; returns (new document, [(pointer, problem)]).

        ``secrets`` False renders parameters only and leaves ``${secret:NAME}`` as it is
        (a merge-request check has the parameters of every environment, no secrets).
        """
        problems: list[tuple[str, str]] = []

        def sub(text: str, path: list[Any]) -> str:
            if "${" not in text or self._kept(path):  # no placeholder: nothing to render (no pointer to format)
                return text

            def one(m: re.Match[str]) -> str:
                kind, name = m.group(1), m.group(2)
                if kind == "secret" and not secrets:
                    return m.group(0)
                table = self.params if kind == "param" else self.secrets
                if name in table:
                    return table[name]
                where = format_pointer(path)
                if kind == "param":
                    problems.append((where, f"unknown parameter {name!r}: add it to the environment's params"))
                else:
                    problems.append((where, f"secret {name!r} is not in the environment's secret store"))
                return m.group(0)

            return PLACEHOLDER.sub(one, text)

        return _map_strings(doc, sub, []), problems

    # -- export: values -> placeholders -------------------------------------------------

    def templatize(self, doc: Any) -> tuple[Any, list[tuple[str, str]]]:
        """Put placeholders back; returns (new document, [(pointer, problem)])."""
        problems: list[tuple[str, str]] = []
        by_value = {v: k for k, v in self.secrets.items() if v}
        pattern = self._param_pattern()
        names = {v: k for k, v in self.params.items() if v}

        rule = self.rule

        def sub(text: str, path: list[Any]) -> str:
            if self._kept(path):
                return text
            if text in by_value and rule.is_field(path):
                return "${secret:" + by_value[text] + "}"
            if rule.refuses(text, path):
                problems.append((format_pointer(path), _CREDENTIAL))
                return text
            if pattern is None:
                return text
            return pattern.sub(lambda m: "${param:" + names[m.group(0)] + "}", text)

        out = _map_strings(doc, sub, [])
        return out, problems

    def _param_pattern(self) -> re.Pattern[str] | None:
        values = sorted((v for v in self.params.values() if v), key=len, reverse=True)
        if not values:
            return None
        alts = []
        for v in values:
            before = r"(?<!\w)" if _WORD.match(v[0]) else ""
            after = r"(?!\w)" if _WORD.match(v[-1]) else ""
            alts.append(before + re.escape(v) + after)
        return re.compile("|".join(alts))

    def quick_clean(self, data: bytes) -> bool:
        """True when canonical JSON text provably needs no templating and holds no secret.

        A C-speed pre-check on the text: no parameter value, no secret value and
        no key that could be a secret field appears in it. Conservative: any
        doubt (a value JSON would escape, a wildcard pointer) answers False and
        the caller walks the document.
        """
        values = [v for v in (*self.params.values(), *self.secrets.values()) if v]
        if any(_ESCAPED.search(v) for v in values):
            return False
        if any(v.encode("utf-8") in data for v in values):
            return False
        for pointer in self.secret_pointers:
            last = parse_pointer(pointer)[-1] if pointer else ""
            if last in ("", "*") or f'"{last}":'.encode() in data:
                return False
        folded = data.lower().translate(None, b"-_")
        return not any(k in folded for k in _norm_keys(self.secret_keys))

    def redact(self, text: str) -> str:
        """``text`` with every known secret value masked: the last guard on any message,
        status or log line that may quote a value (a platform's error, a schema message)."""
        for value in sorted((v for v in self.secrets.values() if len(v) >= _MIN_SECRET), key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return text

    def _kept(self, path: list[Any]) -> bool:
        return bool(self.keep) and format_pointer(path) in self.keep

    def fingerprint(self) -> str:
        """Changes when any parameter or secret value changes (never reveals them)."""
        import hashlib

        h = hashlib.sha256()
        for table in (self.params, self.secrets):
            for k in sorted(table):
                h.update(k.encode() + b"\0" + table[k].encode() + b"\0")
            h.update(b"\1")
        h.update(repr((self.secret_pointers, self.secret_keys, self.keep, self.secret_allow)).encode())
        return h.hexdigest()

    # -- before any commit ------------------------------------------------------------------

    def scan(self, doc: Any) -> list[tuple[str, str]]:
        """Secrets that would reach git: (pointer, message) without the value.

        Every node is visited: string values, object keys and numbers are searched
        for known secret values; every leaf under a secret field (strings, numbers,
        booleans, inside objects and arrays) is judged by :class:`SecretRule`.
        """
        problems: list[tuple[str, str]] = []
        known = [(k, v) for k, v in self.secrets.items() if len(v) >= _MIN_SECRET]
        rule = self.rule

        def values_in(text: str, where: str, what: str) -> None:
            for name, value in known:
                if value in text:
                    problems.append((where, f"{what} the value of secret {name!r}; it must stay out of git"))

        stack: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
        while stack:
            node, path = stack.pop()
            if isinstance(node, dict):
                for k in reversed(list(node)):
                    child = (*path, k)
                    values_in(k, format_pointer(child), "its key holds")
                    stack.append((node[k], child))
                continue
            if isinstance(node, list):
                stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(node))))
                continue
            where = format_pointer(path)
            if isinstance(node, str):
                values_in(node, where, "holds")
            elif isinstance(node, (int, float)) and not isinstance(node, bool):
                values_in(_number_text(node), where, "is")
            if rule.refuses(node, path):
                problems.append((where, _CREDENTIAL))
        return [(self.redact(p), m) for p, m in problems]  # a pointer may hold a key that is a secret


_CREDENTIAL = ("looks like a credential (a secret field that is not a ${secret:NAME} placeholder): put the value "
               "in the environment's secret store and export again (it becomes ${secret:NAME}); if it is not a "
               "secret, list this pointer in the environment's secret_allow")


def _number_text(n: int | float) -> str:
    return str(int(n)) if isinstance(n, float) and n.is_integer() else str(n)


@lru_cache(maxsize=64)
def _norm_keys(keys: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(norm_key(k).encode() for k in keys)


def _map_strings(node: Any, fn, path: list[Any]) -> Any:
    """A copy of ``node`` with every string value replaced by ``fn(value, path)``."""
    if isinstance(node, str):
        return fn(node, path)
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            path.append(k)
            out[k] = _map_strings(v, fn, path)
            path.pop()
        return out
    if isinstance(node, list):
        out_list = []
        for i, v in enumerate(node):
            path.append(i)
            out_list.append(_map_strings(v, fn, path))
            path.pop()
        return out_list
    return node
