"""Event-processing flows rendered to Flink SQL: goldens, determinism, placeholders, refusals, hostile input."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
import sqlfluff
from sqlfluff.api.simple import APIParsingError

from reconciler.eventproc import REDACTED, RenderRefused, render
from reconciler.errors import StallError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "manifests" / "examples" / "event-processing"
GOLDEN = Path(__file__).resolve().parent / "data" / "eventproc"
ENV = json.loads((EXAMPLES / "params.json").read_text(encoding="utf-8"))
PARAMS, SECRETS = ENV["params"], ENV["secrets"]
VALID = sorted(p for p in EXAMPLES.glob("*.json") if p.name != "params.json")


def load(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def refusal(doc, **kw) -> list[str]:
    with pytest.raises(RenderRefused) as info:
        render(doc, params=kw.pop("params", PARAMS), **kw)
    return [str(i) for i in info.value.issues]


def sqlfluff_parses(sql: str) -> bool:
    try:
        sqlfluff.parse(sql, dialect="flink")
    except APIParsingError:
        return False
    return True


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_every_example_renders_to_its_golden_bytes(path: Path) -> None:
    """The rendering equals tests/data/eventproc/<example>.sql byte for byte (regenerate.py rewrites them)."""
    sql = render(json.loads(path.read_text(encoding="utf-8")), params=PARAMS)
    assert sql.encode("utf-8") == (GOLDEN / f"{path.stem}.sql").read_bytes()


def test_the_secured_example_with_secrets_renders_to_its_golden_bytes() -> None:
    """With secrets, their values are in the SQL, escaped for JAAS and for the SQL literal."""
    sql = render(load("large-payments-secured"), params=PARAMS, secrets=SECRETS)
    assert sql.encode("utf-8") == (GOLDEN / "large-payments-secured.with-secrets.sql").read_bytes()


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_sqlfluff_parses_every_rendered_example(path: Path) -> None:
    """sqlfluff's flink dialect finds no unparsable section in any rendering."""
    assert sqlfluff_parses(render(json.loads(path.read_text(encoding="utf-8")), params=PARAMS, secrets=SECRETS))


def test_sqlfluff_does_find_a_broken_script() -> None:
    """The syntax check is not vacuous: an unclosed column list is refused."""
    assert not sqlfluff_parses("CREATE TABLE `t` (\n  `a` STRING\n WITH ('connector' = 'kafka');\n")


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_rendering_ignores_the_order_of_nodes_and_edges(path: Path) -> None:
    """Shuffled nodes and edges render to the same bytes."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    shuffled = copy.deepcopy(doc)
    rng = random.Random(path.stem)
    rng.shuffle(shuffled["nodes"])
    rng.shuffle(shuffled["edges"])
    assert render(shuffled, params=PARAMS) == render(doc, params=PARAMS)


def test_rendering_twice_gives_the_same_bytes() -> None:
    """The output is a function of the input: no clock, no randomness."""
    doc = load("orders-with-shipments")
    assert render(doc, params=PARAMS) == render(copy.deepcopy(doc), params=PARAMS)


def test_an_export_date_appears_in_the_header_only_when_given() -> None:
    """Without export_date there is no date; with it, one header line."""
    doc = load("high-value-orders")
    assert "Exported" not in render(doc, params=PARAMS)
    assert "\n-- Exported: 2026-12-01\n" in render(doc, params=PARAMS, export_date="2026-12-01")


def test_the_header_names_flow_version_kind_and_id() -> None:
    """EP's export starts with a comment naming the flow; so does ours."""
    head = render(load("revenue-per-hour"), params=PARAMS).split("\n\n")[0]
    assert head.splitlines()[:4] == ["-- Flow: revenue-per-hour", "-- Version: 1", "-- Kind: event-processing",
                                     "-- Id: revenue-per-hour@1"]


def test_secrets_are_redacted_without_secrets() -> None:
    """Without secrets every secret is <redacted> and no secret value appears."""
    sql = render(load("large-payments-secured"), params=PARAMS)
    assert f'password="{REDACTED}";' in sql and f"'properties.ssl.truststore.password' = '{REDACTED}'" in sql
    assert all(value not in sql for value in SECRETS.values())


