"""Rendered event-processing flows checked by Flink 1.20's real planner (reconciler.eventproc.planner).

Every script below is planned in ONE JVM (a session fixture), with the real
Flink jars of the `flink` extra and the stub Kafka connector compiled from
reconciler/eventproc/flink/*.java. Without the extra the tests skip, saying
so; in CI (CI set) a missing extra fails them, because .ci/run installs it
with .ci/install-flink.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from reconciler.eventproc import render
from reconciler.eventproc.planner import FlinkUnavailable, Result, check_scripts, flink_lib, stub_classes

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "manifests" / "examples" / "event-processing"
ENV = json.loads((EXAMPLES / "params.json").read_text(encoding="utf-8"))
PARAMS, SECRETS = ENV["params"], ENV["secrets"]
VALID = sorted(p.stem for p in EXAMPLES.glob("*.json") if p.name != "params.json")

pytestmark = pytest.mark.slow


def load(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def _require_flink() -> None:
    try:
        flink_lib()
        for tool in ("java", "javac"):
            if shutil.which(tool) is None:
                raise FlinkUnavailable(f"{tool} is not on PATH")
    except FlinkUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the planner tests must run in CI (bash .ci/install-flink): {exc}")
        pytest.skip(f"the flink extra is not installed ({exc}); bash .ci/install-flink installs it")


def hostile_names() -> dict:
    doc = load("high-value-orders")
    doc["nodes"][0]["name"] = "Orders `raw` it's"
    doc["nodes"][1]["name"] = "it's a `view`; -- \"x\" 🔥"
    doc["nodes"][2]["name"] = "Sortie « spéciale »"
    doc["nodes"][1]["config"]["expression"] = "region <> 'it''s; -- not a comment' AND price > 0"
    return doc


def join_of(kind: str) -> dict:
    doc = load("orders-with-shipments")
    doc["nodes"][2]["config"]["join_type"] = kind
    return doc


def _scripts() -> dict[str, str]:
    scripts = {name: render(load(name), params=PARAMS) for name in VALID}
    scripts["with-secrets"] = render(load("large-payments-secured"), params=PARAMS, secrets=SECRETS)
    scripts["hostile-names"] = render(hostile_names(), params=PARAMS)
    for kind in ("left", "full"):
        scripts[f"join-{kind}"] = render(join_of(kind), params=PARAMS)
    revenue = scripts["revenue-per-hour"]
    scripts["broken-wrong-column"] = revenue.replace("SUM(`price`)", "SUM(`prize`)")
    upsert = scripts["customer-running-totals"]
    scripts["broken-updates-into-kafka"] = (upsert.replace(",\n  PRIMARY KEY (`customer_id`) NOT ENFORCED", "")
                                            .replace("'connector' = 'upsert-kafka'", "'connector' = 'kafka'")
                                            .replace("  'key.format' = 'json',\n  'value.format' = 'json'",
                                                     "  'format' = 'json'"))
    scripts["broken-upsert-without-key"] = upsert.replace(",\n  PRIMARY KEY (`customer_id`) NOT ENFORCED", "")
    scripts["broken-unknown-option"] = revenue.replace("'scan.startup.mode'", "'scan.startup.mod'")
    clicks, join = scripts["clicks-sliding-window"], scripts["orders-with-shipments"]
    scripts["broken-minute-precision"] = clicks.replace("INTERVAL '120' MINUTE(3)", "INTERVAL '120' MINUTE")
    scripts["broken-second-rowtime"] = join.replace("CAST((o.event_time) AS TIMESTAMP(3)) AS `ordered_at`",
                                                    "o.event_time AS `ordered_at`")
    scripts["broken-double-quotes"] = revenue.replace("WHERE (quantity > 0", "WHERE (region = \"EU\" AND quantity > 0")
    return scripts


@pytest.fixture(scope="session")
def planned(tmp_path_factory) -> dict[str, Result]:
    _require_flink()
    scripts = _scripts()
    cache = tmp_path_factory.mktemp("flink-stub")
    started = time.perf_counter()
    results = check_scripts(list(scripts.values()), cache_dir=cache)
    elapsed = time.perf_counter() - started
    print(f"\nplanned {len(scripts)} scripts in one JVM in {elapsed:.1f} s (compiling the stub included)")
    return dict(zip(scripts, results))


@pytest.mark.parametrize("name", VALID)
def test_the_planner_accepts_every_rendered_example(planned, name: str) -> None:
    """Flink plans the example's INSERT after executing its DDL."""
    assert planned[name].ok, str(planned[name])


