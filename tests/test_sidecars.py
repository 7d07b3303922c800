"""The split form of a flow (pure): sidecar names, the trailing-newline rule, split and join, and the
problems join reports, each naming the file. No git here: tests/test_sidecars_git.py has the store."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.canonical import Rules, canonicalize, parse_json
from reconciler.codefields import (CodeField, Declared, InvalidSidecarName, code_in, layout_only, parse_sidecar_name,
                                   sidecar_name)
from reconciler.drivers.node_red.code import NODE_RED
from reconciler.kinds import EVENT_PROCESSING_FIELDS, declarations
from reconciler.sidecars import StoredFlow, decode_text, encode_text, join, read_stored, split
from reconciler.flows import FlowKey, Identity

WHERE = "env/x:flows/orders/1.json"


def node_red(*nodes: dict, info: str = "") -> dict:
    return {"name": "orders", "version": "1", "tab": {"id": "t1", "type": "tab", "info": info}, "nodes": list(nodes)}


def fn(ident: str, code: str, **extra) -> dict:
    return {"id": ident, "type": "function", "func": code, "initialize": "", "finalize": "", "x": 100, "y": 40,
            "wires": [[]], **extra}


def round_trip(doc: dict, declared=None) -> tuple[StoredFlow, dict]:
    stored = split(copy.deepcopy(doc), Rules(), declarations() if declared is None else declared)
    back, _, problems = join(parse_json(stored.json), stored, where=WHERE)
    assert problems == []
    return stored, back


# -- the trailing-newline rule --------------------------------------------------------------------


@pytest.mark.parametrize("text", ["return msg;", "return msg;\n", "a\n\n", "\n", "x\r\n", "x\r", "\r\n\r\n",
                                  "line 1\r\nline 2", "tab\there", "ünïcødé ✓ 🚀", " trailing space "])
def test_a_sidecar_holds_the_text_and_one_newline_and_gives_it_back_byte_for_byte(text: str) -> None:
    """file = text + "\\n"; reading drops exactly that one newline, whatever the text ends with."""
    stored, back = round_trip(node_red(fn("fn1", text)))
    assert stored.sidecars["fn1.func.js"] == text.encode() + b"\n"
    assert back["nodes"][0]["func"] == text


def test_a_sidecar_saved_without_its_trailing_newline_is_read_as_it_is() -> None:
    """An editor that strips the last newline changes nothing: the text is the file."""
    assert decode_text(b"return msg;") == "return msg;"
    assert decode_text(b"return msg;\n") == "return msg;"
    assert decode_text(b"return msg;\n\n") == "return msg;\n"


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1))
def test_any_text_round_trips_exactly_through_its_sidecar(text: str) -> None:
    assert decode_text(encode_text(text)) == text
    _, back = round_trip(node_red(fn("fn1", text)))
    assert back["nodes"][0]["func"] == text


# -- split and join --------------------------------------------------------------------------------


def test_a_node_red_flow_keeps_its_code_in_files_and_references_in_its_json() -> None:
    doc = node_red(fn("fn1", "return msg;", initialize="let n = 0;"),
                   {"id": "tp1", "type": "template", "format": "html", "template": "<p>{{payload}}</p>", "wires": [[]]},
                   {"id": "c1", "type": "comment", "info": "# Why\nbecause"}, info="The orders tab")
    stored, back = round_trip(doc)
    assert sorted(stored.sidecars) == ["c1.info.md", "fn1.func.js", "fn1.initialize.js", "t1.info.md", "tp1.template.html"]
    refs = parse_json(stored.json)
    assert refs["nodes"][0]["func"] == {"$sidecar": "fn1.func.js"} and refs["nodes"][0]["finalize"] == ""
    assert canonicalize(back) == canonicalize(copy.deepcopy(doc))


def test_a_template_gets_the_extension_of_its_format() -> None:
    formats = {"handlebars": "mustache", "json": "json", "javascript": "js", "markdown": "md", "yaml": "yaml",
               "text": "txt", "made-up": "txt"}
    nodes = [{"id": f"t{i}", "type": "template", "format": f, "template": "x"} for i, f in enumerate(formats)]
    stored, _ = round_trip(node_red(*nodes))
    assert sorted(stored.sidecars) == sorted(f"t{i}.template.{ext}" for i, ext in enumerate(formats.values()))


def test_only_nodes_of_the_declared_type_are_split() -> None:
    """A `func` on a node that is not a function node is not code (a contrib node's own property)."""
    stored, _ = round_trip(node_red({"id": "n1", "type": "my-node", "func": "not code"}))
    assert stored.sidecars == {} and b'"not code"' in stored.json


def test_an_event_processing_sql_node_keeps_its_query_as_a_sql_file() -> None:
    doc = {"name": "fraud", "version": "1", "kind": "event-processing", "nodes": [
        {"id": "score", "type": "sql", "config": {"query": "SELECT 1\nFROM input"}},
        {"id": "big", "type": "filter", "config": {"expression": "price > 5", "query": "not sql: not a sql node"}}]}
    stored, back = round_trip(doc, (EVENT_PROCESSING_FIELDS,))
    assert stored.sidecars == {"score.query.sql": b"SELECT 1\nFROM input\n"}
    assert back == doc


def test_an_environment_declares_its_own_code_fields_by_pointer() -> None:
    doc = {"name": "etl", "version": "1", "steps": [{"id": "load", "script": "print(1)"}, {"script": "print(2)"}]}
    stored, back = round_trip(doc, (Declared(code=(CodeField("/steps/*/script", "py"),)),))
    assert sorted(stored.sidecars) == ["load.script.py", "steps.1.script.py"]  # no id: the path names it
    assert back == doc


def test_empty_text_and_text_with_nul_stay_in_the_json() -> None:
    stored, back = round_trip(node_red(fn("a", ""), fn("b", "bin\x00ary")))
    assert stored.sidecars == {}
    assert back["nodes"][1]["func"] == "bin\x00ary"


def test_objects_that_look_like_references_are_escaped_and_given_back() -> None:
    """A document holding {"$sidecar": …} of its own is never misread as a reference."""
    doc = node_red(fn("fn1", "return 1;"), {"id": "x", "type": "change", "a": {"$sidecar": "fn1.func.js"},
                                            "b": {"$$sidecar": 1}, "c": {"$sidecar": "y", "other": 2}})
    stored, back = round_trip(doc)
    refs = parse_json(stored.json)
    assert refs["nodes"][1]["a"] == {"$$sidecar": "fn1.func.js"} and refs["nodes"][1]["b"] == {"$$$sidecar": 1}
    assert back == doc
    # Even without any code to split, the JSON escapes them:
    alone = split({"name": "n", "version": "1", "a": {"$sidecar": "z"}}, Rules(), ())
    assert alone.sidecars == {} and b"$$sidecar" in alone.json


def test_without_declarations_a_flow_is_one_canonical_json_file() -> None:
    doc = node_red(fn("fn1", "return msg;"))
    stored = split(copy.deepcopy(doc), Rules(), ())
    assert stored == StoredFlow(canonicalize(copy.deepcopy(doc)))


def test_split_applies_the_environments_rules_first() -> None:
    doc = node_red(fn("b", "2"), fn("a", "1"))
    doc["exportedAt"] = "now"
    stored = split(doc, Rules.of(["/exportedAt"], {"/nodes": "/id"}), declarations())
    refs = parse_json(stored.json)
    assert "exportedAt" not in refs and [n["id"] for n in refs["nodes"]] == ["a", "b"]


# -- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ident", ["fn1", "f6f2187d.f17ca8", "Fn1", "../../etc/passwd", "a/b", "a\\b", "nul\x00",
                                   ".hidden", "..", "CON", "ünï", "a b", "~tilde", "%41"])
