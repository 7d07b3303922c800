"""Merge-request checks: ``reconciler validate`` and ``reconciler plan ENV --against REF``.

Both answer a reviewer's questions before a merge, and change nothing:

- :func:`validate_branch` / :func:`validate_paths`: is every flow file usable?
  JSON syntax, path and identity agree, the JSON Schema (the environment's
  ``schema``, else the schema of the environment's kind of flow, else
  ``manifests/schemas/flow.schema.json``), placeholders every environment can
  resolve, and the secret scan. One :class:`Finding` per problem.
- :func:`plan_against`: what would merging REF into an environment's branch do
  to the environment? The merge is computed in memory (pygit2's
  ``merge_commits``, nothing written), the merged flows are read exactly as the
  engine reads a branch tip (rendered with the environment's parameters and
  secrets), and :func:`reconciler.plan.plan` decides against the environment's
  applied marker and live state as :meth:`Engine.read` sees them. Each flow
  comes with a semantic diff (:mod:`reconciler.semdiff`) of what the merge
  changes in git.

Renderings (text, JSON, markdown for a merge-request comment) live here too.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2

from reconciler.canonical import InvalidJSON, format_pointer, parse_json
from reconciler.config import Config, EnvironmentConfig
from reconciler.engine import Engine
from reconciler.errors import Problem, RetryableError, StallError
from reconciler.flows import CanonicalFlow, FlowInvalid, FlowKey, Identity, read_flow
from reconciler.gitstore import GitStore
from reconciler.names import InvalidName, case_collisions, encode, flow_path, parse_flow_path
from reconciler.plan import Action, Plan, Step, plan
from reconciler.remote import REMOTE_PREFIX, Remote
from reconciler.schemas import Validator, load_validator, schema_for
from reconciler.secretrule import SecretRule
from reconciler.semdiff import DiffItem, diff, render_item, render_value, summary
from reconciler.templating import PLACEHOLDER, Templating

__all__ = [
    "Finding",
    "Validation",
    "validate_branch",
    "validate_paths",
    "validate_environments",
    "FlowReview",
    "Review",
    "plan_against",
    "render_review_text",
    "render_review_markdown",
    "resolve_commit",
    "fetch_remote",
    "environment_templating",
    "read_secrets",
    "schema_validator",
]

# -- shared helpers (also used by reconciler.promote) ------------------------------------


def fetch_remote(config: Config, store: GitStore) -> Remote | None:
    """Fetch from ``[repository] remote`` when one is configured; returns it (None without one)."""
    remote = Remote.from_config(store, config.repository)
    if remote is not None:
        remote.fetch()
    return remote


def resolve_commit(store: GitStore, ref: str, *, prefer_remote: bool = False) -> str:
    """The commit a branch, tag, remote branch, commit id or revision expression names.

    With ``prefer_remote`` a branch name is looked up among the remote's
    branches first (what the git server, and so a merge request, holds).
    """
    candidates: list[str] = []
    short = ref.removeprefix("origin/")
    if prefer_remote:
        candidates.append(REMOTE_PREFIX + short)
    candidates += [ref if ref.startswith("refs/") else f"refs/heads/{ref}", f"refs/tags/{ref}", REMOTE_PREFIX + short]
    try:
        for name in candidates:
            if pygit2.reference_is_valid_name(name):
                tip = store.tip(name)
                if tip is not None:
                    return str(store.repo[pygit2.Oid(hex=tip)].peel(pygit2.Commit).id)
        return str(store.repo.revparse_single(ref).peel(pygit2.Commit).id)
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise StallError(f"{ref!r} is not a branch, tag or commit of {store.path}") from exc


def _same_branch(a: str, b: str) -> bool:
    def strip(x: str) -> str:
        for prefix in ("refs/heads/", REMOTE_PREFIX, "origin/"):
            x = x.removeprefix(prefix)
        return x

    return strip(a) == strip(b)


def read_secrets(env: EnvironmentConfig) -> dict[str, str]:
    """The environment's secret values where this machine has them (none is fine: CI has none).

    Used only to search flows for those values; they are never printed.
    """
    return env.load_secrets(strict=False)


def environment_templating(envs: Iterable[EnvironmentConfig], *, with_secrets: bool = True) -> Templating:
    """A scanner for the secret fields and secret values of several environments at once."""
    envs = list(envs)
    secrets: dict[str, str] = {}
    pointers: list[str] = []
    keys: list[str] = []
    allow: list[str] | None = None
    for env in envs:
        if with_secrets:
            for name, value in read_secrets(env).items():
                # Only names appear in messages; qualify them when several environments are scanned.
                secrets[name if len(envs) == 1 else f"{env.name}:{name}"] = value
        pointers += [p for p in env.secret_fields if p not in pointers]
        keys += [k for k in env.secret_keys if k not in keys]
        # A field is let through only where every environment allows it.
        allow = list(env.secret_allow) if allow is None else [p for p in allow if p in env.secret_allow]
    kwargs: dict[str, Any] = {"secrets": secrets, "secret_pointers": tuple(pointers), "secret_allow": tuple(allow or ())}
    if keys:
        kwargs["secret_keys"] = tuple(keys)
    return Templating(**kwargs)


def schema_validator(env: EnvironmentConfig | None) -> Validator:
    """The schema a flow of ``env`` must satisfy: its own, its kind's, the default."""
    return schema_for(Path(env.schema_) if env is not None and env.schema_ is not None else None,
                      env.driver if env is not None else None)


