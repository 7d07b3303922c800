"""Event-processing flows: the schema and the graph and field rules (reconciler.eventproc.rules)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest

from reconciler.eventproc import check
from reconciler.eventproc.rules import check_renderable

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "manifests" / "examples" / "event-processing"
INVALID = sorted((EXAMPLES / "invalid").glob("*.json"))
VALID = sorted(p for p in EXAMPLES.glob("*.json") if p.name != "params.json")


def load(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def messages(doc) -> list[str]:
    return [str(i) for i in check(doc)]


def test_there_are_enough_examples() -> None:
    """At least eight valid examples and an invalid one per rule ship with the schema."""
    assert len(VALID) >= 8 and len(INVALID) >= 20


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_every_example_passes_the_rules(path: Path) -> None:
    """A shipped example has no issue, including the render refusals."""
    assert check_renderable(json.loads(path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_every_invalid_example_gives_its_expected_issues(path: Path) -> None:
    """Each invalid example reports exactly the issues in its .expected file."""
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    assert expected, "an invalid example must expect at least one issue"
    assert [str(i) for i in check_renderable(json.loads(path.read_text(encoding="utf-8")))] == expected


def test_an_issue_formats_as_file_pointer_message_and_names_the_node() -> None:
    """The caller's file prefix, the pointer, the message, then the node's id and name."""
    doc = load("high-value-orders")
    doc["nodes"][1]["config"]["expression"] = "prize > 500"
    [issue] = check(doc)
    assert issue.format("flows/orders/1.json") == (
        "flows/orders/1.json:/nodes/1/config/expression: field 'prize' is not among the fields reaching this node "
        "(order_id, customer_id, region, price, quantity, event_time) [node 'big' 'High value EU orders']")
    assert (issue.node_id, issue.node_name, issue.pointer) == ("big", "High value EU orders", "/nodes/1/config/expression")


def test_issues_do_not_depend_on_the_order_of_nodes_and_edges() -> None:
    """Shuffled nodes and edges give the same issues (pointers follow the new positions)."""
    doc = load("orders-with-shipments")
    doc["nodes"][2]["config"]["condition"] = "order_id = s.order_id"
    shuffled = copy.deepcopy(doc)
    shuffled["edges"].reverse()
    assert [i.message for i in check(doc)] == [i.message for i in check(shuffled)]


def test_a_document_that_is_not_an_object_is_an_issue() -> None:
    """A JSON array is reported, not raised."""
    assert messages([1, 2]) == ["a flow must be a JSON object, not list"]


def test_a_wrong_kind_is_a_schema_issue() -> None:
    """Only kind event-processing is this schema."""
    doc = load("high-value-orders")
    doc["kind"] = "node-red"
    assert messages(doc) == ["/kind: 'event-processing' was expected"]


def test_an_unknown_config_key_is_refused() -> None:
    """additionalProperties is false in every config."""
    doc = load("high-value-orders")
    doc["nodes"][1]["config"]["expresion"] = "x"
    assert "/nodes/1/config: Additional properties are not allowed ('expresion' was unexpected) " \
           "[node 'big' 'High value EU orders']" in messages(doc)


def test_an_unsupported_type_lists_the_supported_ones() -> None:
    """A field type outside the schema's list says which types exist."""
    doc = load("high-value-orders")
    doc["nodes"][0]["config"]["fields"][0]["type"] = "VARCHAR"
    [msg] = messages(doc)
    assert msg.startswith("/nodes/0/config/fields/0/type: 'VARCHAR' is not a supported type (STRING, BOOLEAN")


def test_an_event_time_field_of_the_wrong_type_is_an_issue() -> None:
    """Event time from a payload field needs a timestamp or epoch milliseconds."""
    doc = load("orders-with-shipments")
    doc["nodes"][1]["config"]["fields"][3]["type"] = "STRING"
    assert messages(doc) == ["/nodes/1/config/event_time/field: an event time field must be TIMESTAMP(3), "
                             "TIMESTAMP_LTZ(3) or BIGINT (epoch milliseconds); 'shipped_at' is STRING "
                             "[node 'shipments' 'Shipments']"]


def test_a_reserved_field_name_is_an_issue() -> None:
    """A source cannot declare event_time itself."""
    doc = load("high-value-orders")
    doc["nodes"][0]["config"]["fields"][0]["name"] = "event_time"
    assert messages(doc)[0].startswith("/nodes/0/config/fields/0/name: 'event_time' is a reserved field name")


