"""Rules a flow must pass because of its ``kind``, besides any JSON Schema (pure).

A document that says ``"kind": "event-processing"`` is our own graph model of
an event-processing flow: it must also pass the graph rules of EP's SQL export
(:func:`reconciler.eventproc.check_renderable`: connected, one destination,
every node configured, field references that resolve), before it is imported
anywhere or rendered. Other documents have no kind rules.

:func:`declarations` is what each kind of document says about its fields (which are code, kept
in git as sidecar files; which are only layout): an event-processing flow's ``sql`` nodes hold
their query as code (``.sql``), and Node-RED's flow documents declare theirs in
:mod:`reconciler.drivers.node_red.code`. They hold in every environment, whatever its driver.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any

from reconciler.codefields import CodeField, Declared

__all__ = ["kind_problems", "EVENT_PROCESSING", "declarations"]

EVENT_PROCESSING = "event-processing"


def kind_problems(doc: Any) -> list[tuple[str, str]]:
    """(pointer, message) for every kind rule ``doc`` breaks; [] when it has no kind or passes."""
    if not isinstance(doc, dict) or doc.get("kind") != EVENT_PROCESSING:
        return []
    from reconciler.eventproc import check_renderable

    # The issue's own wording, node included, without the pointer (the caller places it).
    return [(issue.pointer, str(replace(issue, pointer=""))) for issue in check_renderable(doc)]


def _is_event_processing(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == EVENT_PROCESSING


#: an event-processing flow's custom SQL (a ``sql`` node's ``config.query``) is code
EVENT_PROCESSING_FIELDS = Declared(
    code=(CodeField("/nodes/*/config/query", "sql", lambda node: node.get("type") == "sql"),),
    applies=_is_event_processing, name=EVENT_PROCESSING)


@lru_cache(maxsize=1)
def declarations() -> tuple[Declared, ...]:
    """Every document kind's code and layout fields (Node-RED's, event-processing's)."""
    from reconciler.drivers.node_red.code import NODE_RED

    return (NODE_RED, EVENT_PROCESSING_FIELDS)
