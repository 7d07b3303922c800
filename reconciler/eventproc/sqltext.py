"""Spelling Flink SQL text safely: identifiers, literals, intervals, types (pure).

Every name and value the renderer writes passes through here, so a node named
``it's `odd` `` or a password holding ``'`` and ``;`` cannot end a quoted token
early: identifiers are backtick-quoted with backticks doubled, string literals
single-quoted with quotes doubled (Flink SQL has no backslash escapes in
literals), and JAAS values double-quoted with ``\\`` and ``"`` escaped as
Kafka's JAAS parser expects.
"""

from __future__ import annotations

from reconciler.eventproc.model import Field

__all__ = ["ident", "literal", "jaas_value", "interval", "column_type", "comment_text"]

_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}


def ident(name: str) -> str:
    """A backtick-quoted identifier."""
    return "`" + name.replace("`", "``") + "`"


def literal(value: str) -> str:
    """A single-quoted string literal."""
    return "'" + value.replace("'", "''") + "'"


def jaas_value(value: str) -> str:
    """A double-quoted value inside a JAAS configuration string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def interval(duration: dict) -> str:
    """``INTERVAL '5' SECOND``; more than two digits need a leading precision (``MINUTE(3)``)."""
    value, unit = int(duration["value"]), duration["unit"]
    digits = len(str(value))
    return f"INTERVAL '{value}' {unit}" + (f"({digits})" if digits > 2 else "")


def seconds(duration: dict) -> int:
    return int(duration["value"]) * _SECONDS[duration["unit"]]


def column_type(f: Field) -> str:
    """The Flink column type of a field: ``ARRAY<ROW<`sku` STRING, `qty` INT>>`` for arrays of rows."""
    if f.elements:
        return "ARRAY<ROW<" + ", ".join(f"{ident(e.name)} {e.type}" for e in f.elements) + ">>"
    if f.element:
        return f"ARRAY<{f.element}>"
    return f.type


def comment_text(text: str) -> str:
    """Text safe on one ``--`` comment line: line breaks and other controls escaped."""
    out = []
    for ch in text:
        if ch < " " or ch in "\x7f\u2028\u2029\x85":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)
