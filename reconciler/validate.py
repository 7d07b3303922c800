"""Merge-request checks of flow files: ``reconciler validate``.

:func:`validate_branch` / :func:`validate_paths` / :func:`validate_environments`:
is every flow file usable? JSON syntax, path and identity agree, the JSON Schema
(the environment's ``schema``, else its kind's, else the default), placeholders
every environment can resolve (parameters only: a check has no secrets), the
secret scan, and in the split form its sidecar files (a sidecar no field refers to, a reference to a
missing file or outside the flow's folder, a symlink, non-UTF-8 text; a problem in code names the
sidecar). One :class:`Finding` (``file:pointer: message``) per problem; a
problem seen from several environments is reported once, naming them. Nothing
is changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.canonical import InvalidJSON
from reconciler.flows import FlowInvalid, FlowKey, Identity, looks_like_sql, sql_export
from reconciler.gitform import stored_doc, working_tree_flow
from reconciler.gitstore import GitStore
from reconciler.kinds import kind_problems
from reconciler.names import InvalidName, case_collisions, encode, flow_path, parse_flow_path
from reconciler.remote import REMOTE_PREFIX
from reconciler.scanning import environment_templating
from reconciler.schemas import Validator, schema_for
from reconciler.sidecars import StoredFlow
from reconciler.templating import Templating

if TYPE_CHECKING:
    from reconciler.config import Config, EnvironmentConfig

__all__ = ["Finding", "Validation", "validate_branch", "validate_paths", "validate_environments", "schema_validator",
           "same_branch"]


def schema_validator(env: EnvironmentConfig | None) -> Validator:
    """The schema a flow of ``env`` must satisfy: its own, its kind's, the default."""
    return schema_for(Path(env.schema_) if env is not None and env.schema_ is not None else None,
                      env.driver if env is not None else None)


def same_branch(a: str, b: str) -> bool:
    def strip(x: str) -> str:
        for prefix in ("refs/heads/", REMOTE_PREFIX, "origin/"):
            x = x.removeprefix(prefix)
        return x

    return strip(a) == strip(b)


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


def _check_flow(where: str, stored: StoredFlow, expect: FlowKey | None, contexts: Sequence[_Context], found: _Findings) -> None:
    try:
        doc, refs, problems = stored_doc(stored, where=where, flow=str(expect or ""))
    except InvalidJSON as exc:
        if where.endswith(".sql") or looks_like_sql(stored.json):
            found.add(where, "", sql_export("this file"))
        else:
            found.add(where, exc.pointer, f"{exc}; fix the file's syntax")
        return
    for p in problems:  # the split form: each sidecar problem names its file
        found.add(p.where, p.pointer, p.message)
    if problems:
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
    file = lambda pointer: refs.get(pointer, where)  # noqa: E731 - a finding in code names its sidecar file
    for pointer, message in kind_problems(doc):  # the same in every environment: checked on git's form
        found.add(file(pointer), pointer, message)
    for ctx in contexts:
        rendered = doc
        if ctx.params is not None:
            renderer = Templating(params=ctx.params, keep=(ctx.identity.name, ctx.identity.version))
            rendered, unknown = renderer.render(doc, secrets=False)
            for pointer, name in _unknown_params(unknown):
                found.add(file(pointer), pointer, name, ctx.name, kind="param")
        for pointer, message in ctx.schema(rendered):
            found.add(file(pointer), pointer, f"schema {ctx.schema_name}: {message}", ctx.name)
        for pointer, message in ctx.scanner.scan(doc):
            found.add(file(pointer), pointer, f"secret scan: {message}", ctx.name)


def _unknown_params(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(pointer, parameter name) of the renderer's unknown-parameter problems."""
    return [(pointer, message.split("'")[1]) for pointer, message in problems if message.startswith("unknown parameter")]


def _case_clashes(where: str, folder: str, keys: Iterable[FlowKey], found: _Findings) -> None:
    for first, later in case_collisions(sorted({encode(k.name) for k in keys})):
        found.add(f"{where}{folder}/{later}", "",
                  f"differs only in case from {folder}/{first}; they collide on a case-insensitive checkout: rename one")


def validate_branch(config: Config, store: GitStore, branch: str, *, prefer_remote: bool = False) -> Validation:
    """Every flow on a branch, read from git (no checkout), against the environments owning the branch.

    A branch no environment owns (a merge request's source) is checked against
    every environment.
    """
    commit = store.resolve(branch, prefer=(REMOTE_PREFIX + branch.removeprefix('origin/'),) if prefer_remote else ())
    owners = [e for e in config.environments if same_branch(e.branch_name, branch)]
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
            _check_flow(f"{branch}:{flow_path(folder, key.name, key.version)}", store.flow_files(oid), key, ctxs, found)
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
            files += sorted(f for f in path.rglob("*.json") if f.is_file() and not _in_sidecar_folder(f)
                            and not any(part.startswith(".") for part in f.relative_to(path).parts))
            for orphan in _orphan_folders(path, {c.folder for c in contexts}):
                found.add(f"{orphan}/", "", f"a sidecar folder without its flow: {orphan.name}.json is missing; "
                          "restore it, or delete the folder")
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
            stored = working_tree_flow(f)
        except OSError as exc:
            found.add(where, "", f"cannot read: {exc.strerror}")
            continue
        _check_flow(where, stored, expect, ctxs, found)
    for (parent, folder), keys in by_dir.items():
        prefix = str(parent.parent) + "/" if str(parent.parent) not in ("", ".") else ""
        _case_clashes(prefix, folder, keys, found)
    return Validation("paths", None, tuple(c.name for c in contexts if c.name), len(set(files)), found.result())


def _in_sidecar_folder(f: Path) -> bool:
    """A file in the sidecar folder of a flow (``flows/orders/1/x.template.json`` beside ``1.json``)."""
    return f.parent.with_name(f.parent.name + ".json").is_file()


def _orphan_folders(root: Path, folders: set[str]) -> list[Path]:
    """Folders at a flow's sidecar place (``<folder>/<name>/<version>/``) without their ``<version>.json``."""
    out = []
    for d in sorted(root.rglob("*")):
        if d.is_symlink() or not d.is_dir() or any(part.startswith(".") for part in d.relative_to(root).parts):
            continue
        for folder in folders:
            segs = tuple(folder.split("/"))
            if tuple(d.absolute().parts[-2 - len(segs):-2]) == segs and not d.with_name(d.name + ".json").exists():
                out.append(d)
    return out

