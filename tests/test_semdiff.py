"""The semantic diff of two flow documents, on golden files.

Each case in tests/data/semdiff/ is ``<case>.old.json`` and ``<case>.new.json``
(either may be missing: an added or removed flow) and ``<case>.txt``, the
expected text rendering. ``UPDATE_GOLDEN=1 pytest tests/test_semdiff.py``
rewrites the ``.txt`` files; review the change before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler.secretrule import SecretRule
from reconciler.semdiff import MASKED, DiffItem, diff, render_text, render_value

DATA = Path(__file__).parent / "data" / "semdiff"
CASES = sorted({p.name.split(".")[0] for p in DATA.glob("*.json")})


def load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    """The text rendering of each golden pair is exactly the expected file."""
    items = diff(load(DATA / f"{case}.old.json"), load(DATA / f"{case}.new.json"))
    got = "\n".join(render_text(items)) + "\n"
    expected = DATA / f"{case}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        expected.write_text(got)
    assert got == expected.read_text()


def test_every_golden_case_has_an_expected_rendering() -> None:
    """A new pair without its .txt is a forgotten golden file, not a skipped test."""
    assert CASES and all((DATA / f"{c}.txt").exists() for c in CASES)


def test_items_are_frozen_values() -> None:
    """Diff items are immutable and compare by value."""
    a = diff({"x": 1}, {"x": 2})
    assert a == diff({"x": 1}, {"x": 2}) == (DiffItem("change", "/x", 1, 2),)
    with pytest.raises(AttributeError):
        a[0].op = "add"  # type: ignore[misc]


def test_steps_are_matched_by_id_not_by_position() -> None:
    """Inserting a step first reports one added step, not every step as changed."""
    old = {"steps": [{"id": "a", "v": 1}, {"id": "b", "v": 2}]}
    new = {"steps": [{"id": "z", "v": 0}, {"id": "a", "v": 1}, {"id": "b", "v": 2}]}
    (item,) = diff(old, new)
    assert (item.op, item.pointer, item.node.id, item.is_node) == ("add", "/steps/0", "z", True)


def test_secret_fields_and_secret_placeholders_are_masked_in_every_output() -> None:
    """A secret field's value and ${secret:...} never appear in items, JSON or text."""
    old = {"db": {"password": "hunter22", "dsn": "pg://u:${secret:PW}@h"}}
    new = {"db": {"password": "hunter23", "dsn": "pg://u:${secret:PW2}@h"}, "extra": {"apiKey": "k-123456"}}
    items = diff(old, new)
    shown = json.dumps([i.as_dict() for i in items]) + "\n".join(render_text(items))
    for secret in ("hunter22", "hunter23", "k-123456", "${secret:", "PW2"):
        assert secret not in shown
    assert any(i.old is MASKED for i in items)


def test_configured_secret_pointers_are_masked_too() -> None:
    """Pointers from the environment's secret_fields count as secret fields."""
    (item,) = diff({"auth": {"header": "a"}}, {"auth": {"header": "b"}}, secret=SecretRule(pointers=("/auth/header",)))
    assert (item.old, item.new) == (MASKED, MASKED)


def test_long_values_are_truncated_in_renderings() -> None:
    """A value longer than the width ends with an ellipsis."""
    text = render_value("x" * 500, width=40)
    assert len(text) == 40 and text.endswith("…")