# -- validate -------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One problem in one file: ``file:pointer: message``."""

    file: str
    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.pointer}: {self.message}" if self.pointer else f"{self.file}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "pointer": self.pointer, "message": self.message}


@dataclass(frozen=True)
class Validation:
    """What ``validate`` checked and found."""

    target: str  # a branch, or "paths"
    commit: str | None
    environments: tuple[str, ...]  # whose settings the flows were checked against
    files: int
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "commit": self.commit,
            "environments": list(self.environments),
            "files": self.files,
            "ok": self.ok,
            "problems": [f.as_dict() for f in self.findings],
        }


@dataclass(frozen=True)
class _Context:
    """One environment's view of a flow file (or the defaults when the config has none)."""

    name: str
    folder: str
    identity: Identity
    params: Mapping[str, str] | None  # None: placeholders are not checked
    schema_name: str
    schema: Callable[[Any], list[tuple[str, str]]]
    scanner: Templating


def _contexts(envs: Sequence[EnvironmentConfig]) -> list[_Context]:
    cache: dict[tuple[Any, Any], Validator] = {}
    out = []
    for env in envs or [None]:
        which = (env.schema_, env.driver) if env is not None else (None, None)
        if which not in cache:
            cache[which] = schema_validator(env)
        name, check = cache[which].name, cache[which]
        if env is None:
            out.append(_Context("", "flows", Identity(), None, name, check, Templating()))
        else:
            out.append(_Context(env.name, env.folder, env.flow_identity, dict(env.params), name, check,
                                environment_templating([env])))
    return out


class _Findings:
    """Collects problems; one seen from several environments is reported once."""

    def __init__(self, contexts: Sequence[_Context]):
        self.all = [c.name for c in contexts]
        self._seen: dict[tuple[str, str, str, str], list[str]] = {}

    def add(self, file: str, pointer: str, message: str, env: str | None = None, kind: str = "") -> None:
        envs = self._seen.setdefault((file, pointer, kind, message), [])
        if env is not None and env not in envs:
            envs.append(env)

    def result(self) -> tuple[Finding, ...]:
        out = []
        for (file, pointer, kind, message), envs in self._seen.items():
            if kind == "param":
                message = f"unknown parameter {message!r}: add it to the params of {', '.join(envs)}"
            elif envs and len(self.all) > 1 and len(envs) < len(self.all):
                message += f" (in {', '.join(envs)})"
            out.append(Finding(file, pointer, message))
        return tuple(sorted(out, key=lambda f: (f.file, f.pointer, f.message)))


def _render_params(doc: Any, params: Mapping[str, str], keep: tuple[str, ...]) -> tuple[Any, list[tuple[str, str]]]:
    """``${param:NAME}`` substituted; unknown names as (pointer, name). Secrets are left as they are."""
    unknown: list[tuple[str, str]] = []

    def walk(node: Any, path: list[Any]) -> Any:
        if isinstance(node, str):
            if "${" not in node or format_pointer(path) in keep:
                return node

            def one(m: re.Match[str]) -> str:
                if m.group(1) != "param":
                    return m.group(0)
                if m.group(2) in params:
                    return params[m.group(2)]
                unknown.append((format_pointer(path), m.group(2)))
                return m.group(0)

            return PLACEHOLDER.sub(one, node)
        if isinstance(node, dict):
            return {k: walk(v, [*path, k]) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, [*path, i]) for i, v in enumerate(node)]
        return node

    return walk(doc, []), unknown


