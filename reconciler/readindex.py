"""The engine's read cache (:mod:`reconciler.readcache`) kept for the next process.

What the engine derives from git is a pure function of immutable objects and
the environment's settings: the flows of a folder's *tree id* (``key -> blob
id``), and for each blob its canonical, rendered id (or a problem). A warm
service keeps that in memory; a fresh ``reconciler plan`` would read the tree
of every flow and parse, validate, render and canonicalise every blob again.
This module keeps the derivations of the branch tip and of the applied marker
at ``<gitdir>/reconciler/index/<env>/desired`` (:mod:`reconciler.localcache`:
versioned, checksummed, written by rename), so the next process reads only
the trees and blobs that changed since.

Never a wrong answer: the file names its fingerprint (this code, the
environment's identity, rules, folder, size limit, its JSON Schema's bytes and
the fingerprint of its parameters and secrets); anything else, or a missing,
truncated or corrupt file, means reading everything. A flow that was a problem
is not kept (it is read again, so its message names where it is read now); a
folder with entries that are not flows is not kept as a tree (read again too).

Shared between environments: the file also names its *derivation* fingerprint
(:func:`derivation`: everything that shapes what a blob derives to, without what
only shapes what is done with it: the name, branch, policies, schedules, and a
directory's own folder on disk). An environment with nothing kept of its own
(its first sync after a promotion: ``git branch -f env/production env/acceptance``)
starts from another environment's file with the same derivation fingerprint, as
if it had kept it itself: the blobs they share are not read again. Other
parameters, secrets, rules, identity, schema, folder, driver or code give another
fingerprint, hence a full read.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.configbase import settings_json
from reconciler.flows import FlowKey, light_flows
from reconciler.gitstore import FlowTree, GitStore
from reconciler.localcache import digest, read_cache, write_cache
from reconciler.readcache import Derived

if TYPE_CHECKING:
    from reconciler.envconfig import EnvironmentConfig

__all__ = ["KeptReads", "Recalled", "recall", "recall_shared", "keep", "fingerprint", "derivation", "deriving_settings"]

_KIND = "engine-reads"
_OID = operator.attrgetter("oid")
# settings that shape what is done with a derivation, never the derivation itself
_NOT_DERIVING = frozenset({"name", "branch", "drift", "prune", "allow_empty", "max_delete", "override", "interval",
                           "on_unhealthy", "windows", "health_timeout"})
# drivers whose flows from git are compared as git holds them (not Rendering), and the settings of
# theirs that only say where the platform is
_LOCATION_ONLY = {"directory": frozenset({"path"})}


def fingerprint(env: "EnvironmentConfig", settings: str, limit: int) -> str:
    """What shapes an environment's derivations: identity, rules, folder, the size limit, the JSON
    Schema's bytes and ``settings`` (the fingerprint of its parameters and secrets), with this code."""
    schema = _schema(env)
    # the driver and its settings too: a driver that presents git's flows in its own form (flink-sql's
    # rendered SQL) derives other flows from the same blobs
    return digest("engine", env.flow_identity, env.rules.ignore, env.rules.sort, env.folder, limit, schema, settings,
                  env.driver, settings_json(env))


def derivation(env: "EnvironmentConfig", settings: str, limit: int) -> str:
    """What shapes the derivation of each (key, blob) and the flows of each folder tree: :func:`fingerprint`
    without the settings that do not (:data:`_NOT_DERIVING`, and the location of a driver that presents
    git's flows as they are). Two environments with this fingerprint derive the same from the same blob."""
    return digest("derived", _schema(env), env.flow_identity, env.rules.ignore, env.rules.sort, env.folder, limit,
                  settings, env.driver, deriving_settings(env))


