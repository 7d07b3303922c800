"""The rendered bytes of the flows one read took from the branch tip, kept for that run's write.

A read renders every flow it reads from git (sidecars joined, placeholders filled,
canonicalised, in the form the driver compares) and keeps only its id; the write
would read and render the imported ones again. :class:`Rendered` keeps those
bytes from the read for the write of the same run, under a budget of bytes (past
it, a flow is read and rendered again, as before). A kept flow is taken only for
the very git entry it was rendered from and only when it has the id the plan
used; anything else goes the full way. It lives in one :class:`~reconciler.outcome.Snapshot`
(one read, one templating), never across runs.
"""

from __future__ import annotations

from reconciler.errors import Problem
from reconciler.flows import CanonicalFlow, FlowKey

__all__ = ["Rendered", "BUDGET"]

BUDGET = 32 << 20  # bytes of rendered flows one read keeps for its write (1,000 Node-RED tabs: ~1.5 MB)


class Rendered:
    """What one read rendered from the tip: key -> (git entry id, rendered id, rendered bytes)."""

    __slots__ = ("_flows", "_left")

    def __init__(self, budget: int | None = None):
        self._flows: dict[FlowKey, tuple[str, str, bytes]] = {}
        self._left = BUDGET if budget is None else budget

    def keep(self, key: FlowKey, entry: str, got: CanonicalFlow | Problem) -> CanonicalFlow | Problem:
        """Keep ``got`` (read from git entry ``entry``) while the budget lasts; returns it."""
        if isinstance(got, CanonicalFlow) and got.data is not None and len(got.data) <= self._left:
            self._left -= len(got.data)
            self._flows[key] = (entry, got.oid, got.data)
        return got

    def data(self, key: FlowKey, entry: str | None, want: str | None) -> bytes | None:
        """The bytes rendered from exactly git entry ``entry`` when their id is ``want``; None otherwise."""
        kept = self._flows.get(key)
        if kept is None or entry is None or want is None or kept[0] != entry or kept[1] != want:
            return None
        return kept[2]

    def __len__(self) -> int:
        return len(self._flows)
