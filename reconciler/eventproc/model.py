"""The event-processing flow model: typed, frozen values for a parsed graph (pure).

What a flow document (``"kind": "event-processing"``, schema
``manifests/schemas/flow.event-processing.schema.json``) becomes once it is read:
its :class:`Node` and :class:`Edge` values, the :class:`Field` values that flow
between nodes and the :class:`Stream` leaving each node, and the :class:`Issue`
every check reports. Nothing here reads files or validates; :mod:`.rules` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KIND",
    "NODE_TYPES",
    "RESERVED_FIELDS",
    "EVENT_TIME",
    "Issue",
    "Node",
    "Edge",
    "Field",
    "Stream",
    "is_numeric",
]

KIND = "event-processing"
NODE_TYPES = ("source", "filter", "transform", "aggregate", "join", "unpack", "deduplicate",
              "detect-patterns", "sql", "destination")
EVENT_TIME = "event_time"
# Names the renderer gives meaning to: no node may declare them as its own fields.
RESERVED_FIELDS = (EVENT_TIME, "window_start", "window_end", "window_time")

_DECIMAL = re.compile(r"DECIMAL\((\d+), ?(\d+)\)")
_NUMERIC = ("INT", "BIGINT", "FLOAT", "DOUBLE")


@dataclass(frozen=True)
class Issue:
    """One problem in a flow document: where (a JSON pointer), what, and which node.

    The caller prefixes its file: ``issue.format("flows/orders/1.json")`` gives
    ``flows/orders/1.json:/nodes/3/config/expression: field 'prize' is not ...``.
    """

    pointer: str
    message: str
    node_id: str = ""
    node_name: str = ""

    def __str__(self) -> str:
        who = ""
        if self.node_id or self.node_name:
            who = f" [node {self.node_id!r}" + (f" {self.node_name!r}" if self.node_name else "") + "]"
        return f"{self.pointer}: {self.message}{who}" if self.pointer else f"{self.message}{who}"

    def format(self, file: str) -> str:
        """``file:pointer: message [node 'id' 'name']``."""
        return f"{file}:{self}"

    def as_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "message": self.message, "node_id": self.node_id, "node_name": self.node_name}


@dataclass(frozen=True)
class Node:
    """A node as the document has it; ``index`` is its position in ``/nodes``."""

    index: int
    id: str
    type: str
    name: str
    config: Any

    @property
    def pointer(self) -> str:
        return f"/nodes/{self.index}"

    def issue(self, where: str, message: str) -> Issue:
        """An issue at ``/nodes/<index><where>`` naming this node."""
        return Issue(self.pointer + where, message, self.id, self.name)


@dataclass(frozen=True)
class Edge:
    """An edge ``source -> target``; ``port`` is "left"/"right" into a join, else ""."""

    index: int
    source: str
    target: str
    port: str = ""

    @property
    def pointer(self) -> str:
        return f"/edges/{self.index}"


@dataclass(frozen=True)
class Field:
    """A field flowing between nodes.

    ``type`` is a Flink SQL type as the schema spells it (``STRING``,
    ``DECIMAL(10, 2)``, ``TIMESTAMP(3)``, ``ARRAY``), "" when unknown.
    An ``ARRAY`` has either ``element`` (a scalar type) or ``elements`` (the
    fields of each element row). ``rowtime``: the field is the flow's event
    time (a Flink time attribute); only ``event_time`` ever is.
    """

    name: str
    type: str
    rowtime: bool = False
    element: str = ""
    elements: tuple[Field, ...] = ()

    @property
    def is_array(self) -> bool:
        return self.type == "ARRAY"

    def describe(self) -> str:
        if self.elements:
            return "ARRAY<ROW<" + ", ".join(f"{f.name} {f.type}" for f in self.elements) + ">>"
        if self.element:
            return f"ARRAY<{self.element}>"
        return self.type or "unknown type"


@dataclass(frozen=True)
class Stream:
    """What leaves a node: its fields in order, and its changelog.

    ``updating``: rows may be updated or retracted (a group aggregate without a
    window); only an upsert destination can take that. ``key``: the fields that
    identify a row of an updating stream, when known.
    """

    fields: tuple[Field, ...]
    updating: bool = False
    key: tuple[str, ...] | None = None
    _by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {f.name: f for f in self.fields})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def get(self, name: str) -> Field | None:
        return self._by_name.get(name)

    @property
    def rowtime(self) -> Field | None:
        f = self._by_name.get(EVENT_TIME)
        return f if f is not None and f.rowtime else None

    def listing(self) -> str:
        """The field names for a message: ``price, region, ts``."""
        return ", ".join(self.names) or "no fields"


def is_numeric(sql_type: str) -> bool:
    """True for the numeric types SUM and AVG accept."""
    return sql_type in _NUMERIC or bool(_DECIMAL.fullmatch(sql_type))


def decimal_scale(sql_type: str) -> int | None:
    m = _DECIMAL.fullmatch(sql_type)
    return int(m.group(2)) if m else None
