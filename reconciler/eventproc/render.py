"""Event-processing flows rendered to Flink SQL, shaped like EP's SQL export (pure).

:func:`render` takes a flow as it is in git (with ``${param:...}`` and
``${secret:...}`` placeholders), the environment's parameters and, optionally,
its secrets, and returns one Flink 1.20 SQL script:

- a header comment (flow name, version, kind, id; an export date only when
  one is passed, so the output is a function of the input);
- per source a ``CREATE TABLE`` (connector ``kafka``) with ``event_time`` and
  its ``WATERMARK``; per processing node, in topological order, a
  ``CREATE TEMPORARY VIEW`` named after the node; the destination's
  ``CREATE TABLE`` (``kafka``, or ``upsert-kafka`` with a primary key); and
  ``INSERT INTO`` the destination from the last view.

Same input, same bytes: statements follow :attr:`.graph.Graph.order`, never the
order of ``nodes``/``edges`` in the document. Without ``secrets`` every secret
is written as ``<redacted>`` (as EP's export does); an unknown parameter, or a
secret missing from ``secrets``, is an error. A flow that fails
:func:`.rules.check`, or that holds something :func:`.rules.refusals` names, is
refused with :class:`RenderRefused`: this module never writes SQL it cannot stand by.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from reconciler.canonical import parse_pointer
from reconciler.errors import StallError
from reconciler.eventproc.fields import Resolve, bare_reference, join_scope, scope_of
from reconciler.eventproc.graph import Graph
from reconciler.eventproc.model import EVENT_TIME, Field, Issue, Node, Stream
from reconciler.eventproc.rules import Analysis, analyze, refusals
from reconciler.eventproc.sqltext import column_type, comment_text, ident, interval, jaas_value, literal
from reconciler.templating import Templating

__all__ = ["RenderRefused", "REDACTED", "render", "substitute"]

REDACTED = "<redacted>"
_LOGIN = {"PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
          "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
          "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule"}


class RenderRefused(StallError):
    """The flow cannot be rendered as it is; ``issues`` says where and why (a person must change the flow)."""

    def __init__(self, issues: list[Issue]):
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class _Redacted(Mapping[str, str]):
    """Every secret name maps to ``<redacted>``."""

    def __getitem__(self, key: str) -> str:
        return REDACTED

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def substitute(doc: Any, *, params: Mapping[str, str], secrets: Mapping[str, str] | None = None) -> tuple[Any, list[Issue]]:
    """The document with placeholders replaced (secrets redacted without ``secrets``), and the problems."""
    templating = Templating(params=params, secrets=_Redacted() if secrets is None else secrets,
                            keep=("/name", "/version"))
    out, problems = templating.render(doc)
    issues = []
    for pointer, message in problems:
        node_id = node_name = ""
        segs = parse_pointer(pointer)
        if len(segs) >= 2 and segs[0] == "nodes":
            node = doc["nodes"][int(segs[1])]
            node_id, node_name = str(node.get("id", "")), str(node.get("name", ""))
        issues.append(Issue(pointer, message, node_id, node_name))
    return out, issues


def render(doc: Any, *, params: Mapping[str, str], secrets: Mapping[str, str] | None = None,
           export_date: str | None = None) -> str:
    """The Flink SQL script of a flow; raises :class:`RenderRefused` with every issue found."""
    first = analyze(doc)
    if first.issues:
        raise RenderRefused(list(first.issues))
    resolved, problems = substitute(doc, params=params, secrets=secrets)
    if problems:
        raise RenderRefused(problems)
    analysis = analyze(resolved)  # parameters are text in expressions: the result must still pass
    if analysis.issues:
        raise RenderRefused(list(analysis.issues))
    refused = refusals(analysis)
    if refused:
        raise RenderRefused(refused)
    return _script(resolved, analysis, export_date)


def _script(doc: dict, analysis: Analysis, export_date: str | None) -> str:
    graph = analysis.graph
    name, version = str(doc["name"]), _version(doc["version"])
    header = [f"-- Flow: {comment_text(name)}", f"-- Version: {comment_text(version)}",
              "-- Kind: event-processing", f"-- Id: {comment_text(name)}@{comment_text(version)}"]
    if export_date is not None:
        header.append(f"-- Exported: {comment_text(export_date)}")
    header.append("-- Rendered by flow-reconciler from the flow's JSON; edit the flow, not this file.")
    parts = ["\n".join(header)]
    for node_id in graph.order:
        node = graph.nodes[node_id]
        if node.type == "source":
            parts.append(_source(node, analysis.streams[node_id]))
        elif node.type == "destination":
            up = graph.input_of(node_id)
            parts.append(_destination(node, analysis.streams[node_id]))
            parts.append(_insert(node, up, analysis.streams[node_id]))
        else:
            parts.append(f"CREATE TEMPORARY VIEW {ident(node.name)} AS\n" + _view(node, graph, analysis) + ";")
    return "\n\n".join(parts) + "\n"


def _version(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _with(options: list[tuple[str, str]]) -> str:
    return "WITH (\n" + ",\n".join(f"  {literal(k)} = {literal(v)}" for k, v in options) + "\n)"


def _security(cfg: dict) -> list[tuple[str, str]]:
    sec = cfg.get("security")
    if not sec:
        return []
    out = [("properties.security.protocol", sec["protocol"])]
    if "sasl" in sec:
        sasl = sec["sasl"]
        out.append(("properties.sasl.mechanism", sasl["mechanism"]))
        jaas = (f"{_LOGIN[sasl['mechanism']]} required username={jaas_value(sasl['username'])} "
                f"password={jaas_value(sasl['password'])};")
        out.append(("properties.sasl.jaas.config", jaas))
    ssl = sec.get("ssl", {})
    for key, prop in (("truststore_location", "location"), ("truststore_password", "password"),
                      ("truststore_type", "type")):
        if key in ssl:
            out.append((f"properties.ssl.truststore.{prop}", ssl[key]))
    if ssl.get("verify_hostname") is False:
        out.append(("properties.ssl.endpoint.identification.algorithm", ""))
    return out


def _source(node: Node, stream: Stream) -> str:
    cfg = node.config
    cols = [f"  {ident(f.name)} {column_type(f)}" for f in stream.fields if f.name != EVENT_TIME]
    et, time = cfg["event_time"], ident(EVENT_TIME)
    if et["source"] == "message-timestamp":
        cols.append(f"  {time} TIMESTAMP(3) METADATA FROM 'timestamp'")
    elif stream.rowtime.type == "TIMESTAMP_LTZ(3)" and _declared_type(cfg, et["field"]) == "BIGINT":
        cols.append(f"  {time} AS TO_TIMESTAMP_LTZ({ident(et['field'])}, 3)")
    else:
        cols.append(f"  {time} AS {ident(et['field'])}")
    cols.append(f"  WATERMARK FOR {time} AS {time} - {interval(et['watermark_delay'])}")
    options = [("connector", "kafka"), ("topic", cfg["topic"]), ("properties.bootstrap.servers", cfg["bootstrap_servers"])]
    if "group_id" in cfg:
        options.append(("properties.group.id", cfg["group_id"]))
    options += [("scan.startup.mode", cfg.get("startup_mode", "earliest-offset")), ("format", cfg["format"])]
    options += _security(cfg)
    return f"CREATE TABLE {ident(node.name)} (\n" + ",\n".join(cols) + "\n) " + _with(options) + ";"


def _declared_type(cfg: dict, name: str) -> str:
    return next((f["type"] for f in cfg["fields"] if f["name"] == name), "")


def _select(columns: list[str]) -> str:
    return "SELECT\n" + ",\n".join(f"  {c}" for c in columns)


def _view(node: Node, graph: Graph, analysis: Analysis) -> str:
    cfg, out = node.config, analysis.streams[node.id]
    if node.type == "join":
        return _join(node, graph, analysis)
    up = graph.input_of(node.id)
    src, inp = ident(up.name), analysis.streams[up.id]
    if node.type == "filter":
        return _select([ident(n) for n in out.names]) + f"\nFROM {src}\nWHERE ({cfg['expression']})"
    if node.type == "transform":
        computed = {f["name"]: f for f in cfg["fields"]}
        cols = [_output(computed[f.name], scope_of(inp), f) if f.name in computed else ident(f.name)
                for f in out.fields]
        return _select(cols) + f"\nFROM {src}"
    if node.type == "aggregate":
        return _aggregate(cfg, src)
    if node.type == "unpack":
        arr = inp.get(cfg["field"])
        names = [e.name for e in arr.elements] if arr.elements else [cfg["as"]]
        cols = [f"{ident('u') if f.name in names else ident('i')}.{ident(f.name)}" for f in out.fields]
        return (_select(cols) + f"\nFROM {src} AS {ident('i')}\nCROSS JOIN UNNEST({ident('i')}.{ident(arr.name)}) "
                f"AS {ident('u')} (" + ", ".join(ident(n) for n in names) + ")")
    if node.type == "sql":
        inner = _select([ident(n) for n in inp.names]) + f"\nFROM {src}"
        return (f"WITH {ident('input')} AS (\n" + "\n".join("  " + line for line in inner.split("\n")) + "\n)\n"
                + _select([_declared(f) for f in out.fields]) + f"\nFROM (\n{cfg['query']}\n) AS {ident('q')}")
    raise AssertionError(f"refusals() lets no {node.type} node through")


def _declared(f: Field) -> str:
    """A custom query's column, CAST to its declared type (the event time stays bare: a CAST would end it)."""
    if f.rowtime or f.is_array:
        return ident(f.name)
    return f"CAST({ident(f.name)} AS {f.type}) AS {ident(f.name)}"


