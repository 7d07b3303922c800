"""What a flow's page shows, as plain data: the flow as git holds it (placeholders, secret fields masked),
its history, the semantic diff between any two of its commits, and, when it is drifted or in conflict,
what differs right now between git and the environment.

Both diffs are :func:`reconciler.semdiff.diff` (the one ``plan --against`` uses), shaped by
:mod:`reconciler.web.diffview`. The environment's side of the live diff has its known secrets put back
as ``${secret:NAME}`` (:meth:`Templating.templatize`) and git's side its parameters rendered, so the
diff speaks git's language and neither side ever shows a secret value; the service's redactor masks
whatever might still slip through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from reconciler.canonical import InvalidJSON, parse_json
from reconciler.config import EnvironmentConfig
from reconciler.errors import Problem, ReconcilerError
from reconciler.codefields import layout_patterns
from reconciler.flows import FlowKey
from reconciler.gitform import Unreadable, stored_doc
from reconciler.gitstore import GitStore
from reconciler.names import flow_path
from reconciler.scanning import environment_templating
from reconciler.secretrule import SecretRule
from reconciler.semdiff import diff, masked
from reconciler.sidecars import read_stored, sidecar_folder
from reconciler.templating import Templating

from .diffview import DiffView, diff_view
from .views import GitReader, commit_row, flow_rows, flow_url

if TYPE_CHECKING:
    from reconciler.service import Service

__all__ = ["FlowPage", "flow_page"]

_COMMIT = re.compile(r"[0-9a-f]{40}")
HISTORY = 50


@dataclass(frozen=True)
class FlowPage:
    env: str
    name: str
    version: str
    url: str
    row: dict[str, Any] | None  # state, action, reason, applied, error (None before the first run)
    path: str
    document: str | None  # pretty JSON as git holds it, secret fields masked; None when not in git
    history: list[dict[str, Any]]
    compare: tuple[str, str] | None  # (from, to) commit ids of the diff shown
    diff: DiffView | None
    live: DiffView | None  # git -> the environment, for a drifted flow or a conflict
    live_note: str
    problem: str


def _doc(store: GitStore, commit: str | None, env: EnvironmentConfig, key: FlowKey, path: str) -> tuple[Any, dict[str, str]]:
    """The flow's whole document at ``commit`` (its sidecars joined; None when it has no file there), and
    pointer -> the sidecar file of each code field."""
    entry = store.entry_at(commit, env.folder, key) if commit else None
    if entry is None:
        return None, {}
    doc, refs, problems = stored_doc(store.flow_files(entry), where=path, flow=str(key))
    if problems:
        raise Unreadable(problems[0])
    return doc, refs


def _diff(env: EnvironmentConfig, before: tuple[Any, dict[str, str]], after: tuple[Any, dict[str, str]]) -> DiffView:
    docs = (before[0], after[0])
    return diff_view(diff(*docs, secret=_rule(env), layout=layout_patterns(docs, env.declarations()),
                          code={**before[1], **after[1]}))


def _rule(env: EnvironmentConfig) -> SecretRule:
    return environment_templating([env], with_secrets=False).rule


def _pretty(doc: Any, env: EnvironmentConfig) -> str:
    shown = masked(doc, secret=_rule(env))
    return orjson.dumps(shown, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def _pick(given: tuple[str, str], newest: str | None, older: str | None) -> tuple[str | None, str | None]:
    """(to, from): the commits asked for (no ``from``: the flow's start), else the flow's last change."""
    if not _COMMIT.fullmatch(given[1] or ""):
        return newest, older
    return given[1], given[0] if _COMMIT.fullmatch(given[0] or "") else None


def _live_diff(svc: "Service", store: GitStore, env: EnvironmentConfig, key: FlowKey, path: str,
               tip: str | None) -> tuple[DiffView | None, str]:
    """git's version (parameters rendered, canonical) against the environment's (secrets templatized)."""
    rule = environment_templating([env])
    oid = store.entry_at(tip, env.folder, key) if tip else None
    git_doc = None
    if oid is not None:
        params = Templating(params=dict(env.params), keep=(env.identity.name, env.identity.version))
        got = read_stored(store.flow_files(oid), env.flow_identity, env.rules, where=path,
                          render=partial(params.render, secrets=False))
        if isinstance(got, Problem):
            return None, f"git's version cannot be read: {got.message}"
        git_doc = parse_json(got.data or b"null")
    try:
        live = svc.live_flow(env.name, key)
    except ReconcilerError as exc:
        return None, f"the environment cannot be read now: {exc}"
    live_doc = None
    if live is not None and live.data is not None:
        live_doc, _ = replace(rule, keep=(env.identity.name, env.identity.version)).templatize(parse_json(live.data))
    if git_doc is None and live_doc is None:
        return None, "neither git nor the environment holds this flow now"
    docs = (git_doc, live_doc)
    return diff_view(diff(*docs, secret=rule.rule, layout=layout_patterns(docs, env.declarations()))), ""


def flow_page(svc: "Service", reader: GitReader, env_name: str, key: FlowKey, given: tuple[str, str]) -> FlowPage | None:
    """A flow's page; None when the service does not handle the environment. ``given``: the (from, to)
    commits asked for (else the flow's last change)."""
    env = next((e for e in svc.owned_envs() if e.name == env_name), None)
    if env is None:
        return None
    now = svc.wall()
    rows, _ = flow_rows(svc, env_name)
    row = next((r for r in rows if (r["name"], r["version"]) == key), None)
    path = flow_path(env.folder, key.name, key.version)
    document = None
    history: list[dict[str, Any]] = []
    compare = None
    shown = live = None
    note = problem = ""
    try:
        with reader.store() as store:
            tip = store.tip(env.branch_name)
            current, _ = _doc(store, tip, env, key, path)
            document = None if current is None else _pretty(current, env)
            paths = (path, sidecar_folder(path))  # the flow's JSON and its sidecar folder
            history = [commit_row(c, now) for c in store.history(env.branch_name, paths, limit=HISTORY)]
            newest = history[0]["id"] if history else None
            older = history[1]["id"] if len(history) > 1 else None
            to, since = _pick(given, newest, older)
            if to is not None:
                compare = (since or "", to)
                before = _doc(store, since, env, key, path) if since else (None, {})
                shown = _diff(env, before, _doc(store, to, env, key, path))
            if row is not None and row["state"] in ("drifted", "conflict"):
                live, note = _live_diff(svc, store, env, key, path, tip)
    except InvalidJSON as exc:
        problem = f"not valid JSON at one of these commits, so there is no semantic diff: {exc}"
    except Unreadable as exc:
        problem = f"cannot be read whole at one of these commits, so there is no semantic diff: {exc}"
    except ReconcilerError as exc:
        problem = str(exc)
    return FlowPage(env_name, key.name, key.version, flow_url(env_name, key.name, key.version), row, path,
                    document, history, compare, shown, live, note, problem)