def test_a_sidecar_name_is_one_safe_segment_that_decodes_back(ident: str) -> None:
    name = sidecar_name(ident, "func", "js")
    assert "/" not in name and "\\" not in name and "\x00" not in name and not name.startswith(".")
    assert name == name.lower()
    assert parse_sidecar_name(name) == (ident, "func", "js")


def test_ids_differing_only_in_case_get_names_differing_in_more_than_case() -> None:
    """No two sidecars of a flow collide on a case-insensitive checkout."""
    stored, _ = round_trip(node_red(fn("fn", "1"), fn("FN", "2"), fn("Fn", "3")))
    names = list(stored.sidecars)
    assert len({n.lower() for n in names}) == 3


def test_an_id_too_long_for_a_file_name_keeps_its_code_in_the_json() -> None:
    stored, back = round_trip(node_red(fn("x" * 300, "return msg;"), fn("ok", "return 1;")))
    assert list(stored.sidecars) == ["ok.func.js"]
    assert back["nodes"][0]["func"] == "return msg;"
    with pytest.raises(InvalidSidecarName):
        sidecar_name("x" * 300, "func", "js")


def test_fields_whose_names_would_clash_stay_in_the_json() -> None:
    doc = {"name": "n", "version": "1", "steps": [{"id": "a", "script": "1", "config": {"script": "2"}}]}
    declared = (Declared(code=(CodeField("/steps/*/script", "py"), CodeField("/steps/*/config/script", "py"))),)
    stored, back = round_trip(doc, declared)
    assert stored.sidecars == {} and back == doc


