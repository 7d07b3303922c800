"""What the overview and an environment's page show, as plain data for the templates (no HTML here).

The status comes from the service (:meth:`Service.status`, the last outcome of each environment);
commits come from the page's own handle on the repository (:class:`GitReader`): a libgit2 handle is
never shared between threads, so one handle behind a lock serves every page.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from reconciler.errors import ReconcilerError
from reconciler.gitstore import CommitInfo, GitStore
from reconciler.names import InvalidName, encode
from reconciler.plan import State, Step

if TYPE_CHECKING:
    from reconciler.config import Config
    from reconciler.service import Service

__all__ = ["GitReader", "STATES", "ago", "flow_url", "env_url", "overview", "environment", "commit_row",
           "flow_rows"]

#: the states a flow can be in, in the order pages show them
STATES = tuple(s.value for s in State)
#: states that need a person to look
ATTENTION = ("drifted", "conflict", "invalid", "quarantined")
HISTORY = 20


class GitReader:
    """The pages' one repository handle, opened on first use and used under a lock."""

    def __init__(self, config: "Config"):
        self._config = config
        self._lock = threading.Lock()
        self._store: GitStore | None = None

    @contextmanager
    def store(self) -> Iterator[GitStore]:
        with self._lock:
            if self._store is None:
                self._store = GitStore.from_config(self._config.repository)
            self._store.ensure_present()
            yield self._store


def ago(seconds: float | None) -> str:
    """``12 s ago``, ``3 min ago``, ``5 h ago``, ``2 d ago``; ``in 20 s`` for a time to come."""
    if seconds is None:
        return ""
    future, s = seconds < 0, abs(seconds)
    text = (f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.0f} h" if s < 129600
            else f"{s / 86400:.0f} d")
    return f"in {text}" if future else f"{text} ago"


def env_url(env: str) -> str:
    return f"/environments/{quote(env, safe='')}"


def flow_url(env: str, name: str, version: str) -> str:
    """A flow's page: its name and version encoded as in git (:func:`reconciler.names.encode`, so ``..``
    or ``a/b`` can never be read as a path), then percent-quoted."""
    try:
        name, version = encode(name), encode(version)
    except InvalidName:  # too long to be in git: an address that says so when followed
        name, version = quote(name, safe=""), quote(version, safe="")
    return f"{env_url(env)}/flows/{quote(name, safe='~')}/{quote(version, safe='~')}"


def _stamp(epoch: float | None, now: float) -> dict[str, str] | None:
    if epoch is None:
        return None
    iso = datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")
    return {"iso": iso, "ago": ago(now - epoch)}