def _output(item: dict, resolve: Resolve, result: Field) -> str:
    """One computed column: CAST to its declared type; a bare event_time is cast so it is no time attribute."""
    text = item["expression"]
    bare = bare_reference(text, resolve)
    if "type" in item or (bare is not None and bare.rowtime):
        return f"CAST(({text}) AS {column_type(result)}) AS {ident(result.name)}"
    if bare is not None:
        return f"{text} AS {ident(result.name)}"
    return f"({text}) AS {ident(result.name)}"


def _aggregate(cfg: dict, src: str) -> str:
    window = cfg["window"]
    group = [ident(g) for g in cfg.get("group_by", ())]
    aggs = [f"{a['function']}({ident(a['field']) if 'field' in a else '*'}) AS {ident(a['name'])}"
            for a in cfg["aggregates"]]
    if window["type"] == "none":
        return _select(group + aggs) + f"\nFROM {src}\nGROUP BY " + ", ".join(group)
    times = [ident("window_start"), ident("window_end")]
    if window["type"] == "tumbling":
        tvf = f"TUMBLE(TABLE {src}, DESCRIPTOR({ident(EVENT_TIME)}), {interval(window['size'])})"
    else:
        tvf = (f"HOP(TABLE {src}, DESCRIPTOR({ident(EVENT_TIME)}), {interval(window['slide'])}, "
               f"{interval(window['size'])})")
    cols = group + aggs + times + [f"{ident('window_time')} AS {ident(EVENT_TIME)}"]
    return (_select(cols) + f"\nFROM TABLE(\n  {tvf})\nGROUP BY "
            + ", ".join([*times, ident("window_time"), *group]))


