"""A flow between an environment and git's form of it: read from git whole, written to git split.

The one home of the rule every reader and writer follows (the engine, apply, promote, rollback,
review, validate, migrate, the status page):

- :func:`read_git_flow`: a flow's files at an entry of the store, joined (its sidecars put back),
  rendered with the environment's parameters and secrets, validated and canonical: what drivers
  and the plan see. A problem names the file (the JSON, or the sidecar it came from).
- :func:`git_form`: a document (already in git's language: placeholders, no secrets) as git
  stores it for an environment: split per its declarations (:meth:`EnvironmentConfig.code_declarations`),
  one JSON file in the single-file form.
- :func:`git_doc`: the whole document git holds at an entry, as git holds it (placeholders), for
  diffs and scans.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from reconciler.canonical import format_pointer, parse_json
from reconciler.codefields import Declared, code_in
from reconciler.errors import Problem, RetryableError
from reconciler.flows import CanonicalFlow, FlowKey
from reconciler.names import encode
from reconciler.sidecars import StoredFlow, first_problem, join, read_stored, split
from reconciler.templating import Templating

if TYPE_CHECKING:
    from reconciler.envconfig import EnvironmentConfig
    from reconciler.gitstore import GitStore

__all__ = ["read_git_flow", "git_form", "git_doc", "stored_doc", "can_split", "may_split", "is_git_form",
           "sidecar_files", "working_tree_flow", "Unreadable"]


class Unreadable(ValueError):
    """A flow in git that cannot be read whole; ``problem`` names the file."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


def can_split(key: FlowKey) -> bool:
    """A flow whose version's path segment ends in ``.json`` keeps one file: its sidecar folder would
    be named like the JSON of the version without that suffix."""
    try:
        return not encode(key.version).endswith(".json")
    except ValueError:
        return False


def read_git_flow(store: "GitStore", entry: str, env: EnvironmentConfig, *, where: str, key: FlowKey,
                  templating: Templating, validate: Callable[[Any], list[tuple[str, str]]] | None = None,
                  limit: int | None = None) -> CanonicalFlow | Problem:
    """The canonical, rendered flow at ``entry`` (a Problem naming the file when it cannot be used)."""
    try:
        stored = store.flow_files_within(entry, limit)
        if isinstance(stored, int):
            return Problem(where, f"{stored} bytes is larger than the {limit}-byte limit for a flow", "", str(key))
    except RetryableError as exc:  # the entry's objects are missing or unreadable: this flow only
        return Problem(where, f"cannot be read ({exc}); fix or remove it in git", "", str(key))
    return read_stored(stored, env.flow_identity, env.rules, where=where, expect=key, validate=validate,
                       render=templating.renderer(stored.text()))


def git_form(doc: Any, env: EnvironmentConfig, key: FlowKey) -> StoredFlow:
    """How git stores ``doc`` (in git's language already) for environment ``env``; ``doc`` is modified."""
    return split(doc, env.rules, env.code_declarations() if can_split(key) else ())


def git_doc(store: "GitStore", entry: str | None, *, where: str, flow: str = "") -> Any:
    """The whole document at ``entry`` as git holds it (None for None). Raises InvalidJSON for a JSON
    that does not parse and :class:`Unreadable` for sidecars that do not join."""
    if entry is None:
        return None
    stored = store.flow_files(entry)
    doc, _, problems = join(parse_json(stored.json), stored, where=where, flow=flow)
    if problems:
        raise Unreadable(first_problem(problems))
    return doc


def stored_doc(stored: StoredFlow, *, where: str, flow: str = "") -> tuple[Any, dict[str, str], list[Problem]]:
    """(whole document, pointer -> sidecar file, problems) of a stored flow; InvalidJSON for a bad JSON."""
    return join(parse_json(stored.json), stored, where=where, flow=flow)


@lru_cache(maxsize=32)
def _field_needles(declared: tuple[Declared, ...]) -> tuple[bytes, ...]:
    names = sorted({f.segments[-1] for d in declared for f in d.code if f.segments})
    # canonical JSON writes a member as `"key": value`; a code field worth a file is a non-empty string
    return tuple(b'"' + json.dumps(n, ensure_ascii=False)[1:-1].encode("utf-8") + b'": "' for n in names)


def is_git_form(store: "GitStore", oid: str, templating: Templating, declared: Sequence[Declared]) -> bool:
    """A live flow whose canonical bytes are the blob ``oid`` has that blob as its git form (what
    :func:`reconciler.apply.live_git_form` makes of it, nothing write-only carried): provably nothing to
    template, no secret (a blob pushed by hand may hold one), no code to split out. False when in doubt."""
    try:
        data = store.read_blob(oid) if store.has_object(oid) else None
    except RetryableError:
        data = None
    return data is not None and templating.quick_clean(data) and not may_split(data, declared)


def may_split(canonical: bytes, declared: Sequence[Declared]) -> bool:
    """False when canonical JSON text provably has no code to split out and nothing to escape (a
    C-speed check; True means: parse and look). Substring searches, not a regular expression with
    one alternative per field name: those tried every alternative at every byte (~0.1 ms a flow)."""
    if b'sidecar"' in canonical:
        return True
    for needle in _field_needles(tuple(declared)):
        at = canonical.find(needle)
        while at != -1:
            end = at + len(needle)
            if end < len(canonical) and canonical[end] != 0x22:  # a non-empty string (not `""`)
                return True
            at = canonical.find(needle, end)
    return False


def sidecar_files(doc: Any, env: EnvironmentConfig, key: FlowKey) -> dict[str, str]:
    """pointer -> `` (its sidecar NAME)`` for the code fields ``doc`` would store as files."""
    if doc is None or not can_split(key):
        return {}
    return {format_pointer(f.path): f" (its sidecar {f.file})" for f in code_in(doc, env.code_declarations())}


def working_tree_flow(f: Path) -> StoredFlow:
    """A flow file of a working tree (a checkout, ``validate PATH``, ``render FILE``) and the sidecar folder
    beside it; its entries that are not regular files (symlinks are never followed) are listed as bad.
    Raises OSError."""
    data = f.read_bytes()
    folder = f.with_suffix("")
    if not f.name.endswith(".json") or not folder.is_dir() or folder.is_symlink():
        return StoredFlow(data)
    sidecars: dict[str, bytes] = {}
    bad: dict[str, str] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink():
            bad[entry.name] = "a symlink"
        elif entry.is_dir():
            bad[entry.name] = "a folder"
        elif entry.is_file():
            sidecars[entry.name] = entry.read_bytes()
        else:
            bad[entry.name] = "a special file"
    return StoredFlow(data, sidecars, bad)
