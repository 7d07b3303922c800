"""The names of the hidden files the write protocol keeps in a folder while it works: one encoder, one decoder.

================================================================  ==========================================
``.reconciler-<pid>-<seq>.tmp``                                   a new version being written (nothing to keep)
``.reconciler-<pid>-<seq>-<random>-<expect>.<name>.aside``        the old version of ``<name>``, moved aside
``.reconciler-<pid>-<seq>-<random>-<expect>-<new>.<name>.swap``   our new version of ``<name>`` before the swap,
                                                                  or what the swap took out of its place
================================================================  ==========================================

``<expect>`` is the first 12 hex digits of the canonical id the plan saw,
``<new>`` those of the git blob id of our bytes, so that a recovery can tell
our version, the plan's old one and a save apart; pid, sequence and a random
part make the name unique. ``.<name>`` is left out when the whole would not
fit a file name (a recovery then puts the file under ``recovered.json``).
A leading dot and no ``.json`` ending: no tool globbing ``*.json`` takes one
for a flow. Older spellings (``.reconciler-<pid>-<seq>[.<name>].aside``) decode
with nothing known of what the plan saw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["PREFIX", "TMP", "ASIDE", "SWAP", "RECOVERED", "Hidden", "hidden_name"]

PREFIX = ".reconciler-"
TMP, ASIDE, SWAP = ".tmp", ".aside", ".swap"
#: where a hidden file goes back when its name does not say which flow file it belongs to
RECOVERED = "recovered.json"

_FIELDS = {TMP: 2, ASIDE: 4, SWAP: 5}  # dash-separated parts of the head: pid, seq, random, expect, new
_MAX_NAME_BYTES = 250  # below the usual 255-byte limit of a file name


def hidden_name(kind: str, seq: int, *, name: str = "", expect: str = "", new: str = "") -> str:
    """The hidden file name of ``kind`` (``TMP``, ``ASIDE``, ``SWAP``) for the flow file ``name``."""
    parts = [str(os.getpid()), str(seq)]
    if kind != TMP:
        parts += [os.urandom(3).hex(), expect[:12]] + ([new[:12]] if kind == SWAP else [])
    head = PREFIX + "-".join(parts)
    if name and len(os.fsencode(head)) + len(os.fsencode(name)) + len(kind) < _MAX_NAME_BYTES:
        head += "." + name
    return head + kind


@dataclass(frozen=True)
class Hidden:
    """What a hidden file's name says: its kind, the flow file it belongs under, and the 12-digit
    prefixes of what the plan saw (``expect``) and of our new bytes (``new``), "" when not known."""

    kind: str
    name: str
    expect: str = ""
    new: str = ""

    @classmethod
    def decode(cls, filename: str) -> Hidden | None:
        """The name read back; None when it is not a hidden file of the write protocol."""
        kind = next((k for k in _FIELDS if filename.endswith(k)), None)
        if kind is None or not filename.startswith(PREFIX):
            return None
        head, _, name = filename[len(PREFIX):-len(kind)].partition(".")
        if not name or name.startswith(".") or "/" in name:
            name = RECOVERED
        parts = head.split("-")
        if len(parts) != _FIELDS[kind] or kind == TMP:
            return cls(kind, name)
        expect, new = parts[3], (parts[4] if kind == SWAP else "")
        return cls(kind, name, expect if len(expect) == 12 else "", new if len(new) == 12 else "")
