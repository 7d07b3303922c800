"""The fields reaching and leaving every node of a flow, and the rules on them (pure).

Run on a schema-valid flow whose graph rules hold (see :mod:`.rules`), in
topological order. Each node's output :class:`~.model.Stream` follows from its
input and its config:

- source: its declared fields, then ``event_time`` (the event time, a Flink
  time attribute) from the message timestamp or a payload field;
- filter, deduplicate: the input; transform: kept input fields, then the new
  ones (``event_time`` always passes through);
- aggregate: group-by fields, the aggregates, and for a window
  ``window_start``, ``window_end`` and ``event_time`` (the window's time);
  without a window the result *updates* (keyed by the group-by fields);
- join: its output fields, then the chosen side's ``event_time``;
- unpack: the input without the array, then the element's fields;
- sql, detect-patterns: the declared fields.

Every field reference in a config (expressions, group-by, keys...) must be
among the fields reaching the node; types are checked where they are known
(SUM/AVG need numbers, unpack an ARRAY, windows and joins an event time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from reconciler.eventproc.expr import ExprError, Ref, check_query, references, tokenize
from reconciler.eventproc.graph import Graph
from reconciler.eventproc.model import EVENT_TIME, RESERVED_FIELDS, Field, Issue, Node, Stream, decimal_scale, is_numeric
from reconciler.eventproc.sqltext import seconds

__all__ = ["flow", "bare_reference", "scope_of", "join_scope", "Resolve"]

Resolve = Callable[[Ref], "tuple[Field | None, str]"]


def flow(graph: Graph) -> tuple[dict[str, Stream], list[Issue]]:
    streams: dict[str, Stream] = {}
    issues: list[Issue] = []
    for node_id in graph.order:
        node = graph.nodes[node_id]
        if node.type == "source":
            before = len(issues)
            stream = _source(node, issues)
            if len(issues) == before:
                streams[node_id] = stream
            continue
        if node.type == "join":
            left, right = graph.input_of(node_id, "left"), graph.input_of(node_id, "right")
            if left is None or right is None or left.id not in streams or right.id not in streams:
                continue
            before = len(issues)
            stream = _join(node, streams[left.id], streams[right.id], issues)
            if len(issues) == before:
                streams[node_id] = stream
            continue
        up = graph.input_of(node_id)
        if up is None or up.id not in streams:
            continue
        before = len(issues)
        stream = _NODES[node.type](node, streams[up.id], issues)
        if len(issues) == before:  # what follows a node with an issue is not checked: it would only echo it
            streams[node_id] = stream
    return streams, issues


def scope_of(stream: Stream) -> Resolve:
    def resolve(ref: Ref) -> tuple[Field | None, str]:
        if ref.qualifier:
            return None, f"{str(ref)!r}: only a join's inputs have aliases here; write {ref.name!r}"
        f = stream.get(ref.name)
        return (f, "") if f else (None, f"field {ref.name!r} is not among the fields reaching this node "
                                         f"({stream.listing()})")
    return resolve


def join_scope(sides: Mapping[str, Stream]) -> Resolve:
    def resolve(ref: Ref) -> tuple[Field | None, str]:
        if ref.qualifier:
            if ref.qualifier not in sides:
                return None, f"{ref.qualifier!r} is not one of this join's aliases ({', '.join(sides)})"
            s = sides[ref.qualifier]
            f = s.get(ref.name)
            return (f, "") if f else (None, f"field {ref.name!r} is not among the fields of {ref.qualifier} "
                                             f"({s.listing()})")
        owners = [a for a, s in sides.items() if s.get(ref.name)]
        if len(owners) > 1:
            return None, (f"field {ref.name!r} is in both inputs; qualify it: "
                          + " or ".join(f"{a}.{ref.name}" for a in owners))
        if owners:
            return sides[owners[0]].get(ref.name), ""
        return None, f"field {ref.name!r} is in neither input (" + "; ".join(
            f"{a}: {s.listing()}" for a, s in sides.items()) + ")"
    return resolve


def _expr(node: Node, where: str, text: str, resolve: Resolve, issues: list[Issue]) -> list[Field] | None:
    """Check one expression; the fields it references, or None when it cannot be used."""
    try:
        refs = references(tokenize(text))
    except ExprError as exc:
        issues.append(node.issue(where, str(exc)))
        return None
    found: list[Field] = []
    ok = True
    for ref in refs:
        f, problem = resolve(ref)
        if f is None:
            issues.append(node.issue(where, problem))
            ok = False
        else:
            found.append(f)
    return found if ok else None


def bare_reference(text: str, resolve: Resolve) -> Field | None:
    """The field an expression is, when it is nothing but a (qualified) field name."""
    try:
        tokens = tokenize(text)
    except ExprError:
        return None
    shapes = [t.kind for t in tokens]
    if shapes in (["ident"], ["quoted"]) or (len(tokens) == 3 and tokens[1].text == "."
                                             and shapes[0] in ("ident", "quoted") and shapes[2] in ("ident", "quoted")):
        refs = references(tokens)
        if len(refs) == 1:
            return resolve(refs[0])[0]
    return None


def _ref(node: Node, where: str, name: str, stream: Stream, issues: list[Issue]) -> Field | None:
    f = stream.get(name)
    if f is None:
        issues.append(node.issue(where, f"field {name!r} is not among the fields reaching this node ({stream.listing()})"))
    return f


def _new_name(node: Node, where: str, name: str, taken: set[str], issues: list[Issue]) -> bool:
    if name in RESERVED_FIELDS:
        issues.append(node.issue(where, f"{name!r} is a reserved field name ({', '.join(RESERVED_FIELDS)}); choose another"))
        return False
    if name in taken:
        issues.append(node.issue(where, f"field {name!r} is already in this node's output; names must be unique"))
        return False
    taken.add(name)
    return True


def _declared(node: Node, where: str, items: list, issues: list[Issue], allow_event_time: bool = False) -> list[Field]:
    out: list[Field] = []
    taken: set[str] = set()
    for j, item in enumerate(items):
        name, w = item["name"], f"{where}/{j}"
        if allow_event_time and name == EVENT_TIME:
            if item["type"] not in ("TIMESTAMP(3)", "TIMESTAMP_LTZ(3)"):
                issues.append(node.issue(f"{w}/type", "event_time must be TIMESTAMP(3) or TIMESTAMP_LTZ(3)"))
            taken.add(name)
            out.append(Field(name, item["type"], rowtime=True))
            continue
        if not _new_name(node, f"{w}/name", name, taken, issues):
            continue
        elements = tuple(Field(e["name"], e["type"]) for e in item.get("fields", ()))
        if len({e.name for e in elements}) != len(elements):
            issues.append(node.issue(f"{w}/fields", "the element fields of an array must have unique names"))
        out.append(Field(name, item["type"], element=item.get("element", ""), elements=elements))
    return out


def _source(node: Node, issues: list[Issue]) -> Stream:
    cfg = node.config
    fields = _declared(node, "/config/fields", cfg["fields"], issues)
    et = cfg["event_time"]
    time_type = "TIMESTAMP(3)"
    if et["source"] == "field":
        f = next((f for f in fields if f.name == et["field"]), None)
        if f is None:
            issues.append(node.issue("/config/event_time/field", f"field {et['field']!r} is not among this source's "
                                     f"fields ({', '.join(x.name for x in fields)})"))
        elif f.type == "BIGINT":
            time_type = "TIMESTAMP_LTZ(3)"  # epoch milliseconds, through TO_TIMESTAMP_LTZ
        elif f.type not in ("TIMESTAMP(3)", "TIMESTAMP_LTZ(3)"):
            issues.append(node.issue("/config/event_time/field", f"an event time field must be TIMESTAMP(3), "
                                     f"TIMESTAMP_LTZ(3) or BIGINT (epoch milliseconds); {f.name!r} is {f.describe()}"))
        else:
            time_type = f.type
    return Stream((*fields, Field(EVENT_TIME, time_type, rowtime=True)))


def _filter(node: Node, stream: Stream, issues: list[Issue]) -> Stream:
    _expr(node, "/config/expression", node.config["expression"], scope_of(stream), issues)
    return stream


def _outputs(node: Node, items: list, resolve: Resolve, taken: set[str], issues: list[Issue]) -> list[Field]:
    out: list[Field] = []
    for j, item in enumerate(items):
        w = f"/config/fields/{j}"
        named = _new_name(node, f"{w}/name", item["name"], taken, issues)
        used = _expr(node, f"{w}/expression", item["expression"], resolve, issues)
        if not named or used is None:
            continue
        bare = bare_reference(item["expression"], resolve)
        if "type" in item:
            out.append(Field(item["name"], item["type"]))
        elif bare is not None:
            out.append(Field(item["name"], bare.type, element=bare.element, elements=bare.elements))
        else:
            issues.append(node.issue(f"{w}/type", f"field {item['name']!r} needs a \"type\": its expression is not "
                                                  f"a plain field reference"))
    return out


def _transform(node: Node, stream: Stream, issues: list[Issue]) -> Stream:
    cfg = node.config
    keep = cfg.get("keep_input_fields", True)
    removed = set()
    for j, name in enumerate(cfg.get("remove", ())):
        if name == EVENT_TIME:
            issues.append(node.issue(f"/config/remove/{j}", "event_time always passes through; it cannot be removed"))
        elif _ref(node, f"/config/remove/{j}", name, stream, issues) is not None:
            removed.add(name)
    kept = [f for f in stream.fields if f.name == EVENT_TIME or (keep and f.name not in removed)]
    new = _outputs(node, cfg["fields"], scope_of(stream), {f.name for f in kept if f.name != EVENT_TIME}, issues)
    names = {f.name for f in (*kept, *new)}
    key = stream.key if stream.key is not None and set(stream.key) <= names else None
    return Stream((*kept, *new), stream.updating, key)


def _aggregate(node: Node, stream: Stream, issues: list[Issue]) -> Stream:
    cfg = node.config
    window = cfg["window"]
    windowed = window["type"] != "none"
    group: list[Field] = []
    for j, name in enumerate(cfg.get("group_by", ())):
        if name == EVENT_TIME:
            issues.append(node.issue(f"/config/group_by/{j}", "group by a window instead of by event_time"))
        elif (f := _ref(node, f"/config/group_by/{j}", name, stream, issues)) is not None:
            if f.is_array:
                issues.append(node.issue(f"/config/group_by/{j}", f"cannot group by {name!r}: it is an ARRAY"))
            group.append(f)
    if windowed:
        if stream.rowtime is None:
            issues.append(node.issue("/config/window", "a window needs the event time, but no event_time reaches this "
                                     "node (an aggregate without a window drops it)"))
        if stream.updating:
            issues.append(node.issue("/config/window", "a window cannot follow an aggregate without a window "
                                     "(its input updates)"))
        for clash in ("window_start", "window_end", "window_time"):
            if stream.get(clash):
                issues.append(node.issue("/config/window", f"the input already has a field {clash!r} (from an earlier "
                                         f"window); a transform must remove or rename it first"))
        if window["type"] == "hopping":
            size, slide = seconds(window["size"]), seconds(window["slide"])
            if slide > size or size % slide:
                issues.append(node.issue("/config/window/slide", "a hopping window's size must be a whole multiple "
                                         "of its slide"))
    elif not group:
        issues.append(node.issue("/config/group_by", "an aggregate without a window needs group_by fields: they are "
                                 "the key its updating results are written under"))
    taken = {f.name for f in group}
    aggs: list[Field] = []
    for j, agg in enumerate(cfg["aggregates"]):
        w = f"/config/aggregates/{j}"
        if not _new_name(node, f"{w}/name", agg["name"], taken, issues):
            continue
        fn, arg = agg["function"], None
        if "field" in agg:
            arg = _ref(node, f"{w}/field", agg["field"], stream, issues)
            if arg is None:
                continue
            if arg.is_array:
                issues.append(node.issue(f"{w}/field", f"{fn} cannot take {arg.name!r}: it is an ARRAY"))
                continue
            if fn in ("SUM", "AVG") and arg.type and not is_numeric(arg.type):
                issues.append(node.issue(f"{w}/field", f"{fn} needs a number; {arg.name!r} is {arg.describe()}"))
                continue
        aggs.append(Field(agg["name"], _agg_type(fn, arg)))
    if not windowed:
        return Stream((*group, *aggs), updating=True, key=tuple(f.name for f in group))
    time_type = stream.rowtime.type if stream.rowtime else "TIMESTAMP(3)"
    return Stream((*group, *aggs, Field("window_start", "TIMESTAMP(3)"), Field("window_end", "TIMESTAMP(3)"),
                   Field(EVENT_TIME, time_type, rowtime=True)))


def _agg_type(fn: str, arg: Field | None) -> str:
    if fn == "COUNT" or arg is None:
        return "BIGINT"
    scale = decimal_scale(arg.type)
    if fn in ("SUM", "AVG") and scale is not None:
        return f"DECIMAL(38, {scale if fn == 'SUM' else max(6, scale)})"
    return arg.type


def _join(node: Node, left: Stream, right: Stream, issues: list[Issue]) -> Stream:
    cfg = node.config
    la, ra = cfg["left_alias"], cfg["right_alias"]
    if la.lower() == ra.lower():
        issues.append(node.issue("/config/right_alias", "the two aliases of a join must differ"))
        return Stream(())
    for alias, key in ((la, "left_alias"), (ra, "right_alias")):
        if alias.upper() in _ALIAS_KEYWORDS:
            issues.append(node.issue(f"/config/{key}", f"{alias!r} is a SQL keyword; choose another alias"))
    for side, s in (("left", left), ("right", right)):
        if s.rowtime is None or s.updating:
            issues.append(node.issue("", f"an interval join needs event time on both inputs; the {side} input "
                                         + ("updates (an aggregate without a window)" if s.updating else "has none")))
            return Stream(())
    if left.rowtime.type != right.rowtime.type:
        issues.append(node.issue("/config/within", f"both inputs' event_time must have one type (left "
                                 f"{left.rowtime.type}, right {right.rowtime.type})"))
    resolve = join_scope({la: left, ra: right})
    _expr(node, "/config/condition", cfg["condition"], resolve, issues)
    out = _outputs(node, cfg["fields"], resolve, set(), issues)
    chosen = left if cfg.get("event_time", "left") == "left" else right
    return Stream((*out, chosen.rowtime))


# Words an unquoted alias must not be (Flink's reserved words that look like names).
_ALIAS_KEYWORDS = frozenset("AS ON AND OR NOT JOIN LEFT RIGHT FULL INNER OUTER CROSS SELECT FROM WHERE GROUP BY TABLE "
                            "USER VALUE TIME DATE TIMESTAMP INTERVAL CASE END ORDER LIMIT UNION ALL MATCH WINDOW".split())


def _unpack(node: Node, stream: Stream, issues: list[Issue]) -> Stream:
    cfg = node.config
    arr = _ref(node, "/config/field", cfg["field"], stream, issues)
    if arr is None:
        return stream
    if not arr.is_array:
        issues.append(node.issue("/config/field", f"unpack needs an ARRAY; {arr.name!r} is {arr.describe()}"))
        return stream
    rest = [f for f in stream.fields if f.name != arr.name]
    taken = {f.name for f in rest}
    if arr.elements:
        if "as" in cfg:
            issues.append(node.issue("/config/as", "\"as\" names the element of an array of scalars; the elements of "
                                     f"{arr.name!r} are rows with their own field names"))
        new = [e for e in arr.elements if _new_name(node, "/config/field", e.name, taken, issues)]
    elif "as" not in cfg:
        issues.append(node.issue("/config", f"\"as\" is required: it names the field each element of {arr.name!r} "
                                 f"({arr.describe()}) becomes"))
        return stream
    else:
        new = [Field(cfg["as"], arr.element)] if _new_name(node, "/config/as", cfg["as"], taken, issues) else []
    key = stream.key if stream.key is not None and arr.name not in stream.key else None
    return Stream((*rest, *new), stream.updating, key)


def _sql(node: Node, stream: Stream, issues: list[Issue]) -> Stream:
    try:
        check_query(node.config["query"])
    except ExprError as exc:
        issues.append(node.issue("/config/query", str(exc)))
    return Stream(tuple(_declared(node, "/config/fields", node.config["fields"], issues, allow_event_time=True)),
                  stream.updating)


def _deduplicate(node: Node, stream: Stream, issues: list[Issue]) -> Stream:
    for j, name in enumerate(node.config["key"]):
        _ref(node, f"/config/key/{j}", name, stream, issues)
    return stream


def _detect_patterns(node: Node, stream: Stream, issues: list[Issue]) -> Stream:
    for j, name in enumerate(node.config.get("partition_by", ())):
        _ref(node, f"/config/partition_by/{j}", name, stream, issues)
    out = [Field(f["name"], f.get("type", "")) for f in node.config["fields"]]
    return Stream((*out, *((stream.rowtime,) if stream.rowtime else ())))


def _destination(node: Node, stream: Stream, issues: list[Issue]) -> Stream:
    cfg = node.config
    for j, name in enumerate(cfg.get("key_fields", ())):
        f = _ref(node, f"/config/key_fields/{j}", name, stream, issues)
        if f is not None and f.is_array:
            issues.append(node.issue(f"/config/key_fields/{j}", f"a key field cannot be an ARRAY ({name!r})"))
        if ";" in name:
            issues.append(node.issue(f"/config/key_fields/{j}", "a key field's name cannot hold ';' (it separates "
                                     "the connector's 'key.fields')"))
    for f in stream.fields:
        if not f.type:
            issues.append(node.issue("", f"the type of field {f.name!r} is not known, so it cannot be a column here"))
    if cfg.get("mode") == "upsert" and stream.updating and stream.key is not None:
        if set(cfg["key_fields"]) != set(stream.key):
            issues.append(node.issue("/config/key_fields", f"the rows arriving here are keyed by "
                                     f"{', '.join(stream.key)}; key_fields must be those fields"))
    return stream


_NODES: dict[str, Callable[[Node, Stream, list[Issue]], Stream]] = {
    "filter": _filter, "transform": _transform, "aggregate": _aggregate, "unpack": _unpack, "sql": _sql,
    "deduplicate": _deduplicate, "detect-patterns": _detect_patterns, "destination": _destination,
}
