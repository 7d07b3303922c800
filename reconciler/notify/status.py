"""Commit statuses (pure): which events set one, in which state, and each forge's request for it.

A status has a forge-neutral state, mapped to each forge's own names:

=========  ===========================================  ==========  ==========  ========
neutral    when                                          GitHub      GitLab      Gitea
=========  ===========================================  ==========  ==========  ========
running    the commit was seen and is being applied      pending     running     pending
pending    the commit waits (the environment suspended)  pending     pending     pending
success    the environment holds the commit              success     success     success
failure    flows refused, invalid, in conflict, unhealthy  failure   failed      failure
error      the run failed before it could judge the commit error      failed      error
canceled   a newer commit came before this one applied   error       canceled    warning
=========  ===========================================  ==========  ==========  ========

The context is ``flow-reconciler/<env>``, so each environment has its own line
on the commit and a later status of the same environment replaces the earlier.
Within one run the worst state wins (a run that left a conflict and moved the
marker says ``failure``, not ``success``): :data:`RANK`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from reconciler.events import Event

__all__ = ["CommitStatus", "status_of", "superseded", "forge_state", "forge_request", "context_of", "status_link",
           "RANK", "MAX_DESCRIPTION", "AUTH"]

#: GitHub refuses a description over 140 characters (422); the others take more, none needs more
MAX_DESCRIPTION = 140
#: final states by how bad they are: within one run the worst is the one posted
RANK = {"success": 0, "error": 1, "failure": 2}

_STATES = {
    "github": {"running": "pending", "pending": "pending", "success": "success", "failure": "failure",
               "error": "error", "canceled": "error"},
    "gitlab": {"running": "running", "pending": "pending", "success": "success", "failure": "failed",
               "error": "failed", "canceled": "canceled"},
    "gitea": {"running": "pending", "pending": "pending", "success": "success", "failure": "failure",
              "error": "error", "canceled": "warning"},
}
_FAILURES = ("invalid", "conflict", "unhealthy")


@dataclass(frozen=True)
class CommitStatus:
    sha: str
    state: str  # neutral: running | pending | success | failure | error | canceled
    description: str
    context: str
    target_url: str | None = None
    ref: str | None = None  # the branch the commit is on, when known (GitLab attaches the status to its pipeline)

    @property
    def final(self) -> bool:
        return self.state in RANK


def context_of(env: str) -> str:
    return f"flow-reconciler/{env}"


def status_link(public_url: str | None, env: str) -> str | None:
    """The environment's status page under ``[server] public_url``; None without it."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/environments/{quote(env, safe='')}"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def status_of(event: Event) -> CommitStatus | None:
    """The commit status an event sets, or None (no commit, or a kind that says nothing about the commit)."""
    if event.commit is None:
        return None
    if event.kind == "pending":
        state = "running"
    elif event.kind == "suspended":
        state = "pending"
    elif event.kind == "applied":
        state = "success"
    elif event.kind in _FAILURES:
        state = "failure"
    elif event.kind == "failed":
        # Flows refused by the platform are the commit's fault; a run that failed before planning is not.
        state = "failure" if event.flows else "error"
    else:
        return None  # drift, restored (unhealthy said it), resumed (the next run says what happens)
    return CommitStatus(event.commit, state, _short(event.message), context_of(event.environment), event.link,
                        event.extra.get("ref") if isinstance(event.extra.get("ref"), str) else None)


def superseded(old: CommitStatus, new_sha: str) -> CommitStatus:
    """The status that closes ``old`` (still running) when a newer commit is being applied instead."""
    return CommitStatus(old.sha, "canceled", _short(f"superseded by {new_sha[:12]} before it was applied"),
                        old.context, old.target_url, old.ref)


def forge_state(forge: str, state: str) -> str:
    return _STATES[forge][state]


def forge_request(forge: str, repository: str, status: CommitStatus) -> tuple[str, str, dict[str, Any], dict[str, str]]:
    """``(method, path under the API base, JSON body, extra headers)`` of the request setting ``status``.

    GitHub and Gitea: ``POST /repos/{owner}/{repo}/statuses/{sha}`` with state, context,
    description, target_url. GitLab: ``POST /projects/{id}/statuses/{sha}`` (the id, or the
    URL-encoded path ``group%2Fflows``) with state, name, description, target_url, ref.
    """
    state = forge_state(forge, status.state)
    if forge == "gitlab":
        body: dict[str, Any] = {"state": state, "name": status.context, "description": status.description}
        if status.ref:
            body["ref"] = status.ref
        path = f"/projects/{quote(repository, safe='')}/statuses/{status.sha}"
        headers: dict[str, str] = {}
    else:
        owner, _, repo = repository.partition("/")
        body = {"state": state, "context": status.context, "description": status.description}
        path = f"/repos/{quote(owner, safe='')}/{quote(repo, safe='')}/statuses/{status.sha}"
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"} \
            if forge == "github" else {}
    if status.target_url:
        body["target_url"] = status.target_url
    return "POST", path, body, headers


#: how each forge takes its token: (header, scheme)
AUTH = {"github": ("Authorization", "Bearer"), "gitlab": ("PRIVATE-TOKEN", ""), "gitea": ("Authorization", "token")}
