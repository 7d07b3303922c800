"""Event-processing flows (``"kind": "event-processing"``): checked, and rendered to Flink SQL.

Our own published graph model of an IBM Event Processing style flow (EP's
flow.json is not public): sources, processing nodes and one destination joined
by edges, schema ``manifests/schemas/flow.event-processing.schema.json``.

- :func:`check` (pure): what keeps a flow from EP's SQL export, as
  :class:`Issue` values (pointer, message, node id and name);
- :func:`render` (pure): the flow as one Flink 1.20 SQL script, EP-shaped and
  byte-for-byte deterministic, or :class:`RenderRefused` with the reasons;
  :func:`check_renderable` says beforehand whether it will succeed;
- :mod:`reconciler.eventproc.planner` (an adapter: it runs a JVM): rendered
  scripts checked by Flink's own planner, many per JVM.

Rendering is one-way: SQL is never read back as a flow.
"""

from reconciler.eventproc.model import KIND, Issue
from reconciler.eventproc.render import REDACTED, RenderRefused, render
from reconciler.eventproc.rules import check, check_renderable
from reconciler.eventproc.schema import SCHEMA_FILE

__all__ = ["KIND", "Issue", "check", "check_renderable", "render", "RenderRefused", "REDACTED", "SCHEMA_FILE"]
