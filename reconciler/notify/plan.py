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

from .settingsbase import DeliverySettings, ForgeMethods
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
                     environ: Mapping[str, str] | None = None) -> tuple[list[str], bool]:
    """Post the review's status through each forge sink for its environment.

    Returns the lines that say what was done (for stderr) and False when a status could not be set.
    """
    status = plan_status(review, status_link(config.server.public_url, review.env))
    lines, ok = [], True
    for settings in config.notify:
        if not isinstance(settings, ForgeMethods) or (settings.environments and review.env not in settings.environments):
            continue
        sink = ForgeSink(settings, DeliverySettings(), seen=seen, environ=environ)
        done = (f"{forge_state(sink.forge, status.state)} ({status.context}) on {status.sha[:12]} "
                f"by notify {sink.name!r}")
        try:
            sink.post(status)
        except DeliveryFailed as exc:
            lines.append(f"reconciler: error: could not set commit status {done}: {exc.message}")
            ok = False
        else:
            lines.append(f"commit status {done}")
        finally:
            sink.close()
    if not lines:
        lines.append(f"reconciler plan: --status: no github, gitlab or gitea [[notify]] for {review.env} in "
                     f"{config.source}; no commit status set")
    return lines, ok
