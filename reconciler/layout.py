"""Layout-only drift (pure): with ``layout = "ignore"``, a flow whose live version differs from git's
only in fields that place its nodes (:mod:`reconciler.codefields`) is not drift.

:func:`relax` takes one planned step and a test ``same(x, y)`` ("these two versions are equal but
for layout") and decides the step again as if the environment had not changed:

- drift whose live version is the base's but for layout: **in sync** (nothing imported, nothing
  adopted; git keeps its layout, the environment its own);
- a conflict whose live version is git's new one but for layout: **agree** (the marker advances);
- a conflict whose live version is the base's but for layout: **a change in git**, imported as any
  other (the live version, layout included, is saved to ``drift/<env>`` first, as always).

Every other step is returned as it is. Nothing here reads anything: the caller's ``same`` does.
"""

from __future__ import annotations

from collections.abc import Callable

from reconciler.plan import Action, Policy, State, Step, plan

__all__ = ["relax"]

_LIVE_CHANGED = frozenset({Action.IMPORT, Action.DELETE, Action.ADOPT, Action.REPORT, Action.CONFLICT})


def relax(step: Step, policy: Policy, same: Callable[[str, str], bool]) -> Step:
    """``step`` decided again with layout-only differences of the live version not counted."""
    a, d, live = step.base, step.desired, step.live
    if step.action not in _LIVE_CHANGED or live is None or live == a or step.state not in (State.DRIFTED, State.CONFLICT):
        return step
    if d == a:  # drift
        if a is not None and same(a, live):
            return step._replace(action=Action.NONE, state=State.IN_SYNC,
                                 reason="changed in the environment in layout only; layout = ignore leaves it")
        return step
    if d is not None and same(d, live):
        return step._replace(action=Action.ADVANCE, state=State.IN_SYNC,
                             reason="git and the environment agree but for layout (layout = ignore)")
    if a is not None and same(a, live):
        (decided,) = plan({step.key: a}, {step.key: d} if d is not None else {}, {step.key: a}, policy).steps
        return decided._replace(live=live, reason=decided.reason + " (the environment differs in layout only)")
    return step