def test_the_planner_accepts_the_jaas_string_with_quotes_and_semicolons(planned) -> None:
    """The rendered secret (with ", ; and ') stays one option value."""
    assert planned["with-secrets"].ok, str(planned["with-secrets"])


def test_the_planner_accepts_hostile_names_and_literals(planned) -> None:
    """Backticks, quotes, '--', ';' and unicode in names and literals are quoted correctly."""
    assert planned["hostile-names"].ok, str(planned["hostile-names"])


@pytest.mark.parametrize("kind", ["left", "full"])
def test_the_planner_accepts_outer_interval_joins(planned, kind: str) -> None:
    """join_type left and full render to interval joins Flink plans."""
    assert planned[f"join-{kind}"].ok, str(planned[f"join-{kind}"])


def test_the_planner_rejects_a_wrong_column_with_flinks_message(planned) -> None:
    """A column that does not exist fails the view's statement with Flink's own words."""
    result = planned["broken-wrong-column"]
    assert not result.ok
    assert "Column 'prize' not found in any table" in result.error
    assert result.statement == 2 and str(result).startswith("statement 3 (line ")


def test_the_planner_rejects_updates_into_an_append_kafka_sink(planned) -> None:
    """What the renderer refuses, Flink refuses too: the sink cannot consume update changes."""
    result = planned["broken-updates-into-kafka"]
    assert not result.ok
    assert "doesn't support consuming update changes which is produced by node GroupAggregate" in result.error


def test_the_stub_upsert_kafka_requires_a_primary_key(planned) -> None:
    """The stub keeps the real connector's rule and message."""
    result = planned["broken-upsert-without-key"]
    assert not result.ok and "Unable to create a sink for writing table" in result.error
    assert "'upsert-kafka' tables require to define a PRIMARY KEY constraint" in result.cause


def test_the_stub_kafka_refuses_an_unknown_option(planned) -> None:
    """A misspelt option fails as Flink's option validation words it."""
    result = planned["broken-unknown-option"]
    assert not result.ok and "Unsupported options" in result.error + result.cause
    assert "scan.startup.mod" in result.error + result.cause


def test_an_interval_of_three_digits_needs_its_precision(planned) -> None:
    """Why the renderer writes MINUTE(3): without it Flink refuses 120 minutes."""
    result = planned["broken-minute-precision"]
    assert not result.ok and "Interval field value 120 exceeds precision of MINUTE(2) field" in result.cause


def test_a_second_event_time_column_is_refused_at_the_sink(planned) -> None:
    """Why the renderer CASTs a copied event time: Flink allows one rowtime column per sink."""
    result = planned["broken-second-rowtime"]
    assert not result.ok
    assert "The query contains more than one rowtime attribute column [ordered_at, event_time]" in result.error


def test_a_parse_error_is_shown_without_the_list_of_expected_tokens(planned) -> None:
    """Flink's parser message is kept; its hundred-line list of expected tokens is not."""
    result = planned["broken-double-quotes"]
    assert not result.ok and "SQL parse failed. Encountered" in result.error
    assert result.error.endswith("(Flink lists the tokens it expected)") and len(result.error) < 400


def test_the_compiled_stub_is_reused_from_its_cache(planned, tmp_path_factory) -> None:
    """A second call finds the classes compiled for the same sources and Flink version."""
    cache = tmp_path_factory.getbasetemp() / "flink-stub0"
    first = stub_classes(cache)
    started = time.perf_counter()
    assert stub_classes(cache) == first and (first / "COMPLETE").is_file()
    assert time.perf_counter() - started < 1


def test_no_script_plans_to_an_empty_list() -> None:
    """check_scripts of nothing starts no JVM."""
    assert check_scripts([]) == []