def _iso_epoch(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def commit_row(info: CommitInfo, now: float) -> dict[str, Any]:
    subject, _, body = info.message.partition("\n")
    return {"id": info.id, "short": info.id[:10], "subject": subject, "body": body.strip(), "author": info.author,
            "when": _stamp(info.time, now)}


def _commit(store: GitStore, commit: str | None, now: float) -> dict[str, Any] | None:
    return commit_row(store.commit_info(commit), now) if commit else None


def _attention(st: dict[str, Any]) -> list[str]:
    """Why an environment needs a person (empty when it does not)."""
    counts = st.get("counts") or {}
    why = [f"{counts[s]} {s.replace('_', ' ')}" for s in ATTENTION if counts.get(s)]
    if st.get("result") == "error":
        why.append("the last run stopped with an error")
    elif st.get("result") == "retry":
        why.append(f"retrying after {st.get('failures')} failure(s)")
    if st.get("rewritten"):
        why.append("the branch was rewritten on the server")
    return why


def _env_summary(store: GitStore | None, st: dict[str, Any], now: float) -> dict[str, Any]:
    name = st["name"]
    tip = applied = None
    git_error = ""
    if store is not None:
        try:
            tip = _commit(store, st.get("branch_tip"), now)
            applied = _commit(store, st.get("applied"), now)
        except ReconcilerError as exc:
            git_error = str(exc)
    error = st.get("error") or ""
    return {
        "name": name, "url": env_url(name), "branch": st["branch"], "tip": tip, "applied": applied,
        "counts": [(s, (st.get("counts") or {}).get(s, 0)) for s in STATES],
        "reconciled": st.get("runs", 0) > 0, "result": st.get("result"), "error": error.splitlines()[0] if error else "",
        "running": st.get("running"), "retry_in": st.get("retry_in"), "git_error": git_error,
        "last_run": _stamp(_iso_epoch(st.get("last_run")), now),
        "next_check": _stamp(_iso_epoch(st.get("next_check")), now),
        "attention": _attention(st),
        "held": _held(st),
    }


def _held(st: dict[str, Any]) -> str:
    """Why nothing is applied now ('' when it is): a suspension, or a closed sync window and its opening."""
    if st.get("suspended"):
        return str(st["suspended"])
    window = st.get("window")
    if window and not window.get("open"):
        return f"sync window: {window.get('why')}" + (f"; it opens {window['opens']}" if window.get("opens") else "")
    return ""


def overview(svc: "Service", reader: GitReader) -> dict[str, Any]:
    """Every environment: branch tip, applied marker, counts, last result, next check, what needs a person."""
    now = svc.wall()
    status = svc.status()
    try:
        with reader.store() as store:
            envs = [_env_summary(store, st, now) for st in status["environments"]]
        problem = ""
    except ReconcilerError as exc:
        envs = [_env_summary(None, st, now) for st in status["environments"]]
        problem = str(exc)
    return {"envs": envs, "shard": status["shard"], "problem": problem,
            "attention": [e for e in envs if e["attention"]]}


def _state_of(step: Step, done: set, dry: bool) -> str:
    if step.key in done and not dry:
        return State.IN_SYNC.value
    return step.state.value


def flow_rows(svc: "Service", env: str) -> tuple[list[dict[str, Any]], bool]:
    """Every flow of the last outcome with its state, what the applied marker holds and the first line of
    any error; (rows, False) with no state when the environment was not reconciled yet."""
    out = svc.last_outcome(env)
    if out is None:
        return [], False
    done = {s.key for s in out.done}
    problems = {p.flow: p.message for p in out.problems if p.flow}
    rows = []
    for s in out.plan.steps:
        state = _state_of(s, done, out.dry_run)
        base = s.next_base if s.key in done else s.base  # what the applied marker holds now
        applied = "none" if base is None else "git" if base == s.desired else "older"
        error = out.failed.get(s.key) or out.quarantined.get(s.key) or problems.get(str(s.key)) or (
            s.reason if state in ("conflict", "invalid", "quarantined") else "")
        rows.append({"name": s.key.name, "version": s.key.version, "url": flow_url(env, s.key.name, s.key.version),
                     "state": state, "action": s.action.value, "reason": s.reason, "applied": applied,
                     "error": error.splitlines()[0] if error else ""})
    return rows, True


@dataclass(frozen=True)
class EnvPage:
    summary: dict[str, Any]
    flows: list[dict[str, Any]]
    reconciled: bool
    filters: list[tuple[str, int]]
    state: str
    history: list[dict[str, Any]]
    drift: list[dict[str, Any]]
    problem: str


def environment(svc: "Service", reader: GitReader, env: str, state: str = "") -> EnvPage | None:
    """One environment's page; None when the service does not handle it."""
    status = next((st for st in svc.status()["environments"] if st["name"] == env), None)
    if status is None:
        return None
    now = svc.wall()
    rows, reconciled = flow_rows(svc, env)
    filters = [(s, sum(1 for r in rows if r["state"] == s)) for s in STATES]
    shown = [r for r in rows if not state or r["state"] == state]
    history: list[dict[str, Any]] = []
    drift: list[dict[str, Any]] = []
    problem = ""
    try:
        with reader.store() as store:
            summary = _env_summary(store, status, now)
            history = [commit_row(c, now) for c in store.history(status["branch"], limit=HISTORY)]
            drift = [commit_row(c, now) for c in store.history(f"drift/{env}", limit=HISTORY)]
    except ReconcilerError as exc:
        summary = _env_summary(None, status, now)
        problem = str(exc)
    return EnvPage(summary, shown, reconciled, filters, state, history, drift, problem)
