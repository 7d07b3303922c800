"""``reconciler plan ENV --against REF --status``: the plan's verdict as a commit status on REF's commit.

Run in a merge-request pipeline, it puts a ``flow-reconciler/<env>`` status on
the merge request's head commit (the resolved ``--against`` commit) through
every ``github``/``gitlab``/``gitea`` ``[[notify]]`` table whose
``environments`` let ENV through: ``success`` when the merge would apply
cleanly (whether or not it changes flows), ``failure`` when it conflicts or a
flow is invalid for ENV. It is sent at once, with the HTTP client's retries
(a CLI can wait; the service's dispatcher is for the service).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from collections.abc import Callable
from typing import TYPE_CHECKING

from .settings import DeliverySettings, ForgeNotify
from .sinks import DeliveryFailed, ForgeSink
from .status import CommitStatus, context_of, forge_state, status_link

if TYPE_CHECKING:
    from reconciler.config import Config
    from reconciler.review import Review

__all__ = ["plan_status", "post_plan_status"]

_SHA = re.compile(r"^[0-9a-f]{7,64}$")


def plan_status(review: "Review", link: str | None = None) -> CommitStatus:
    """The status a review gives the ``--against`` commit."""
    env = review.env
    invalid = [s for s in (review.plan.steps if review.plan else ()) if s.action.value == "invalid"]
    if review.conflicts:
        state, text = "failure", f"merging into {review.branch} conflicts in {len(review.conflicts)} file(s)"
    elif review.errors:
        n = len(invalid) + len(review.problems)
        first = str(review.problems[0]) if review.problems else f"{invalid[0].key}: {invalid[0].reason}"
        state, text = "failure", f"{n} problem(s) for {env}: {first}"
    else:
        actions = Counter(s.action.value for s in (review.plan.steps if review.plan else ()) if s.action.value != "none")
        state = "success"
        text = (f"{env} would " + ", ".join(f"{a} {n}" for a, n in sorted(actions.items())) + " flow(s)" if actions
                else f"the merge changes nothing in {env}")
    ref = review.against.removeprefix("origin/")
    return CommitStatus(review.against_commit, state, " ".join(text.split())[:140], context_of(env), link,
                        None if _SHA.match(ref) else ref)


def post_plan_status(config: "Config", review: "Review", *, seen: Callable[[Iterable[str]], None] | None = None,
                     environ: Mapping[str, str] | None = None) -> list[tuple[str, str, str | None]]:
    """Post the review's status through each forge sink for its environment.

    Returns ``(sink, forge state, error or None)`` per sink; an empty list when none is configured.
    """
    status = plan_status(review, status_link(config.server.public_url, review.env))
    out = []
    for settings in config.notify:
        if not isinstance(settings, ForgeNotify) or (settings.environments and review.env not in settings.environments):
            continue
        sink = ForgeSink(settings, DeliverySettings(), seen=seen, environ=environ)
        try:
            sink.post(status)
        except DeliveryFailed as exc:
            out.append((sink.name, forge_state(sink.forge, status.state), exc.message))
        else:
            out.append((sink.name, forge_state(sink.forge, status.state), None))
        finally:
            sink.close()
    return out
