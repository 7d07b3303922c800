"""Event-processing flows mutated at random: check never raises, render returns SQL or refuses."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.eventproc import RenderRefused, check, render

EXAMPLES = Path(__file__).resolve().parent.parent / "manifests" / "examples" / "event-processing"
DOCS = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(EXAMPLES.glob("*.json")) if p.name != "params.json"]
PARAMS = json.loads((EXAMPLES / "params.json").read_text(encoding="utf-8"))["params"]

_names = st.sampled_from(["event_time", "window_start", "price", "region", "`", "it's", "", "${param:X}",
                          "${secret:KAFKA_PASSWORD}", "a;b", "SELECT", "o", "left", "ARRAY", "STRING", "orders"])
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | _names | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_names, inner, max_size=3), max_leaves=6)


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


def _set(doc, path, value):
    if not path:
        return value
    node = doc
    for seg in path[:-1]:
        node = node[seg]
    node[path[-1]] = value
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_mutated_flow_is_checked_and_rendered_without_an_exception(data) -> None:
    """One value anywhere replaced by anything: issues or SQL, nothing else."""
    doc = copy.deepcopy(data.draw(st.sampled_from(DOCS)))
    paths = list(_paths(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        doc = _set(doc, data.draw(st.sampled_from(paths)), data.draw(_values))
    issues = check(doc)
    try:
        sql = render(doc, params=PARAMS)
    except RenderRefused as exc:
        assert exc.issues
    else:
        assert issues == [] and sql.endswith(";\n")