def _check_flow(where: str, raw: bytes, expect: FlowKey | None, contexts: Sequence[_Context], found: _Findings) -> None:
    try:
        doc = parse_json(raw)
    except InvalidJSON as exc:
        found.add(where, exc.pointer, f"{exc}; fix the file's syntax")
        return
    for identity in dict.fromkeys(c.identity for c in contexts):
        try:
            key = identity.key_of(doc)
        except FlowInvalid as exc:
            found.add(where, exc.pointer, str(exc))
            continue
        if expect is not None and key != expect:
            pointer = identity.name if key.name != expect.name else identity.version
            found.add(where, pointer, f"the flow says it is {key} but its path says {expect}; move the file or fix the field")
    for ctx in contexts:
        rendered = doc
        if ctx.params is not None:
            rendered, unknown = _render_params(doc, ctx.params, (ctx.identity.name, ctx.identity.version))
            for pointer, name in unknown:
                found.add(where, pointer, name, ctx.name, kind="param")
        for pointer, message in ctx.schema(rendered):
            found.add(where, pointer, f"schema {ctx.schema_name}: {message}", ctx.name)
        for pointer, message in ctx.scanner.scan(doc):
            found.add(where, pointer, f"secret scan: {message}", ctx.name)


def _case_clashes(where: str, folder: str, keys: Iterable[FlowKey], found: _Findings) -> None:
    for first, later in case_collisions(sorted({encode(k.name) for k in keys})):
        found.add(f"{where}{folder}/{later}", "",
                  f"differs only in case from {folder}/{first}; they collide on a case-insensitive checkout: rename one")


def validate_branch(config: Config, store: GitStore, branch: str, *, prefer_remote: bool = False) -> Validation:
    """Every flow on a branch, read from git (no checkout), against the environments owning the branch.

    A branch no environment owns (a merge request's source) is checked against
    every environment.
    """
    commit = resolve_commit(store, branch, prefer_remote=prefer_remote)
    owners = [e for e in config.environments if _same_branch(e.branch_name, branch)]
    contexts = _contexts(owners or list(config.environments))
    found = _Findings(contexts)
    files = 0
    for folder in dict.fromkeys(c.folder for c in contexts):
        ctxs = [c for c in contexts if c.folder == folder]
        tree = store.flows_at(commit, folder)
        if tree.missing is not None and tree.missing != "absent":
            found.add(f"{branch}:{folder}", "", f"{folder} is {tree.missing}, not a folder of flows; a sync stops here "
                      f"(put the flows back at {folder}/<name>/<version>.json)")
        elif tree.missing == "absent" and not any(e.allow_empty for e in owners):
            found.add(f"{branch}:{folder}", "", f"the branch has no {folder}/ folder: a sync would delete every flow, "
                      "and stops instead unless the environment has allow_empty = true")
        for p in tree.problems:
            found.add(f"{branch}:{p.where}", p.pointer, p.message)
        _case_clashes(f"{branch}:", folder, tree.flows, found)
        for key, oid in sorted(tree.flows.items()):
            files += 1
            _check_flow(f"{branch}:{flow_path(folder, key.name, key.version)}", store.read_blob(oid), key, ctxs, found)
    return Validation(branch, commit, tuple(c.name for c in contexts if c.name), files, found.result())


def validate_environments(config: Config, store: GitStore) -> list[Validation]:
    """Every environment's branch (each branch once)."""
    out = []
    for branch in dict.fromkeys(e.branch_name for e in config.environments):
        if store.tip(branch) is None:
            continue
        out.append(validate_branch(config, store, branch))
    return out


