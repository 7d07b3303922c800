"""The rules an event-processing flow must pass before it is rendered (pure).

:func:`check` answers "could EP export this flow as SQL?": the document is
schema-valid (:mod:`.schema`), its placeholders are well-formed and where they
may be, its graph has the shape :mod:`.graph` describes, and every field
reference resolves against the fields reaching its node (:mod:`.fields`).
Field rules run only on a flow that passes the others (they need a sound
graph and configs), so fix the reported issues first and check again.

:func:`refusals` adds what a valid flow may still hold that the renderer will
not turn into Flink SQL (see :mod:`.render`): :func:`check_renderable` is both.

Every issue names a JSON pointer and, where there is one, the node; the list
is in document order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.canonical import format_pointer
from reconciler.eventproc import schema as _schema
from reconciler.eventproc.fields import flow
from reconciler.eventproc.graph import Graph, build
from reconciler.eventproc.model import Issue, Stream
from reconciler.templating import PLACEHOLDER

__all__ = ["Analysis", "analyze", "check", "refusals", "check_renderable"]

# Config keys whose strings may hold ${param:...} (connection settings, expressions)
# and ${secret:...} (credentials). Names, ids and field references never may: a
# different name per environment would be a different graph.
PARAM_KEYS = frozenset({"topic", "bootstrap_servers", "group_id", "username", "password", "truststore_location",
                        "truststore_password", "expression", "condition", "query", "pattern"})
SECRET_KEYS = frozenset({"username", "password", "truststore_password"})
_TYPE_LIST = "STRING, BOOLEAN, INT, BIGINT, FLOAT, DOUBLE, DATE, TIME, TIMESTAMP(3), TIMESTAMP_LTZ(3), BYTES, DECIMAL(p, s)"


@dataclass(frozen=True)
class Analysis:
    """A checked flow: its graph, the stream leaving each node, and the issues found."""

    graph: Graph
    streams: Mapping[str, Stream]
    issues: tuple[Issue, ...]


def analyze(doc: Any, *, validator: Any = None) -> Analysis:
    if not isinstance(doc, dict):
        graph, _ = build({})
        return Analysis(graph, {}, (Issue("", f"a flow must be a JSON object, not {type(doc).__name__}"),))
    issues = _schema_issues(doc, validator or _schema.validator())
    issues += _placeholder_issues(doc)
    graph, graph_issues = build(doc)
    issues += graph_issues
    streams: Mapping[str, Stream] = {}
    if not issues:
        streams, field_issues = flow(graph)
        issues += field_issues
    return Analysis(graph, streams, tuple(_sorted(issues)))


def check(doc: Any, *, validator: Any = None) -> list[Issue]:
    """Every issue that keeps the flow from being exported as SQL; [] when it passes."""
    return list(analyze(doc, validator=validator).issues)


def refusals(analysis: Analysis) -> list[Issue]:
    """What the renderer refuses in a flow that passes :func:`check`."""
    out: list[Issue] = []
    graph = analysis.graph
    for node_id in graph.order:
        node = graph.nodes[node_id]
        if node.type == "deduplicate":
            out.append(node.issue("/type", "a deduplicate node is not rendered to Flink SQL: deduplication within a "
                                  "time window has no exact Flink SQL form (ROW_NUMBER deduplication keeps its state "
                                  "without an end), and the renderer will not change what the flow does"))
        elif node.type == "detect-patterns":
            out.append(node.issue("/type", "a detect-patterns node is not rendered to Flink SQL by this version "
                                  "(MATCH_RECOGNIZE is not supported); the flow can run in Event Processing only"))
        elif node.type == "destination" and node.config.get("mode", "append") == "append":
            up = graph.input_of(node_id)
            stream = analysis.streams.get(up.id) if up else None
            if stream is not None and stream.updating:
                out.append(node.issue("/config/mode", f"this destination appends (connector 'kafka'), but the rows "
                                      f"from {up.id!r} ({up.name!r}) update: they come from an aggregate without a "
                                      f"window, and Flink refuses them (\"doesn't support consuming update changes\"). "
                                      f"Give the aggregate a tumbling or hopping window, or set \"mode\": \"upsert\" "
                                      f"with \"key_fields\": the group-by fields"))
    return out


def check_renderable(doc: Any, *, validator: Any = None) -> list[Issue]:
    """:func:`check` and, when it passes, :func:`refusals`: [] means :func:`.render.render` succeeds."""
    analysis = analyze(doc, validator=validator)
    return list(analysis.issues) if analysis.issues else refusals(analysis)


def _node_of(doc: dict, path: tuple) -> tuple[str, str]:
    if len(path) >= 2 and path[0] == "nodes" and isinstance(path[1], int):
        nodes = doc.get("nodes")
        item = nodes[path[1]] if isinstance(nodes, list) and path[1] < len(nodes) else None
        if isinstance(item, dict):
            return (item["id"] if isinstance(item.get("id"), str) else "",
                    item["name"] if isinstance(item.get("name"), str) else "")
    return "", ""


def _schema_issues(doc: dict, validator: Any) -> list[Issue]:
    out: list[Issue] = []
    seen: set[tuple[str, str]] = set()
    for err in validator.iter_errors(doc):
        path = tuple(err.absolute_path)
        pointer, message = format_pointer(path), _message(err)
        if (pointer, message) not in seen:
            seen.add((pointer, message))
            out.append(Issue(pointer, message, *_node_of(doc, path)))
    return out


def _message(err: Any) -> str:
    """jsonschema's message, reworded where it would only quote the schema back."""
    if err.validator == "not":
        required = _required_in(err.validator_value)
        present = [k for k in required if isinstance(err.instance, dict) and k in err.instance]
        if present:
            return f"{', '.join(repr(k) for k in present)} is not allowed with the other settings here"
    if err.validator == "oneOf" and isinstance(err.instance, dict) and err.instance.get("type") == "ARRAY":
        return "an ARRAY field needs exactly one of 'element' (an array of scalars) or 'fields' (an array of rows)"
    if err.validator == "anyOf" and isinstance(err.instance, str):
        return f"{err.instance!r} is not a supported type ({_TYPE_LIST})"
    if err.validator == "maxLength":
        return f"too long (at most {err.validator_value} characters)"
    return err.message