def test_secret_values_are_escaped_inside_jaas_and_the_literal() -> None:
    """A password holding a double quote, ';' and a single quote stays inside its JAAS value."""
    sql = render(load("large-payments-secured"), params=PARAMS, secrets=SECRETS)
    assert 'password="s3cr\\"et;pa\'\'ss";' in sql


def test_a_missing_secret_is_refused_when_secrets_are_given() -> None:
    """Secrets given but one missing: an error naming the pointer, never a silent redaction."""
    found = refusal(load("large-payments-secured"), secrets={"TRUSTSTORE_PASSWORD": "x"})
    assert found[0] == ("/nodes/0/config/security/sasl/password: secret 'KAFKA_PASSWORD' is not in the environment's "
                        "secret store [node 'payments' 'Payments (secured)']")


def test_an_unknown_parameter_is_refused() -> None:
    """A ${param:...} the environment does not define is an error with its pointer."""
    assert refusal(load("high-value-orders"), params={}) == [
        "/nodes/0/config/bootstrap_servers: unknown parameter 'KAFKA_BOOTSTRAP': add it to the environment's params "
        "[node 'orders' 'Orders']",
        "/nodes/2/config/bootstrap_servers: unknown parameter 'KAFKA_BOOTSTRAP': add it to the environment's params "
        "[node 'out' 'High value orders']"]


def test_a_parameter_value_is_escaped_in_a_literal() -> None:
    """A parameter holding a quote cannot end the option's string literal."""
    doc = load("high-value-orders")
    doc["nodes"][0]["config"]["topic"] = "${param:TOPIC}"
    sql = render(doc, params={**PARAMS, "TOPIC": "it's; DROP"})
    assert "  'topic' = 'it''s; DROP',\n" in sql


def test_a_parameter_that_breaks_an_expression_is_refused() -> None:
    """Parameters are text in expressions, so the substituted flow is checked again."""
    doc = load("large-payments-secured")
    found = refusal(doc, params={**PARAMS, "MIN_PAYMENT": "0; DROP TABLE x"})
    assert found == ["/nodes/1/config/expression: ';' is not allowed in an expression (it would end the statement) "
                     "[node 'large' 'Large payments']"]


def test_a_flow_that_fails_the_rules_is_refused_with_its_issues() -> None:
    """render never writes SQL for a flow check rejects."""
    doc = load("high-value-orders")
    doc["edges"].append({"from": "out", "to": "big"})
    assert any("a destination ends the flow" in m for m in refusal(doc))


def test_a_refusal_is_a_stall_error() -> None:
    """The reconcile loop treats a refused render as needing a person (a new commit)."""
    doc = load("high-value-orders")
    doc["nodes"][1]["config"]["expression"] = "prize > 1"
    with pytest.raises(StallError, match="field 'prize' is not among the fields reaching this node"):
        render(doc, params=PARAMS)


def test_a_deduplicate_node_is_refused_with_the_reason() -> None:
    """Deduplication within a window has no exact Flink SQL form, so the renderer refuses it."""
    doc = json.loads((EXAMPLES / "invalid" / "deduplicate-refused.json").read_text(encoding="utf-8"))
    [msg] = refusal(doc)
    assert msg.startswith("/nodes/1/type: a deduplicate node is not rendered to Flink SQL") and "'dedup'" in msg


def test_a_detect_patterns_node_is_refused_with_the_reason() -> None:
    """MATCH_RECOGNIZE is not rendered, so a detect-patterns node is refused."""
    doc = json.loads((EXAMPLES / "invalid" / "detect-patterns-refused.json").read_text(encoding="utf-8"))
    [msg] = refusal(doc)
    assert msg.startswith("/nodes/1/type: a detect-patterns node is not rendered to Flink SQL")