@pytest.mark.parametrize("name", ["fn1.func", "a.B.js", "~^.x.js", "~%zz.func.js", "x.func.JS"])
def test_a_name_that_is_not_canonical_is_refused(name: str) -> None:
    with pytest.raises(InvalidSidecarName):
        parse_sidecar_name(name)


# -- what join refuses, naming the file --------------------------------------------------------------


def stored_with(refs: dict, files: dict[str, bytes], bad: dict[str, str] | None = None) -> StoredFlow:
    doc = node_red({"id": "fn1", "type": "function", **refs})
    return StoredFlow(canonicalize(doc), files, bad or {})


def problems_of(stored: StoredFlow) -> list[str]:
    _, _, problems = join(parse_json(stored.json), stored, where=WHERE)
    return [str(p) for p in problems]


def test_a_reference_that_leaves_the_flow_folder_is_refused_naming_the_json_and_pointer() -> None:
    for ref in ("../2/fn1.func.js", "/etc/passwd", "..", "sub/x.js", "a\\b"):
        (problem,) = problems_of(stored_with({"func": {"$sidecar": ref}}, {}))
        assert problem.startswith(f"{WHERE}:/nodes/0/func: the sidecar reference") and "leaves the flow's folder" in problem


def test_a_reference_that_is_not_a_file_name_is_refused() -> None:
    for ref in (5, "", None, ".hidden.js", "nul\x00.js", "x" * 300):
        (problem,) = problems_of(stored_with({"func": {"$sidecar": ref}}, {}))
        assert f"{WHERE}:/nodes/0/func" in problem


def test_a_missing_sidecar_is_refused_naming_the_file() -> None:
    (problem,) = problems_of(stored_with({"func": {"$sidecar": "fn1.func.js"}}, {}))
    assert problem.startswith("env/x:flows/orders/1/fn1.func.js: missing: flows/orders/1.json refers to it at /nodes/0/func")


def test_a_sidecar_no_field_refers_to_is_refused_naming_the_file() -> None:
    (problem,) = problems_of(stored_with({"func": "inline"}, {"old.func.js": b"x\n"}))
    assert problem.startswith("env/x:flows/orders/1/old.func.js: no field of flows/orders/1.json refers to this sidecar")


def test_a_sidecar_that_is_a_symlink_a_folder_or_a_submodule_is_refused() -> None:
    problems = problems_of(stored_with({"func": {"$sidecar": "fn1.func.js"}}, {},
                                       {"fn1.func.js": "a symlink", "sub": "a folder", "mod": "a submodule"}))
    assert any(p.startswith("env/x:flows/orders/1/fn1.func.js: a symlink, not a file") for p in problems)
    assert any(p.startswith("env/x:flows/orders/1/sub: a folder") for p in problems)
    assert any(p.startswith("env/x:flows/orders/1/mod: a submodule") for p in problems)