def validate_paths(config: Config, paths: Sequence[str]) -> Validation:
    """Flow files in a working tree (a merge request's checkout), against every environment.

    A folder is searched for ``*.json`` files (hidden folders skipped). A file
    must sit at ``<folder>/<name>/<version>.json`` for some environment's
    ``folder``; a placeholder is reported for each environment lacking it.
    """
    contexts = _contexts(list(config.environments))
    found = _Findings(contexts)
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files += sorted(f for f in path.rglob("*.json")
                            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts))
        elif path.is_file():
            files.append(path)
        else:
            found.add(p, "", "no such file or folder")
    folders = {c.folder for c in contexts}
    by_dir: dict[tuple[Path, str], list[FlowKey]] = {}
    for f in dict.fromkeys(files):
        where = str(f)
        parts = f.absolute().parts
        ctxs = [c for c in contexts if tuple(parts[-2 - len(c.folder.split("/")):-2]) == tuple(c.folder.split("/"))]
        expect = None
        if not ctxs:
            hint = " or ".join(f"{d}/<name>/<version>.json" for d in sorted(folders))
            found.add(where, "", f"not a flow path: flows live at {hint}")
            ctxs = contexts
        else:
            try:
                expect = FlowKey(*parse_flow_path(f"{f.parent.name}/{f.name}"))
            except InvalidName as exc:
                found.add(where, "", f"not a flow path ({exc}); expected {ctxs[0].folder}/<name>/<version>.json")
            else:
                by_dir.setdefault((f.parent.parent, ctxs[0].folder), []).append(expect)
        try:
            raw = f.read_bytes()
        except OSError as exc:
            found.add(where, "", f"cannot read: {exc.strerror}")
            continue
        _check_flow(where, raw, expect, ctxs, found)
    for (parent, folder), keys in by_dir.items():
        prefix = str(parent.parent) + "/" if str(parent.parent) not in ("", ".") else ""
        _case_clashes(prefix, folder, keys, found)
    return Validation("paths", None, tuple(c.name for c in contexts if c.name), len(set(files)), found.result())


# -- plan --against -------------------------------------------------------------------


@dataclass(frozen=True)
class FlowReview:
    """One flow a merge touches or the environment would act on."""

    key: FlowKey
    git: str  # what the merge does to the branch: added | changed | removed | unchanged
    step: Step | None
    diff: tuple[DiffItem, ...] = ()
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow": str(self.key),
            "name": self.key.name,
            "version": self.key.version,
            "git": self.git,
            "action": self.step.action.value if self.step else "none",
            "state": self.step.state.value if self.step else "in_sync",
            "reason": self.step.reason if self.step else "in sync",
            "summary": summary(self.diff) if self.git != "unchanged" else "",
            "diff": [d.as_dict() for d in self.diff],
            "note": self.note,
        }


@dataclass(frozen=True)
class Review:
    """What merging ``against`` into an environment's branch would do."""

    env: str
    branch: str
    tip: str | None
    against: str
    against_commit: str
    marker: str | None = None
    conflicts: tuple[str, ...] = ()
    plan: Plan | None = None
    flows: tuple[FlowReview, ...] = ()
    problems: tuple[Problem, ...] = ()

    @property
    def errors(self) -> bool:
        return bool(self.conflicts or self.problems) or any(
            s.action == Action.INVALID for s in (self.plan.steps if self.plan else ())
        )

    @property
    def pending(self) -> bool:
        return self.plan is not None and any(s.action != Action.NONE for s in self.plan.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.env,
            "branch": self.branch,
            "branch_tip": self.tip,
            "applied": self.marker,
            "against": self.against,
            "against_commit": self.against_commit,
            "conflicts": list(self.conflicts),
            "counts": self.plan.counts() if self.plan else None,
            "flows": [f.as_dict() for f in self.flows],
            "problems": [p.as_dict() for p in self.problems],
        }