def deriving_settings(env: "EnvironmentConfig") -> str:
    """``env.model_dump_json(exclude=...)`` of the settings that shape a derivation, taken from
    :func:`~reconciler.envconfig.settings_json` (which a cached config brings along, and which
    leaves out a subset of them): a command builds no pydantic serializer for it (~35 ms)."""
    exclude = _NOT_DERIVING | _LOCATION_ONLY.get(env.driver, frozenset())
    doc = json.loads(settings_json(env))
    return json.dumps({k: v for k, v in doc.items() if k not in exclude}, ensure_ascii=False, separators=(",", ":"))


def _schema(env: "EnvironmentConfig") -> object:
    if env.schema_ is None:
        return None
    try:
        return hashlib.sha256(Path(env.schema_).read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable: {exc}"


class KeptReads:
    """The engine's use of the kept reads: recalled once per environment and process, kept again
    (by :meth:`flush`, after a run) when the derivations moved to other trees."""

    def __init__(self, store: GitStore):
        self.store = store
        self._trees: dict[str, tuple[str | None, str | None]] = {}  # env -> the (tip, marker) trees on disk
        self._todo: dict[str, tuple[Any, ...]] = {}

    def recall(self, env: str, folder: str, fingerprint: str, derived: str | None = None) -> Recalled | None:
        """What the last process kept for ``env`` (its clean trees given to the store), once; with
        ``derived`` (:func:`derivation`), when it kept nothing usable, what another environment
        kept with that derivation fingerprint (``env``'s own file is then written after its read)."""
        if env in self._trees:
            return None
        self._trees[env] = (None, None)
        path = self.store.cache_path(env, "desired")
        got = recall(path, fingerprint)
        if got is None and derived is not None:
            got = recall_shared(path, derived)
            if got is None:
                return None
        elif got is None:
            return None
        else:
            self._trees[env] = (got.desired.tree, got.base.tree)
        for tree, flows in got.trees.items():
            self.store.remember_tree(folder, tree, flows)
        return got

    def note(self, env: str, fingerprint: str, at_tip: FlowTree, desired: Derived, at_marker: FlowTree,
             base: Derived, derived: str = "") -> None:
        """The derivations of the read just made; kept by the next :meth:`flush` unless they are on disk."""
        if self._trees.get(env) != (desired.tree, base.tree) or desired.tree is None:
            self._todo[env] = (fingerprint, at_tip, desired, at_marker, base, derived)

    def marked(self, env: str, tree: str | None) -> None:
        """The marker moved (a run applied what it read) to a commit whose folder is ``tree``: when that is
        the tip's tree just derived, the marker's side kept is the tip's (one side written, not two, and
        the next process finds on disk what it derives)."""
        todo = self._todo.get(env)
        if todo is not None and tree is not None and todo[2].tree == tree:
            fp, at_tip, desired, _, _, derived = todo
            self._todo[env] = (fp, at_tip, desired, at_tip, desired, derived)

    def flush(self, env: str) -> None:
        todo = self._todo.pop(env, None)
        if todo is None:
            return
        fp, at_tip, desired, at_marker, base, derived = todo
        keep(self.store.cache_path(env, "desired"), fp, at_tip, desired, at_marker, base, derived)
        self._trees[env] = (desired.tree, base.tree)


class Recalled:
    """What a previous process derived: the tip's and the marker's :class:`Derived`, and the clean
    folders (tree id -> flows) it read, to give the git store before it reads any tree."""

    def __init__(self, desired: Derived, base: Derived, trees: dict[str, Mapping[FlowKey, str]]):
        self.desired, self.base, self.trees = desired, base, trees


def keep(path: Path, fingerprint: str, at_tip: FlowTree, desired: Derived, at_marker: FlowTree, base: Derived,
         derived: str = "") -> None:
    """Record the two derivations (the marker's only where it is another tree than the tip's), and the
    derivation fingerprint they were made with (first: :func:`recall_shared` looks for it there)."""
    body: dict[str, Any] = {"derivation": derived, "desired": _side(at_tip, desired)}
    body["base"] = "desired" if base.tree is not None and base.tree == desired.tree else _side(at_marker, base)
    write_cache(path, _KIND, fingerprint, body)


def _side(tree: FlowTree, derived: Derived) -> dict[str, Any]:
    source, flows, problems = derived.source, derived.flows, derived.problems
    if source and not problems and flows.keys() == source.keys():  # every flow valid: the rows at C speed
        names, versions = zip(*source)
        rows: list[Any] = list(zip(names, versions, source.values(), map(_OID, map(flows.__getitem__, source))))
    else:
        rows = []
        for key, blob in source.items():
            flow = flows.get(key)
            rows.append([key.name, key.version, blob, None if flow is None or key in problems else flow.oid])
    clean = derived.tree is not None and not tree.problems and not tree.bad and tree.tree == derived.tree
    return {"tree": derived.tree, "clean": clean, "rows": rows}


def recall(path: Path, fingerprint: str, *, field: str = "fingerprint") -> Recalled | None:
    """What :func:`keep` recorded with this fingerprint (``field``: the one compared); None when there
    is nothing usable."""
    doc = read_cache(path, _KIND, fingerprint, field=field)
    if doc is None:
        return None
    try:
        trees: dict[str, Mapping[FlowKey, str]] = {}
        desired = _derived(doc["desired"], trees)
        base = desired if doc["base"] == "desired" else _derived(doc["base"], trees)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return Recalled(desired, base, trees)


_SHARED_LOOKS = 32  # other environments' files looked at, at most (each a read of its first bytes)


def recall_shared(own: Path, derived: str) -> Recalled | None:
    """What another environment of the repository kept with derivation fingerprint ``derived`` (its
    file beside ``own``'s folder), None when none is usable. Its derivations are facts about blobs and
    trees that hold for every environment with that fingerprint; its fingerprint of everything else
    is not looked at."""
    try:
        folders = sorted(p for p in own.parent.parent.iterdir() if p.name != own.parent.name)
    except OSError:
        return None
    needle = b'"derivation":"' + derived.encode() + b'"'
    for folder in folders[:_SHARED_LOOKS]:
        path = folder / own.name
        try:
            with open(path, "rb") as f:
                head = f.read(512)
        except OSError:
            continue
        if needle not in head:
            continue
        got = recall(path, derived, field="derivation")
        if got is not None:
            return got
    return None


def _derived(side: dict[str, Any], trees: dict[str, Mapping[FlowKey, str]]) -> Derived:
    rows = side["rows"]
    tree = side["tree"]
    if tree is not None and not isinstance(tree, str):
        raise ValueError("tree")
    if type(rows) is not list:
        raise TypeError("rows")
    # The rows are checked whole, at C speed: each a list [name, version, blob id, canonical id or None].
    if rows and (set(map(type, rows)) != {list} or set(map(len, rows)) != {4}):
        raise ValueError("rows")
    names, versions, blobs, canons = zip(*rows) if rows else ((), (), (), ())
    if not set(map(type, names)) | set(map(type, versions)) | set(map(type, blobs)) <= {str} \
            or not set(map(type, canons)) <= {str, type(None)}:
        raise TypeError("rows")
    new = tuple.__new__
    keys = [new(FlowKey, k) for k in zip(names, versions)]
    folder: dict[FlowKey, str] = dict(zip(keys, blobs))
    if len(folder) != len(keys):
        raise ValueError("a key twice")
    whole = None not in canons
    if whole:
        source = dict(folder)
        ids = dict(zip(keys, canons))
        flows = dict(zip(keys, light_flows(keys, canons)))
    else:
        # A problem: left out of the derivation's source, so the next derive reads it again
        # (as new) and reports it where it is read now; the tree is then not derived whole.
        kept = [i for i, canon in enumerate(canons) if canon is not None]
        good = [keys[i] for i in kept]
        source = {k: folder[k] for k in good}
        ids = {k: canons[i] for k, i in zip(good, kept)}
        flows = dict(zip(good, light_flows(good, [canons[i] for i in kept])))
    if tree is not None and side["clean"] is True:
        trees[tree] = folder
    return Derived(tree if whole else None, source, flows, ids, {})