def _join(node: Node, graph: Graph, analysis: Analysis) -> str:
    cfg = node.config
    left, right = graph.input_of(node.id, "left"), graph.input_of(node.id, "right")
    la, ra = cfg["left_alias"], cfg["right_alias"]
    resolve = join_scope({la: analysis.streams[left.id], ra: analysis.streams[right.id]})
    out = analysis.streams[node.id]
    cols = [_output(item, resolve, f) for item, f in zip(cfg["fields"], out.fields)]
    chosen = la if cfg.get("event_time", "left") == "left" else ra
    cols.append(f"{ident(chosen)}.{ident(EVENT_TIME)} AS {ident(EVENT_TIME)}")
    lt, rt = f"{ident(la)}.{ident(EVENT_TIME)}", f"{ident(ra)}.{ident(EVENT_TIME)}"
    kind = {"inner": "INNER JOIN", "left": "LEFT JOIN", "right": "RIGHT JOIN", "full": "FULL OUTER JOIN"}
    return (_select(cols) + f"\nFROM {ident(left.name)} AS {ident(la)}\n{kind[cfg.get('join_type', 'inner')]} "
            f"{ident(right.name)} AS {ident(ra)}\n  ON ({cfg['condition']})\n  AND {rt} BETWEEN {lt} - "
            f"{interval(cfg['within']['before'])} AND {lt} + {interval(cfg['within']['after'])}")


def _destination(node: Node, stream: Stream) -> str:
    cfg = node.config
    cols = [f"  {ident(f.name)} {column_type(f)}" for f in stream.fields]
    keys = list(cfg.get("key_fields", ()))
    base = [("topic", cfg["topic"]), ("properties.bootstrap.servers", cfg["bootstrap_servers"])]
    if cfg.get("mode") == "upsert":
        cols.append("  PRIMARY KEY (" + ", ".join(ident(k) for k in keys) + ") NOT ENFORCED")
        options = [("connector", "upsert-kafka"), *base, ("key.format", cfg["format"]), ("value.format", cfg["format"])]
    elif keys:
        options = [("connector", "kafka"), *base, ("key.format", cfg["format"]), ("key.fields", ";".join(keys)),
                   ("value.format", cfg["format"])]
    else:
        options = [("connector", "kafka"), *base, ("format", cfg["format"])]
    options += _security(cfg)
    return f"CREATE TABLE {ident(node.name)} (\n" + ",\n".join(cols) + "\n) " + _with(options) + ";"


def _insert(node: Node, up: Node, stream: Stream) -> str:
    return (f"INSERT INTO {ident(node.name)}\n" + _select([ident(n) for n in stream.names])
            + f"\nFROM {ident(up.name)};")

