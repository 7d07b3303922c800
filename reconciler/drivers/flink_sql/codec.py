"""What a Flink SQL environment's files are called and how they are compared (pure).

A script ``orders@1.sql`` (names encoded as in git: :mod:`reconciler.names`) is
compared, and saved to ``drift/<env>`` before a restore, as a small JSON
document::

    {"kind": "flink-sql", "name": "orders", "version": "1", "sql": "<the script>"}

in which every known secret of the environment (as rendered: raw, inside a SQL
string literal, inside a JAAS value) is put back as its ``${secret:NAME}``
placeholder, and any other value of a password-like option or JAAS field is
``<redacted>``: the form compared on both sides holds no secret, so neither
does git. The same function builds the form of what a flow renders to and of
what a file holds, so an unchanged file compares equal byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from reconciler.canonical import Rules, blob_id, canonicalize
from reconciler.flows import CanonicalFlow, FlowKey
from reconciler.names import InvalidName, decode, encode

__all__ = ["SUFFIX", "KIND", "file_name", "key_of", "header_id", "Hider", "view"]

SUFFIX = ".sql"
KIND = "flink-sql"
REDACTED = "<redacted>"
_MIN_SECRET = 4  # shorter values are too common to replace (the option and JAAS rules still catch them)

_SECRETISH = re.compile(r"pass(word|wd)?|secret|token|credential|api[._-]?key|private[._-]?key", re.IGNORECASE)
_OPTION = re.compile(r"'((?:[^']|'')*)'(\s*=\s*)'((?:[^']|'')*)'")
_JAAS = re.compile(r"""\b([A-Za-z_.]*(?:password|secret|token)[A-Za-z_.]*)(\s*=\s*)(\\?")((?:[^"\\]|\\.)*?)(\\?")""",
                   re.IGNORECASE)
_PLACEHOLDER = re.compile(r"^\$\{secret:[^}]+\}$")
_ID = re.compile(r"^-- Id: (.*)$", re.MULTILINE)


def file_name(key: FlowKey) -> str:
    return f"{encode(key.name)}@{encode(key.version)}{SUFFIX}"


def key_of(filename: str) -> FlowKey | None:
    """The flow a script's name says it is (None: not ``<name>@<version>.sql``)."""
    if not filename.endswith(SUFFIX):
        return None
    name, at, version = filename[: -len(SUFFIX)].rpartition("@")
    if not at or not name or not version:
        return None
    try:
        key = FlowKey(decode(name), decode(version))
    except (InvalidName, ValueError):
        return None
    return key if file_name(key) == filename else None


def header_id(text: str) -> str | None:
    """The ``-- Id: name@version`` line of a rendered script's header (None if it has none)."""
    m = _ID.search(text[:4096])
    return m.group(1).strip() if m else None


class Hider:
    """Puts an environment's known secrets back as placeholders in a script's text."""

    def __init__(self, secrets: Mapping[str, str]):
        forms: dict[str, str] = {}
        for name, value in secrets.items():
            if not isinstance(value, str) or len(value) < _MIN_SECRET:
                continue
            jaas = value.replace("\\", "\\\\").replace('"', '\\"')
            for form in (value, value.replace("'", "''"), jaas, jaas.replace("'", "''")):
                forms.setdefault(form, "${secret:" + name + "}")
        self._forms = sorted(forms.items(), key=lambda kv: len(kv[0]), reverse=True)
        self._pattern = re.compile("|".join(re.escape(f) for f, _ in self._forms)) if self._forms else None

    def hide(self, text: str) -> str:
        if self._pattern is None:
            return text
        table = dict(self._forms)
        return self._pattern.sub(lambda m: table[m.group(0)], text)


def _redact_unknown(text: str) -> str:
    """Values of password-like options and JAAS fields that are not placeholders: ``<redacted>``."""

    def jaas(m: re.Match[str]) -> str:
        value = m.group(4)
        if _PLACEHOLDER.match(value) or value == REDACTED:
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{m.group(3)}{REDACTED}{m.group(5)}"

    def option(m: re.Match[str]) -> str:
        key, value = m.group(1), m.group(3)
        if not _SECRETISH.search(key) or key.endswith("jaas.config") or _PLACEHOLDER.match(value) or value == REDACTED:
            return m.group(0)
        return f"'{key}'{m.group(2)}'{REDACTED}'"

    return _OPTION.sub(option, _JAAS.sub(jaas, text))


def view(key: FlowKey, text: str, hider: Hider) -> CanonicalFlow:
    """The compared form of a script (see the module docstring)."""
    doc = {"kind": KIND, "name": key.name, "version": key.version, "sql": _redact_unknown(hider.hide(text))}
    data = canonicalize(doc, Rules())
    return CanonicalFlow(key, data, blob_id(data))