def test_a_join_with_two_left_ports_is_an_issue() -> None:
    """Both edges on one port leave the other side missing."""
    doc = load("orders-with-shipments")
    doc["edges"][1]["port"] = "left"
    assert messages(doc) == [
        "/edges/1/port: join 'join' already has a left input (/edges/0) [node 'join' 'Orders shipped within 2 days']",
        "/nodes/2: this join has no right input: connect an edge with \"port\": \"right\" "
        "[node 'join' 'Orders shipped within 2 days']"]


def test_a_port_on_an_edge_into_a_filter_is_an_issue() -> None:
    """Ports only make sense into a join."""
    doc = load("high-value-orders")
    doc["edges"][0]["port"] = "left"
    assert messages(doc) == ["/edges/0/port: a port only applies to an edge into a join; 'big' is a filter "
                             "[node 'big' 'High value EU orders']"]


def test_an_unknown_join_alias_is_an_issue() -> None:
    """A condition qualified with an alias the join does not have."""
    doc = load("orders-with-shipments")
    doc["nodes"][2]["config"]["condition"] = "o.order_id = x.order_id"
    assert messages(doc) == ["/nodes/2/config/condition: 'x' is not one of this join's aliases (o, s) "
                             "[node 'join' 'Orders shipped within 2 days']"]


def test_a_parameter_in_a_field_name_is_an_issue() -> None:
    """Names and field references must not differ between environments."""
    doc = load("revenue-per-hour")
    doc["nodes"][2]["config"]["group_by"] = ["${param:GROUP}"]
    assert "/nodes/2/config/group_by/0: a parameter cannot stand in 'group_by': only connection settings and " \
           "expressions may differ between environments [node 'hourly' 'Revenue per region per hour']" in messages(doc)


@pytest.mark.parametrize("expression, problem", [
    ("price > 0) OR (1 = 1", "unbalanced ')' at offset 9"),
    ("price > 0; DROP TABLE `Orders`", "';' is not allowed in an expression (it would end the statement)"),
    ("price > 0 -- and the rest", "comments are not allowed in an expression"),
    ("region = 'EU", "unterminated string starting at offset 9"),
    ("region = \"EU\"", "double quotes are not Flink SQL: write 'text' for a string, `name` for a field"),
    ("price > (SELECT 1)", "a sub-query (SELECT) is not allowed in an expression; use a sql node"),
    ("`price > 0", "unterminated quoted name starting at offset 0"),
    ("DOUBLE", "'DOUBLE' is a type name, not a value; a field of that name is written `DOUBLE`"),
    ("region = STRING", "'STRING' is a type name, not a value; a field of that name is written `STRING`"),
    ("DECIMAL(10, 2) > 1", "'DECIMAL' is a type name, not a value; a field of that name is written `DECIMAL`"),
])
def test_an_expression_that_cannot_be_embedded_is_an_issue(expression: str, problem: str) -> None:
    """What could end the statement or escape the parentheses around an expression is refused."""
    doc = load("high-value-orders")
    doc["nodes"][1]["config"]["expression"] = expression
    assert messages(doc) == [f"/nodes/1/config/expression: {problem} [node 'big' 'High value EU orders']"]


def test_type_names_inside_casts_and_literals_are_accepted() -> None:
    """Types after AS or RETURNING, typed literals and constructors are values, not stray type names."""
    doc = load("high-value-orders")
    doc["nodes"][1]["config"]["expression"] = ("CAST(price AS DOUBLE PRECISION) > 1 AND event_time > TIMESTAMP "
                                               "'2026-01-01 00:00:00' AND CARDINALITY(ARRAY[1, 2]) = 2 AND "
                                               "JSON_VALUE(region, '$.a' RETURNING INT) IS NULL")
    assert messages(doc) == []


def test_keywords_functions_and_quoted_names_are_understood_in_expressions() -> None:
    """Keywords and function names are not fields; a backtick-quoted name is."""
    doc = load("high-value-orders")
    doc["nodes"][1]["config"]["expression"] = ("CAST(`price` AS DECIMAL(10, 2)) > 5 AND EXTRACT(HOUR FROM event_time) "
                                               "BETWEEN 8 AND 18 AND UPPER(region) LIKE '%it''s%' AND quantity IS NOT NULL")
    assert messages(doc) == []