def plan_against(engine: Engine, name: str, ref: str) -> Review:
    """The review of merging ``ref`` into environment ``name``'s branch. Changes nothing in git or the platform.

    With a remote, the remote is fetched first and, unless a service is
    reconciling the environment right now, the local branch is brought up to
    the remote's as the service would.
    """
    config, store = engine.config, engine.store
    env = config.env(name)
    remote = fetch_remote(config, store)
    if remote is not None:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(store.lock(env.name))
            except RetryableError:
                pass  # a running service holds the lock and keeps the branch current itself
            else:
                remote.integrate(env.name, env.branch_name)
    against = resolve_commit(store, ref, prefer_remote=remote is not None)
    snap = engine.read(env)
    merged, stray, conflicts = _merge(store, snap.tip, against, env.folder)
    if conflicts:
        return Review(env.name, env.branch_name, snap.tip, ref, against, snap.marker, conflicts=conflicts)
    validate = load_validator(Path(env.schema_)) if env.schema_ is not None else None
    desired: dict[FlowKey, str] = {}
    invalid: dict[FlowKey, str] = {}
    problems: list[Problem] = list(stray)
    at_tip = snap.desired_ids
    for key, oid in merged.items():
        if snap.tip_blobs.get(key) == oid and key in at_tip and key not in snap.invalid:
            desired[key] = at_tip[key]  # the tip's own file: the engine already read it
            continue
        where = f"{ref}:{flow_path(env.folder, key.name, key.version)}"
        raw = store.read_blob(oid)
        got = read_flow(raw, env.flow_identity, env.rules, where=where, expect=key,
                        validate=validate, render=snap.templating.renderer(raw))
        if isinstance(got, CanonicalFlow):
            desired[key] = got.oid
        else:
            desired[key], invalid[key] = oid, f"invalid in git: {got.message}"
            problems.append(got)
    for key, reason in snap.live.invalid.items():
        invalid.setdefault(key, f"invalid in the environment: {reason}")
    problems += snap.live.problems
    p = plan(snap.base_ids, desired, snap.live.oids(), env.policy, invalid=invalid, live_complete=snap.live.complete)
    steps = {s.key: s for s in p.steps}
    secret = SecretRule(tuple(env.secret_keys), tuple(env.secret_fields), tuple(env.secret_allow))
    flows = []
    before = snap.tip_blobs
    for key in sorted(set(before) | set(merged)):
        old, new = before.get(key), merged.get(key)
        step = steps.get(key)
        if old == new and (step is None or step.action == Action.NONE):
            continue
        git = "unchanged" if old == new else "added" if old is None else "removed" if new is None else "changed"
        items: tuple[DiffItem, ...] = ()
        note = ""
        if old != new:
            try:
                items = diff(_doc(store, old), _doc(store, new), secret=secret)
            except InvalidJSON:
                note = "not valid JSON on one side; no semantic diff"
        flows.append(FlowReview(key, git, step, items, note))
    for key, step in sorted(steps.items()):
        if key not in before and key not in merged and step.action != Action.NONE:
            flows.append(FlowReview(key, "unchanged", step))  # only in the environment (drift)
    return Review(env.name, env.branch_name, snap.tip, ref, against, snap.marker, (), p,
                  tuple(sorted(flows, key=lambda f: f.key)), tuple(problems))


def _doc(store: GitStore, oid: str | None) -> Any:
    return None if oid is None else parse_json(store.read_blob(oid))


def _merge(store: GitStore, tip: str | None, against: str, folder: str):
    """(key -> blob id, problems, conflicting paths) of the merge of ``against`` into ``tip``, in memory."""
    if tip is None or store.is_ancestor(tip, against):
        tree = store.flows_at(against, folder)  # a fast-forward
        return dict(tree.flows), tree.problems, ()
    if store.is_ancestor(against, tip):
        tree = store.flows_at(tip, folder)  # already merged
        return dict(tree.flows), tree.problems, ()
    try:
        index = store.repo.merge_commits(pygit2.Oid(hex=tip), pygit2.Oid(hex=against))
        if index.conflicts is not None:
            paths = sorted({next(e for e in entries if e is not None).path for entries in index.conflicts})
            return {}, (), tuple(paths)
        entries = [(e.path, str(e.id)) for e in index]
    except pygit2.GitError as exc:
        raise RetryableError(f"cannot merge {against[:12]} into {tip[:12]} in {store.path}: {exc}") from exc
    flows: dict[FlowKey, str] = {}
    problems: list[Problem] = []
    for path, oid in entries:
        if not path.startswith(folder + "/"):
            continue
        try:
            flows[FlowKey(*parse_flow_path(path[len(folder) + 1:]))] = oid
        except InvalidName as exc:
            problems.append(Problem(path, f"not a flow path ({exc}); expected {folder}/<name>/<version>.json"))
    return flows, tuple(problems), ()


# -- renderings -----------------------------------------------------------------------

