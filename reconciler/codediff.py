"""Code changes shown as code (pure): a unified diff for text (the merge-request comment, the CLI) and
side-by-side rows for the status page, both line by line with :mod:`difflib`.

A code change is a :class:`reconciler.semdiff.DiffItem` whose ``code`` is set: its values are already
masked (``${secret:…}`` as ``***``, a secret field never reaches here as text), so these renderings
can only show what the semantic diff shows.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

__all__ = ["unified", "changed_lines", "SideRow", "side_by_side"]

_CONTEXT = 3


def _lines(text: str) -> list[str]:
    return text.split("\n")


def unified(old: str, new: str, label: str, context: int = _CONTEXT) -> list[str]:
    """``--- a/<label>``, ``+++ b/<label>`` and the hunks, as ``git diff`` shows a text file's change
    (lines without their newline; a text's last line is a line whether or not a newline ends it)."""
    out = list(difflib.unified_diff(_lines(old), _lines(new), f"a/{label}", f"b/{label}", n=context, lineterm=""))
    return out


def changed_lines(old: str, new: str) -> tuple[int, int]:
    """(lines added, lines removed)."""
    added = removed = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, _lines(old), _lines(new), autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            removed += i2 - i1
        if tag in ("replace", "insert"):
            added += j2 - j1
    return added, removed


@dataclass(frozen=True)
class SideRow:
    """One row of a side-by-side diff: ``kind`` is same | change | add | remove | skip (unchanged lines
    folded: ``left`` says how many); line numbers start at 1 (0: no line on that side)."""

    kind: str
    left_no: int = 0
    left: str = ""
    right_no: int = 0
    right: str = ""


def side_by_side(old: str, new: str, context: int = _CONTEXT) -> list[SideRow]:
    """Old lines on the left, new on the right, changed lines paired, long unchanged runs folded."""
    a, b = _lines(old), _lines(new)
    rows: list[SideRow] = []
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    for n, (tag, i1, i2, j1, j2) in enumerate(ops):
        if tag == "equal":
            keep_head = context if n > 0 else 0
            keep_tail = context if n < len(ops) - 1 else 0
            if i2 - i1 > keep_head + keep_tail + 1:
                rows += [SideRow("same", i + 1, a[i], j1 + (i - i1) + 1, a[i]) for i in range(i1, i1 + keep_head)]
                rows.append(SideRow("skip", left=str(i2 - i1 - keep_head - keep_tail)))
                rows += [SideRow("same", i + 1, a[i], j1 + (i - i1) + 1, a[i]) for i in range(i2 - keep_tail, i2)]
            else:
                rows += [SideRow("same", i + 1, a[i], j1 + (i - i1) + 1, a[i]) for i in range(i1, i2)]
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + k, j1 + k
            left = (i + 1, a[i]) if i < i2 else (0, "")
            right = (j + 1, b[j]) if j < j2 else (0, "")
            kind = "change" if left[0] and right[0] else ("remove" if left[0] else "add")
            rows.append(SideRow(kind, left[0], left[1], right[0], right[1]))
    return rows