def _required_in(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        found = list(schema.get("required", []))
        for sub in schema.get("anyOf", []):
            found += _required_in(sub)
        return found
    return []


def _placeholder_issues(doc: dict) -> list[Issue]:
    out: list[Issue] = []
    nodes = doc.get("nodes")
    for i, node in enumerate(nodes if isinstance(nodes, list) else ()):
        if not isinstance(node, dict):
            continue
        who = _node_of(doc, ("nodes", i))
        for key in ("id", "name", "type"):
            if isinstance(node.get(key), str) and "${" in node[key]:
                out.append(Issue(f"/nodes/{i}/{key}", f"a placeholder cannot stand in a node's {key}: it would "
                                 f"differ between environments", *who))
        _walk(node.get("config"), ["nodes", i, "config"], who, out)
    return out


def _walk(value: Any, path: list, who: tuple[str, str], out: list[Issue]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _walk(v, [*path, k], who, out)
    elif isinstance(value, list):
        for j, v in enumerate(value):
            _walk(v, [*path, j], who, out)
    elif isinstance(value, str) and "${" in value:
        pointer = format_pointer(path)
        if "${" in PLACEHOLDER.sub("", value):
            out.append(Issue(pointer, "not a placeholder: write ${param:NAME} or ${secret:NAME} (NAME of letters, "
                             "digits, '_', '.', '-')", *who))
        key = path[-1] if isinstance(path[-1], str) else path[-2]
        in_define = len(path) >= 2 and path[-2] == "define"
        for m in PLACEHOLDER.finditer(value):
            kind = m.group(1)
            if kind == "secret" and key not in SECRET_KEYS:
                out.append(Issue(pointer, f"a secret can only be a credential (username, password, "
                                 f"truststore_password), not {key!r}: it would be written into the SQL", *who))
            elif kind == "param" and key not in PARAM_KEYS and not in_define:
                out.append(Issue(pointer, f"a parameter cannot stand in {key!r}: only connection settings and "
                                 f"expressions may differ between environments", *who))


def _sorted(issues: list[Issue]) -> list[Issue]:
    def key(issue: Issue) -> tuple:
        segs = tuple((0, int(s), "") if s.isdigit() else (1, 0, s) for s in issue.pointer.split("/"))
        return segs, issue.message

    return sorted(issues, key=key)
