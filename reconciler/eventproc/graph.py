"""The shape of an event-processing flow: nodes, edges and their order (pure).

:func:`build` reads whatever usable nodes and edges a document has (it never
raises on a malformed one) and reports what EP's SQL export requires of a
graph, each as an :class:`~.model.Issue` naming the node and the pointer:

- node ids unique, node names unique (they become SQL table and view names);
- every edge between known nodes, no edge twice, no cycle;
- a source has no input, a destination no output, a join exactly a ``left``
  and a ``right`` input (``port`` on its edges and only there), every other
  node exactly one input;
- exactly one terminal node, and it is a destination; every source reaches it.

:attr:`Graph.order` is a topological order with a deterministic tie-break
(sources first, then by id), independent of the order of ``nodes`` and
``edges`` in the document; it is empty when the graph has a cycle.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.eventproc.model import Edge, Issue, Node

__all__ = ["Graph", "build"]

_RANK = {"source": 0, "destination": 2}


@dataclass(frozen=True)
class Graph:
    nodes: Mapping[str, Node]  # by id, first node of each id
    edges: tuple[Edge, ...]  # between known nodes, each once
    inputs: Mapping[str, tuple[Edge, ...]]
    outputs: Mapping[str, tuple[Edge, ...]]
    order: tuple[str, ...]  # topological; () when cyclic
    destination: str | None  # the single destination, when there is exactly one

    def input_of(self, node_id: str, port: str = "") -> Node | None:
        for e in self.inputs.get(node_id, ()):
            if e.port == port:
                return self.nodes[e.source]
        return None


def build(doc: Any) -> tuple[Graph, list[Issue]]:
    issues: list[Issue] = []
    nodes = _read_nodes(doc, issues)
    edges = _read_edges(doc, nodes, issues)
    inputs: dict[str, list[Edge]] = {n: [] for n in nodes}
    outputs: dict[str, list[Edge]] = {n: [] for n in nodes}
    for e in edges:
        inputs[e.target].append(e)
        outputs[e.source].append(e)
    for node_id, node in nodes.items():
        _check_arity(node, inputs[node_id], outputs[node_id], nodes, issues)
    cyclic = _check_cycles(nodes, edges, outputs, issues)
    destination = None if cyclic else _check_ends(nodes, inputs, outputs, issues)
    order = () if cyclic else _order(nodes, inputs, outputs)
    graph = Graph(nodes, tuple(edges), {k: tuple(v) for k, v in inputs.items()},
                  {k: tuple(v) for k, v in outputs.items()}, order, destination)
    return graph, issues


def _read_nodes(doc: Any, issues: list[Issue]) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    names: dict[str, Node] = {}
    raw = doc.get("nodes") if isinstance(doc, dict) else None
    for i, item in enumerate(raw if isinstance(raw, list) else ()):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue  # the schema reports it
        name = item.get("name") if isinstance(item.get("name"), str) else ""
        node = Node(i, item["id"], str(item.get("type", "")), name, item.get("config"))
        if node.id in nodes:
            first = nodes[node.id]
            issues.append(node.issue("/id", f"node id {node.id!r} is also the id of {first.pointer}; ids must be unique"))
            continue
        nodes[node.id] = node
        if name and name in names:
            other = names[name]
            issues.append(node.issue("/name", f"node name {name!r} is also the name of node {other.id!r} "
                                              f"({other.pointer}); names become SQL table and view names and must be unique"))
        names.setdefault(name, node)
    return nodes


def _read_edges(doc: Any, nodes: Mapping[str, Node], issues: list[Issue]) -> list[Edge]:
    edges: list[Edge] = []
    seen: dict[tuple[str, str, str], Edge] = {}
    raw = doc.get("edges") if isinstance(doc, dict) else None
    for i, item in enumerate(raw if isinstance(raw, list) else ()):
        if not isinstance(item, dict) or not isinstance(item.get("from"), str) or not isinstance(item.get("to"), str):
            continue
        port = item.get("port") if isinstance(item.get("port"), str) else ""
        edge = Edge(i, item["from"], item["to"], port)
        known = True
        for key, node_id in (("from", edge.source), ("to", edge.target)):
            if node_id not in nodes:
                issues.append(Issue(f"{edge.pointer}/{key}", f"no node has the id {node_id!r}"))
                known = False
        if not known:
            continue
        if edge.source == edge.target:
            node = nodes[edge.source]
            issues.append(Issue(edge.pointer, f"an edge from node {node.id!r} to itself is a cycle", node.id, node.name))
            continue
        key3 = (edge.source, edge.target, edge.port)
        if key3 in seen:
            issues.append(Issue(edge.pointer, f"the same edge as {seen[key3].pointer}"))
            continue
        seen[key3] = edge
        edges.append(edge)
    return edges


def _check_arity(node: Node, ins: list[Edge], outs: list[Edge], nodes: Mapping[str, Node],
                 issues: list[Issue]) -> None:
    for e in ins:
        if e.port and node.type != "join":
            issues.append(Issue(f"{e.pointer}/port", f"a port only applies to an edge into a join; "
                                                      f"{node.id!r} is a {node.type}", node.id, node.name))
    if node.type == "source":
        for e in ins:
            issues.append(Issue(f"{e.pointer}/to", f"a source has no input; node {e.source!r} feeds source "
                                                    f"{node.id!r}", node.id, node.name))
        return
    if node.type == "destination":
        for e in outs:
            issues.append(Issue(f"{e.pointer}/from", f"a destination ends the flow; nothing can follow it "
                                                      f"(this edge goes to {e.target!r})", node.id, node.name))
    if node.type == "join":
        by_port: dict[str, Edge] = {}
        for e in ins:
            if not e.port:
                issues.append(Issue(e.pointer, f"an edge into join {node.id!r} needs \"port\": \"left\" or \"right\"",
                                    node.id, node.name))
            elif e.port in by_port:
                issues.append(Issue(f"{e.pointer}/port", f"join {node.id!r} already has a {e.port} input "
                                                          f"({by_port[e.port].pointer})", node.id, node.name))
            else:
                by_port[e.port] = e
        for port in ("left", "right"):
            if port not in by_port:
                issues.append(node.issue("", f"this join has no {port} input: connect an edge with \"port\": \"{port}\""))
        return
    if not ins:
        issues.append(node.issue("", f"this {node.type or 'node'} has no input; connect an edge to it"))
    elif len(ins) > 1:
        froms = ", ".join(repr(e.source) for e in ins)
        issues.append(node.issue("", f"this {node.type or 'node'} has {len(ins)} inputs (from {froms}); "
                                     f"only a join takes two"))


def _check_cycles(nodes: Mapping[str, Node], edges: list[Edge], outputs: Mapping[str, list[Edge]],
                  issues: list[Issue]) -> bool:
    """Report each cycle (a strongly connected component); True when there is one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, 0)]
        while work:  # iterative Tarjan: a 1,000-node chain must not hit the recursion limit
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            outs = outputs[v]
            if i < len(outs):
                work.append((v, i + 1))
                w = outs[i].target
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    components.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    for comp in components:
        members = set(comp)
        first = min((e for e in edges if e.source in members and e.target in members), key=lambda e: e.index)
        names = sorted(comp)
        listing = ", ".join(repr(n) for n in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        issues.append(Issue(first.pointer, f"nodes {listing} form a cycle; a flow's edges must not loop back",
                            first.source, nodes[first.source].name))
    return bool(components) or any(e.source == e.target for e in edges)


def _check_ends(nodes: Mapping[str, Node], inputs: Mapping[str, list[Edge]], outputs: Mapping[str, list[Edge]],
                issues: list[Issue]) -> str | None:
    destinations = sorted((n for n in nodes.values() if n.type == "destination"), key=lambda n: n.index)
    if not destinations:
        issues.append(Issue("/nodes", "the flow has no destination; it must end with exactly one destination node"))
        return None
    for extra in destinations[1:]:
        issues.append(extra.issue("", f"a second destination (the first is {destinations[0].id!r}); "
                                      f"a flow ends with exactly one destination"))
    dest = destinations[0]
    for node in sorted(nodes.values(), key=lambda n: n.index):
        if not outputs[node.id] and node.type != "destination":
            issues.append(node.issue("", f"nothing follows this {node.type or 'node'}: a flow ends with exactly one "
                                         f"node, the destination {dest.id!r}"))
    reached = {dest.id}
    todo = [dest.id]
    while todo:
        for e in inputs[todo.pop()]:
            if e.source not in reached:
                reached.add(e.source)
                todo.append(e.source)
    for node in sorted(nodes.values(), key=lambda n: n.index):
        if node.type == "source" and node.id not in reached:
            issues.append(node.issue("", f"source {node.id!r} is not connected to the destination {dest.id!r}"))
    return dest.id if len(destinations) == 1 else None


def _order(nodes: Mapping[str, Node], inputs: Mapping[str, list[Edge]],
           outputs: Mapping[str, list[Edge]]) -> tuple[str, ...]:
    pending = {n: len(inputs[n]) for n in nodes}
    heap = [(_RANK.get(nodes[n].type, 1), n) for n, k in pending.items() if k == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, v = heapq.heappop(heap)
        order.append(v)
        for e in outputs[v]:
            pending[e.target] -= 1
            if pending[e.target] == 0:
                heapq.heappush(heap, (_RANK.get(nodes[e.target].type, 1), e.target))
    return tuple(order)
