"""Reversible, traversal-proof encoding of flow names and versions as path segments.

A name made only of ``A-Za-z0-9._-`` (and not ``.`` or ``..``) is its own path
segment, so ``flows/orders/1.0.json`` reads naturally. Anything else becomes
``~`` followed by an ASCII encoding:

- ``a-z 0-9 . _ -`` stand for themselves;
- an upper-case letter ``X`` is written ``^x``;
- every other character is ``%HH`` per UTF-8 byte (upper-case hex).

The result never holds ``/``, ``\\``, NUL or upper-case letters, so it cannot
leave its folder, and two different names can never encode to segments that
differ only in case (a case-insensitive checkout stays collision free: lower
the encoding and it still decodes to the same name). Plain names never start
with ``~``, so they never collide with encoded ones. Two *plain* names that
differ only in case (``Orders`` and ``orders``) would; :func:`case_collisions`
finds them so the caller can refuse the second one with a clear error.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from functools import lru_cache

__all__ = [
    "InvalidName",
    "encode",
    "decode",
    "flow_path",
    "parse_flow_path",
    "case_collisions",
    "ref_name_problem",
    "redact_url",
    "MAX_SEGMENT",
]

_PLAIN = re.compile(r"[A-Za-z0-9._-]+")
_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
# Most file systems cap a path segment at 255 bytes; keep room for ".json".
MAX_SEGMENT = 240


class InvalidName(ValueError):
    """A name or path segment that cannot be used."""


def encode(name: str) -> str:
    """Path segment for a flow name or version."""
    if not isinstance(name, str) or name == "":
        raise InvalidName("a flow name or version must be a non-empty string")
    return _encode(name)


class _Escapes(dict):
    """code point -> its encoding in a segment (for ``str.translate``), filled as characters are met."""

    def __missing__(self, cp: int) -> str:
        ch = chr(cp)
        if ch in _LITERAL:
            out = ch
        elif "A" <= ch <= "Z":
            out = "^" + ch.lower()
        else:
            out = "".join(f"%{b:02X}" for b in ch.encode("utf-8"))  # UnicodeEncodeError: a lone surrogate
        if len(self) < 1 << 16:
            self[cp] = out
        return out


_ESCAPES = _Escapes()


@lru_cache(maxsize=1 << 17)
def _encode(name: str) -> str:
    # Memoised: pure, and called for every flow of every reconcile.
    if _PLAIN.fullmatch(name) and name not in (".", ".."):
        seg = name
    else:
        try:
            seg = "~" + name.translate(_ESCAPES)  # one C pass; each character's escape worked out once
        except UnicodeEncodeError as exc:
            raise InvalidName(f"{name!r} holds a lone surrogate, not valid text") from exc
    if len(seg) > MAX_SEGMENT:
        raise InvalidName(
            f"{name[:40]!r}... is too long: its path segment would be {len(seg)} bytes (limit {MAX_SEGMENT})"
        )
    return seg


def decode(segment: str) -> str:
    """Inverse of :func:`encode`; refuses any segment :func:`encode` cannot produce."""
    if not isinstance(segment, str):
        raise InvalidName(f"{segment!r} is not a valid flow path segment")
    return _decode(segment)


_ANY_HEX = re.compile(r"[0-9A-Fa-f]{2}")


def unescape(body: str, literal: Container[str], hex_pair: re.Pattern[str] = _ANY_HEX) -> str:
    """The text an escaped body spells: characters of ``literal`` as they are, ``^x`` for an upper-case
    X, ``%hh`` for a byte (``hex_pair`` says which spellings of it count). The one decoder of flow path
    segments and sidecar names. Raises UnicodeDecodeError for bytes that are not UTF-8, ValueError for
    anything else that is not such a body."""
    raw = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch in literal:
            raw += ch.encode()
            i += 1
        elif ch == "^" and i + 1 < len(body) and "a" <= body[i + 1] <= "z":
            raw += body[i + 1].upper().encode()
            i += 2
        elif ch == "%" and hex_pair.fullmatch(body[i + 1 : i + 3]):
            raw.append(int(body[i + 1 : i + 3], 16))
            i += 3
        else:
            raise ValueError(f"not an escaped text at {i}")
    return raw.decode("utf-8")


@lru_cache(maxsize=1 << 17)
def _decode(segment: str) -> str:
    if not segment.startswith("~"):
        if _PLAIN.fullmatch(segment) and segment not in (".", ".."):
            return segment
        raise InvalidName(f"{segment!r} is not a valid flow path segment")
    try:
        name = unescape(segment[1:], _LITERAL)
    except UnicodeDecodeError as exc:
        raise InvalidName(f"{segment!r} does not decode to UTF-8 text") from exc
    except ValueError as exc:
        raise InvalidName(f"{segment!r} is not a valid encoded flow path segment") from exc
    if encode(name).lower() != segment.lower():
        # Only the canonical spelling is accepted, so one name has one path.
        raise InvalidName(f"{segment!r} is not the canonical encoding of {name!r}; expected {encode(name)!r}")
    return name


def flow_path(folder: str, name: str, version: str) -> str:
    """``<folder>/<name>/<version>.json`` with both parts encoded."""
    return f"{folder}/{encode(name)}/{encode(version)}.json"


def parse_flow_path(rel: str) -> tuple[str, str]:
    """``<name>/<version>.json`` (relative to the flows folder) -> (name, version)."""
    parts = rel.split("/")
    if len(parts) != 2 or not parts[1].endswith(".json"):
        raise InvalidName(f"{rel!r} is not <name>/<version>.json")
    return decode(parts[0]), decode(parts[1][: -len(".json")])


def case_collisions(segments: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of distinct segments that are equal ignoring case (first seen, later)."""
    seen: dict[str, str] = {}
    out = []
    for seg in segments:
        low = seg.lower()
        if low in seen and seen[low] != seg:
            out.append((seen[low], seg))
        else:
            seen.setdefault(low, seg)
    return out


_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def ref_name_problem(ref: str) -> str | None:
    """Why ``ref`` is not a valid git reference name (``git check-ref-format``), or None."""
    if not ref or ref == "@":
        return "must not be empty or '@'"
    if ref.startswith("/") or ref.endswith("/") or "//" in ref:
        return "must not start or end with '/' or hold '//'"
    if ref.endswith("."):
        return "must not end with '.'"
    if ".." in ref or "@{" in ref:
        return "must not hold '..' or '@{'"
    if _REF_FORBIDDEN.search(ref):
        return "must not hold spaces, control characters or any of ~ ^ : ? * [ \\"
    for part in ref.split("/"):
        if part.startswith("."):
            return f"no part may start with '.' ({part!r})"
        if part.endswith(".lock"):
            return f"no part may end with '.lock' ({part!r})"
    return None


def redact_url(value: str) -> str:
    """A URL with its ``user:password@`` part masked, for messages (other strings as they are)."""
    if "://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = value.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return value