def test_an_aggregate_without_a_window_into_an_append_destination_is_refused() -> None:
    """Updating rows need upsert-kafka: the refusal says so and how to fix it."""
    doc = load("customer-running-totals")
    del doc["nodes"][3]["config"]["mode"], doc["nodes"][3]["config"]["key_fields"]
    [msg] = refusal(doc)
    assert msg.startswith("/nodes/3/config/mode: this destination appends (connector 'kafka'), but the rows from 'vip'")
    assert "doesn't support consuming update changes" in msg and '"mode": "upsert"' in msg


def test_an_aggregate_without_a_window_renders_to_upsert_kafka_with_its_key() -> None:
    """The upsert destination gets the group-by fields as its primary key."""
    sql = render(load("customer-running-totals"), params=PARAMS)
    assert "  PRIMARY KEY (`customer_id`) NOT ENFORCED\n) WITH (\n  'connector' = 'upsert-kafka'," in sql
    assert "GROUP BY `customer_id`;" in sql


def test_an_upsert_key_other_than_the_group_by_is_an_issue() -> None:
    """Rows keyed by customer cannot be upserted by order."""
    doc = load("customer-running-totals")
    doc["nodes"][3]["config"]["key_fields"] = ["orders"]
    assert refusal(doc) == ["/nodes/3/config/key_fields: the rows arriving here are keyed by customer_id; key_fields "
                            "must be those fields [node 'out' 'Customer totals']"]


def test_windows_use_table_valued_functions() -> None:
    """Tumbling and hopping windows are TUMBLE and HOP TVFs over the event time; HOP takes the slide first."""
    assert "TUMBLE(TABLE `Valid orders`, DESCRIPTOR(`event_time`), INTERVAL '1' HOUR)" in render(
        load("revenue-per-hour"), params=PARAMS)
    assert "HOP(TABLE `Page clicks`, DESCRIPTOR(`event_time`), INTERVAL '10' MINUTE, INTERVAL '120' MINUTE(3))" in render(
        load("clicks-sliding-window"), params=PARAMS)


def test_hostile_node_names_are_quoted_with_backticks_doubled() -> None:
    """Names with backticks, quotes, spaces and unicode are one identifier each."""
    doc = load("high-value-orders")
    doc["nodes"][1]["name"] = "it's a `view`; -- \"x\" 🔥"
    sql = render(doc, params=PARAMS)
    assert "CREATE TEMPORARY VIEW `it's a ``view``; -- \"x\" 🔥` AS\n" in sql
    assert "FROM `it's a ``view``; -- \"x\" 🔥`;\n" in sql
    assert sqlfluff_parses(sql)


def test_a_version_with_a_line_break_cannot_escape_the_header_comment() -> None:
    """Control characters in header values are escaped, so no statement hides in a comment line."""
    doc = load("high-value-orders")
    doc["version"] = "1\nDROP TABLE `Orders`;"
    sql = render(doc, params=PARAMS)
    assert "\nDROP TABLE" not in sql and "-- Version: 1\\u000aDROP TABLE `Orders`;\n" in sql


def test_a_thousand_node_flow_renders_in_bounded_time() -> None:
    """A chain of 998 filters renders, one view each, in topological order."""
    doc = load("high-value-orders")
    src, filt, dest = doc["nodes"]
    nodes = [src] + [{**copy.deepcopy(filt), "id": f"f{i:04d}", "name": f"Filter {i}"} for i in range(998)] + [dest]
    ids = [n["id"] for n in nodes]
    doc["nodes"], doc["edges"] = nodes[::-1], [{"from": a, "to": b} for a, b in zip(ids, ids[1:])]
    sql = render(doc, params=PARAMS)
    assert sql.count("CREATE TEMPORARY VIEW") == 998
    assert sql.index("`Filter 0` AS") < sql.index("`Filter 1` AS") < sql.index("`Filter 997` AS")


def test_a_custom_querys_columns_are_cast_to_their_declared_types() -> None:
    """The declared types are what the destination table gets, so they are enforced; event_time stays bare."""
    sql = render(load("fraud-score-custom-sql"), params=PARAMS)
    assert "  CAST(`score` AS INT) AS `score`,\n  `event_time`\nFROM (\nSELECT\n" in sql