def test_a_sidecar_that_is_not_utf8_is_refused_naming_the_file() -> None:
    (problem,) = problems_of(stored_with({"func": {"$sidecar": "fn1.func.js"}}, {"fn1.func.js": b"\xff\xfe bad\n"}))
    assert problem.startswith("env/x:flows/orders/1/fn1.func.js: not UTF-8 text")


def test_sidecar_names_differing_only_in_case_are_refused() -> None:
    stored = stored_with({"func": {"$sidecar": "a.func.js"}, "initialize": {"$sidecar": "A.func.js"}},
                         {"a.func.js": b"1\n", "A.func.js": b"2\n"})
    assert any("differs only in case" in p for p in problems_of(stored))


def test_a_reference_spelled_with_json_escapes_is_still_a_reference() -> None:
    raw = b'{"name": "orders", "version": "1", "tab": {"id": "t", "type": "tab"}, "nodes": [' \
          b'{"id": "fn1", "type": "function", "func": {"\\u0024sidecar": "fn1.func.js"}}]}'
    (problem,) = problems_of(StoredFlow(raw))
    assert "missing" in problem


def test_read_stored_names_the_sidecar_of_a_problem_in_code() -> None:
    """An unknown parameter inside a function body: the error points at the .js file."""
    from reconciler.templating import Templating

    stored, _ = round_trip(node_red(fn("fn1", "return '${param:NOPE}';")))
    got = read_stored(stored, Identity(), Rules(), where=WHERE, expect=FlowKey("orders", "1"),
                      render=Templating(params={"A": "b"}).render)
    assert got.where == "env/x:flows/orders/1/fn1.func.js" and got.pointer == "/nodes/0/func"
    assert "unknown parameter 'NOPE'" in got.message


# -- layout ---------------------------------------------------------------------------------------------


def test_node_red_layout_is_x_y_w_h_of_nodes_and_subflow_ports() -> None:
    a = node_red(fn("fn1", "1"), {"id": "g", "type": "group", "w": 100, "h": 50, "x": 1, "y": 1})
    a["subflows"] = [{"id": "sf", "type": "subflow", "in": [{"x": 1, "y": 2, "wires": []}], "status": {"x": 3, "y": 4}}]
    b = json.loads(json.dumps(a))
    b["nodes"][0].update(x=999, y=1)
    b["nodes"][1].update(w=1, h=2)
    b["subflows"][0]["in"][0]["x"] = 50
    b["subflows"][0]["status"]["y"] = 50
    assert layout_only(copy.deepcopy(a), copy.deepcopy(b), NODE_RED.layout)
    b["nodes"][0]["func"] = "2"
    assert not layout_only(a, b, NODE_RED.layout)


def test_code_in_follows_every_declaration_once() -> None:
    doc = node_red(fn("fn1", "1"))
    found = code_in(doc, (*declarations(), Declared(code=(CodeField("/nodes/*/func", "ts"),))))
    assert [f.file for f in found] == ["fn1.func.js"]  # the kind's declaration comes first


@pytest.mark.parametrize("pointer, files", [
    ("/steps/*/script", ["a.script.py", "steps.1.script.py"]),
    ("/steps/0/script", ["a.script.py"]),
    ("/scripts/1", ["scripts.1.py"]),  # an index as the last segment
    ("/scripts/*", ["scripts.0.py", "scripts.1.py"]),
    ("/scripts/7", []),  # past the end: nothing, no error
    ("/config/*", ["config.query.py"]),
    ("/*/query", ["config.query.py"]),
    ("/missing/*/x", []),
])
def test_code_in_matches_every_pointer_shape(pointer: str, files: list[str]) -> None:
    doc = {"steps": [{"id": "a", "script": "print(1)"}, {"script": "print(2)"}, {"script": ""}],
           "scripts": ["one", "two"], "config": {"query": "SELECT 1", "n": 3}}
    found = code_in(doc, (Declared(code=(CodeField(pointer, "py"),)),))
    assert [f.file for f in found] == files
