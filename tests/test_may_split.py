"""``gitform.may_split``: the text check that lets a flow skip the parse when it provably has no code to
split out (a code field holding text, or a key that is or looks like a ``$sidecar`` reference).
It may answer True for nothing (then the document is parsed), never False for a flow with code."""

from __future__ import annotations

import json
import random
from typing import Any

from reconciler.canonical import Rules, canonical_bytes
from reconciler.gitform import may_split
from reconciler.kinds import declarations


def has_code_or_marker(doc: Any, names: set[str]) -> bool:
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k.endswith("sidecar") or (k in names and isinstance(v, str) and v):
                return True
            if has_code_or_marker(v, names):
                return True
    elif isinstance(doc, list):
        return any(has_code_or_marker(v, names) for v in doc)
    return False


def test_no_flow_with_a_code_field_or_a_sidecar_reference_is_ever_said_to_have_none() -> None:
    decl = declarations()
    names = {f.segments[-1] for d in decl for f in d.code if f.segments}
    keys = [*sorted(names), "x", "sidecar", "$sidecar", "$$sidecar", "name", "funcs", 'a"b', "fünc", "query\\"]
    values: list[Any] = ["", "return msg;", '"', 'sidecar"', '": "', 1, None, [], {"func": ""}, {"func": "x"}]
    rnd = random.Random(15)
    said_none = 0
    for _ in range(5000):
        doc = {"name": "n", "version": "1",
               "nodes": [{rnd.choice(keys): rnd.choice(values) for _ in range(rnd.randint(0, 4))}
                         for _ in range(rnd.randint(0, 4))]}
        data = canonical_bytes(json.dumps(doc).encode(), Rules.of([]))
        if not may_split(data, decl):
            said_none += 1
            assert not has_code_or_marker(json.loads(data), names), data
    assert 500 < said_none < 4500  # both answers were exercised