@pytest.mark.parametrize("query, problem", [
    ("SELECT * FROM input; DROP TABLE x", "';' is not allowed: the query must be a single SELECT"),
    ("SELECT * FROM input) UNION (SELECT * FROM input", "unbalanced ')' at offset 19"),
    ("SELECT * FROM input /* unfinished", "unterminated comment starting at offset 20"),
    ("INSERT INTO x SELECT 1", "the query must start with SELECT or WITH"),
])
def test_a_custom_query_that_cannot_be_wrapped_is_an_issue(query: str, problem: str) -> None:
    """A custom SQL node's query must stay one SELECT inside its parentheses."""
    doc = load("fraud-score-custom-sql")
    doc["nodes"][1]["config"]["query"] = query
    assert messages(doc) == [f"/nodes/1/config/query: {problem} [node 'score' 'Fraud score']"]


@pytest.mark.parametrize("config", ["price > 500", 42, None, ["expression"], True])
def test_a_config_that_is_not_an_object_is_an_issue(config) -> None:
    """Any non-object config is a schema issue at its pointer, never an exception."""
    doc = load("high-value-orders")
    doc["nodes"][1]["config"] = config
    found = messages(doc)
    assert found and all(m.startswith("/nodes/1/config: ") for m in found)


@pytest.mark.parametrize("mangle", [
    lambda d: d.__setitem__("nodes", "everything"),
    lambda d: d.__setitem__("edges", {"from": "a"}),
    lambda d: d["nodes"].append("a node"),
    lambda d: d["nodes"].append({"id": 7, "type": "filter"}),
    lambda d: d["edges"].append({"from": ["orders"], "to": None}),
    lambda d: d["nodes"][1].__setitem__("type", "teleport"),
    lambda d: d.__setitem__("nodes", []),
], ids=["nodes-string", "edges-object", "node-string", "node-int-id", "edge-bad-ends", "unknown-type", "no-nodes"])
def test_malformed_structure_is_reported_not_raised(mangle) -> None:
    """Whatever the document's shape, check returns issues."""
    doc = load("high-value-orders")
    mangle(doc)
    assert check(doc)


def test_a_self_loop_is_a_cycle() -> None:
    """An edge from a node to itself is reported at the edge."""
    doc = load("high-value-orders")
    doc["edges"].append({"from": "big", "to": "big"})
    assert "/edges/2: an edge from node 'big' to itself is a cycle [node 'big' 'High value EU orders']" in messages(doc)


def test_a_duplicate_edge_is_an_issue() -> None:
    """The same edge twice is named with the first one's pointer."""
    doc = load("high-value-orders")
    doc["edges"].append(dict(doc["edges"][0]))
    assert messages(doc) == ["/edges/2: the same edge as /edges/0"]


def chain(n: int) -> dict:
    doc = load("high-value-orders")
    src, filt, dest = doc["nodes"]
    nodes = [src] + [{**copy.deepcopy(filt), "id": f"f{i}", "name": f"Filter {i}"} for i in range(n - 2)] + [dest]
    ids = [node["id"] for node in nodes]
    doc["nodes"], doc["edges"] = nodes, [{"from": a, "to": b} for a, b in zip(ids, ids[1:])]
    return doc


def test_a_thousand_node_chain_is_checked_in_bounded_time() -> None:
    """1,000 nodes pass in well under the bound (no recursion limit, no quadratic walk)."""
    doc = chain(1000)
    started = time.perf_counter()
    assert check(doc) == []
    assert time.perf_counter() - started < 20


def test_a_thousand_node_cycle_is_one_issue() -> None:
    """A long loop is reported once, naming the edge that starts it, without recursion."""
    doc = chain(1000)
    doc["edges"].append({"from": "f997", "to": "f0"})
    cycles = [m for m in messages(doc) if "form a cycle" in m]
    assert len(cycles) == 1
    assert cycles[0].startswith("/edges/1: nodes 'f0', 'f1', 'f10', ")
    assert " and 988 more form a cycle" in cycles[0]


def test_a_thousand_unconnected_sources_are_each_named() -> None:
    """Every source that does not reach the destination is its own issue."""
    doc = load("high-value-orders")
    doc["nodes"] += [{**copy.deepcopy(doc["nodes"][0]), "id": f"s{i}", "name": f"Source {i}"} for i in range(1000)]
    found = [m for m in messages(doc) if "is not connected to the destination" in m]
    assert len(found) == 1000


def test_the_package_schema_is_the_published_one() -> None:
    """reconciler/eventproc carries manifests/schemas/flow.event-processing.schema.json itself, not a copy that drifts."""
    from reconciler.eventproc import SCHEMA_FILE

    published = ROOT / "manifests" / "schemas" / "flow.event-processing.schema.json"
    assert SCHEMA_FILE.read_bytes() == published.read_bytes()


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    """The published schema declares draft 2020-12 and passes its meta-schema."""
    import jsonschema

    from reconciler.eventproc.schema import load_schema

    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
