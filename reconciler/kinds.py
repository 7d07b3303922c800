"""Rules a flow must pass because of its ``kind``, besides any JSON Schema (pure).

A document that says ``"kind": "event-processing"`` is our own graph model of
an event-processing flow: it must also pass the graph rules of EP's SQL export
(:func:`reconciler.eventproc.check_renderable`: connected, one destination,
every node configured, field references that resolve), before it is imported
anywhere or rendered. Other documents have no kind rules.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

__all__ = ["kind_problems", "EVENT_PROCESSING"]

EVENT_PROCESSING = "event-processing"


def kind_problems(doc: Any) -> list[tuple[str, str]]:
    """(pointer, message) for every kind rule ``doc`` breaks; [] when it has no kind or passes."""
    if not isinstance(doc, dict) or doc.get("kind") != EVENT_PROCESSING:
        return []
    from reconciler.eventproc import check_renderable

    # The issue's own wording, node included, without the pointer (the caller places it).
    return [(issue.pointer, str(replace(issue, pointer=""))) for issue in check_renderable(doc)]