_VERB = {
    Action.NONE: "none", Action.IMPORT: "import", Action.DELETE: "delete", Action.ADOPT: "adopt",
    Action.ADVANCE: "agree", Action.REPORT: "drifted", Action.BLOCKED: "blocked", Action.CONFLICT: "CONFLICT",
    Action.INVALID: "INVALID", Action.UNKNOWN: "unknown",
}


def _headline(r: Review) -> str:
    tip = r.tip[:12] if r.tip else "(no branch yet)"
    return f"{r.env}: merging {r.against} ({r.against_commit[:12]}) into {r.branch} ({tip})"


def render_review_text(r: Review) -> list[str]:
    lines = [_headline(r)]
    if r.conflicts:
        lines.append("  the merge conflicts; resolve these files first:")
        lines += [f"    {p}" for p in r.conflicts]
        return lines
    assert r.plan is not None
    c = r.plan.counts()
    lines.append(f"  in sync {c['in_sync']} · pending {c['pending']} · drifted {c['drifted']} · "
                 f"conflict {c['conflict']} · invalid {c['invalid']}")
    if not r.flows:
        lines.append("  nothing would change")
    for f in r.flows:
        action = _VERB[f.step.action] if f.step else "none"
        reason = f.step.reason if f.step else "in sync"
        lines.append(f"  {action:<8} {f.key}  {reason}  [git: {f.git}]")
        if f.git != "unchanged":
            lines.append(f"      {summary(f.diff)}")
            lines += [f"      {render_item(i)}" for i in f.diff]
        if f.note:
            lines.append(f"      ({f.note})")
    lines += [f"  ! {p}" for p in r.problems]
    return lines


def _cell(text: str) -> str:
    return html.escape(text).replace("|", "&#124;").replace("\n", " ")


def _fence(body: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


def render_review_markdown(r: Review) -> str:
    """A merge-request comment: a table of flows and a collapsible semantic diff per flow."""
    tip = f"`{r.tip[:12]}`" if r.tip else "(no branch yet)"
    out = [f"### reconciler plan {_cell(r.env)} --against {_cell(r.against)}", "",
           f"Merging <code>{_cell(r.against)}</code> (`{r.against_commit[:12]}`) into "
           f"<code>{_cell(r.branch)}</code> ({tip}) would do this to **{_cell(r.env)}**:", ""]
    if r.conflicts:
        out += [":x: **The merge conflicts.** Resolve these files first:", ""]
        out += [f"- `{_cell(p)}`" for p in r.conflicts]
        return "\n".join(out) + "\n"
    assert r.plan is not None
    c = r.plan.counts()
    if not r.flows:
        out.append(":white_check_mark: Nothing would change in the environment.")
    else:
        verdict = ":x: Some flows are invalid." if r.errors else ":arrow_right: Merging changes the environment as below."
        out += [verdict, "", "| Flow | In git | Action | Why |", "|---|---|---|---|"]
        for f in r.flows:
            action = _VERB[f.step.action] if f.step else "none"
            reason = f.step.reason if f.step else "in sync"
            out.append(f"| <code>{_cell(str(f.key))}</code> | {f.git} | **{action}** | {_cell(reason)} |")
        out.append("")
        for f in r.flows:
            if f.git == "unchanged":
                continue
            lines = []
            for i in f.diff:
                if i.op == "change":
                    where = i.pointer + (f" ({i.node})" if i.node else "")
                    lines += [f"- {where}: {render_value(i.old)}", f"+ {where}: {render_value(i.new)}"]
                else:
                    lines.append(render_item(i))
            if f.note:
                lines.append(f"# {f.note}")
            body = "\n".join(lines)
            fence = _fence(body)
            out += [f"<details><summary><code>{_cell(str(f.key))}</code>: {_cell(summary(f.diff))}</summary>", "",
                    f"{fence}diff", body, fence, "", "</details>", ""]
    out.append(f"<sub>in sync {c['in_sync']} · pending {c['pending']} · drifted {c['drifted']} · "
               f"conflict {c['conflict']} · invalid {c['invalid']}</sub>")
    if r.problems:
        out += ["", "**Problems**", ""] + [f"- `{_cell(str(p))}`" for p in r.problems]
    return "\n".join(out) + "\n"
