"""Carrying a plan out: a tuple of steps with one signature over one apply context.

Each step takes the :class:`Apply` context and returns it with what it did
added (frozen data, no shared mutable state), in this order; each is idempotent,
so a crash anywhere is repaired by the next run:

1. :func:`save_drift`: live content about to be overwritten or deleted is
   committed to ``drift/<env>`` first;
2. :func:`adopt`: live changes taken into git are committed to the branch
   (compare-and-swap; a moved tip raises and the engine re-reads and re-plans);
3. :func:`write`: imports and deletions through the driver, each guarded by the
   live content the plan saw;
4. :func:`verify`: the written flows are read back and compared with what was
   meant (read-after-write);
5. :func:`gate`: where the platform can say so, the imported flows must be
   running; those that are not are restored to their previous version (and
   the engine quarantines the commit for them);
6. :func:`mark`: the applied marker moves to a commit whose tree is exactly what
   the environment now holds.

An exception stops the chain (the engine decides: re-plan, back off, or stop);
per-flow failures accumulate in :attr:`Apply.failed` and are recorded once, by
the engine, at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from reconciler.canonical import blob_id, parse_json
from reconciler.drivers import Change, Driver, HealthChecked, Progress, Rendering, WriteOnly
from reconciler.errors import RetryableError
from reconciler.flows import CanonicalFlow, FlowKey
from reconciler.gitform import git_doc, git_form, is_git_form, may_split, read_git_flow, sidecar_files
from reconciler.gitstore import GitStore
from reconciler.sidecars import StoredFlow, entry_parts
from reconciler.names import case_collisions, encode
from reconciler.outcome import Snapshot
from reconciler.plan import RERENDERED, Action, Plan, Step

if TYPE_CHECKING:
    from reconciler.envconfig import EnvironmentConfig

__all__ = ["Apply", "STEPS", "carry_out", "save_drift", "adopt", "write", "verify", "gate", "mark", "mass_deletion"]

_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True)
class Apply:
    """One apply: what it works on, and what the steps so far did."""

    env: EnvironmentConfig
    snap: Snapshot
    plan: Plan
    steps: tuple[Step, ...]  # the plan's changes this run may carry out
    store: GitStore
    driver: Driver
    progress: Progress | None = None
    failed: Mapping[FlowKey, str] = field(default_factory=lambda: _EMPTY)
    drift_commit: str | None = None
    tip: str | None = None  # the branch tip after adopting
    commit: str | None = None  # the adopt commit, if any
    adopted: Mapping[FlowKey, str | None] = field(default_factory=lambda: _EMPTY)  # key -> blob id committed
    written: tuple[Step, ...] = ()
    marker: str | None = None
    unhealthy: Mapping[FlowKey, str] = field(default_factory=lambda: _EMPTY)  # the health gate's findings
    health_checked: int = 0  # flows the health gate asked the platform about

    def fail(self, reasons: Mapping[FlowKey, str]) -> "Apply":
        return replace(self, failed={**self.failed, **reasons}) if reasons else self

    @property
    def done(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps
                     if s.key not in self.failed and (s.action != Action.ADOPT or s.key in self.adopted))


StepFn = Callable[[Apply], Apply]


def save_drift(a: Apply) -> Apply:
    saving: dict[FlowKey, StoredFlow | str] = {}  # a str: the id of a blob already in the repository
    failed: dict[FlowKey, str] = {}
    declared = None  # env.code_declarations(), once and only when needed (~0.4 ms each)
    as_is = not isinstance(a.driver, WriteOnly)  # once: a Protocol's isinstance is slow; write-only fields: never
    for s in a.steps:
        # Not what this machine wrote from git before a parameter or secret changed (its git form is git's
        # version; the old values, a rotated password among them, must not be saved anywhere).
        if s.overwrites_live and not s.reason.startswith(RERENDERED):
            kept = a.snap.base_blobs.get(s.key)
            declared = a.env.code_declarations() if declared is None else declared
            if as_is and kept is not None and kept == s.live and is_git_form(a.store, kept, a.snap.templating, declared):
                saving[s.key] = kept  # the applied blob is the live flow's git form: committed as it is, not packed
                continue
            try:
                saving[s.key] = _for_git(a, s.key, declared)
            except _Unsafe as exc:
                failed[s.key] = f"not overwritten: its live version cannot be saved to drift/{a.env.name}: {exc}"
            except _Moved as exc:
                failed[s.key] = f"not overwritten: {exc}"
    a = a.fail(failed)
    if not saving:
        return a
    reasons = {s.key: s.reason for s in a.steps}
    lines = "\n".join(f"- {k} ({reasons[k]})" for k in sorted(saving))
    msg = a.snap.templating.redact(f"drift({a.env.name}): save live flows before overwriting them\n\n{lines}\n")
    return replace(a, drift_commit=a.store.save_drift(a.env.name, a.env.folder, saving, msg))


def adopt(a: Apply) -> Apply:
    snap = a.snap
    adopts = [s for s in a.steps if s.action == Action.ADOPT]
    if not adopts:
        return replace(a, tip=snap.tip)
    # A plain name differing only in case from another would collide on a
    # case-insensitive checkout: refuse the newcomer, keep the rest.
    new_names = [encode(s.key.name) for s in adopts if s.live is not None and s.key not in snap.tip_blobs]
    clash: set[str] = set()
    if new_names:  # an edit of flows already in git cannot clash: only then read every name in git
        existing = {encode(k.name) for k in snap.tip_blobs}
        clash = {b for _, b in case_collisions([*sorted(existing), *new_names])}
    changes: dict[FlowKey, StoredFlow | None] = {}
    failed: dict[FlowKey, str] = {}
    declared = a.env.code_declarations()
    for s in adopts:
        if s.live is not None and s.key not in snap.tip_blobs and encode(s.key.name) in clash:
            failed[s.key] = f"name {s.key.name!r} differs only in case from a flow already in git; rename it"
            continue
        try:
            changes[s.key] = None if s.live is None else _for_git(a, s.key, declared)
        except _Unsafe as exc:
            failed[s.key] = f"not committed (secret scan): {exc}"
        except _Moved as exc:
            failed[s.key] = f"not committed: {exc}"
    a = a.fail(failed)
    if not changes:
        return replace(a, tip=snap.tip)
    message = snap.templating.redact(_adopt_message(a.env.name, snap, changes))
    commit = a.store.commit_changes(snap.branch, snap.tip, a.env.folder, changes, message)
    if commit is not None and snap.tip is None:
        a.store.point_head_at(a.env.branch_name)  # so that a clone of the repository checks something out
    # the entry ids just committed (computed: put_flow would queue every object again)
    adopted = {k: (None if v is None else a.store.flow_entry_id(v)) for k, v in changes.items()}
    return replace(a, tip=commit or snap.tip, commit=commit, adopted=adopted)


def write(a: Apply) -> Apply:
    writes = [s for s in a.steps if s.action in (Action.IMPORT, Action.DELETE) and s.key not in a.failed]
    if not writes:
        return a
    changes, failed = [], {}
    rendering = isinstance(a.driver, Rendering)  # once: a Protocol check costs ~20 µs
    for s in writes:
        data = oid = None
        if s.action == Action.IMPORT:
            data, oid = _version(a, s.key, a.snap.tip_blobs.get(s.key), s.desired, rendering)
            if data is None:
                failed[s.key] = "its version in git changed while it was being read; the next run re-checks it"
                continue
        changes.append(Change(s.key, data, s.live, oid))
    failed.update(a.driver.apply(changes, progress=a.progress))
    a = a.fail(failed)
    return replace(a, written=tuple(s for s in writes if s.key not in a.failed))


def verify(a: Apply) -> Apply:
    if not a.written:
        return a
    now = a.driver.reread([s.key for s in a.written])
    failed = {}
    for s in a.written:
        want = s.desired if s.action == Action.IMPORT else None
        got = now.get(s.key)
        if got != want:
            failed[s.key] = ("read-after-write check failed: the environment does not hold what was written "
                             f"(expected {want and want[:12]}, found {got and got[:12]}); if the platform rewrites "
                             "fields on import, list them in the environment's `ignore`")
    return a.fail(failed)


def gate(a: Apply) -> Apply:
    """The health gate: a platform that can say so (``HealthChecked``) must report the imported flows
    running; those it does not are restored to their previous version (``on_unhealthy = "restore"``)
    or left (``"report"``), and the engine quarantines the commit for them."""
    imported = [s for s in a.written if s.action == Action.IMPORT and s.key not in a.failed]
    if not imported or not isinstance(a.driver, HealthChecked):
        return a
    bad = a.driver.check_health([s.key for s in imported], a.env.health_timeout)
    a = replace(a, health_checked=len(imported))
    if not bad:
        return a
    if a.env.on_unhealthy == "report":
        return replace(a, unhealthy=bad)
    steps = {s.key: s for s in imported}
    changes, failed = [], {}
    for key in bad:
        base = a.snap.base_blobs.get(key)
        data = _version_data(a, key, base, a.snap.base_ids.get(key)) if base is not None else None
        if base is not None and data is None:
            failed[key] = f"unhealthy after the deploy ({bad[key]}), and its previous version cannot be read back"
            continue
        changes.append(Change(key, data, steps[key].desired))
    not_restored = a.driver.apply(changes) if changes else {}
    for key, why in bad.items():
        if key in failed:
            continue
        if key in not_restored:
            failed[key] = f"unhealthy after the deploy ({why}); restoring the previous version failed: {not_restored[key]}"
        else:
            failed[key] = f"unhealthy after the deploy ({why}); the previous version was deployed again"
    return replace(a.fail(failed), unhealthy=bad)


def mark(a: Apply) -> Apply:
    """Move the marker to a commit whose tree is what the environment now holds.

    The tree holds git's own blobs (with placeholders, never secrets): the tip's
    blob where the environment now matches the tip, the adopted blob for adopted
    flows, the old marker's blob where nothing was done.
    """
    snap, env, tip = a.snap, a.env, a.tip
    done = {s.key for s in a.done}
    tip_flows = a.store.flows_at(tip, env.folder).flows if tip else {}
    edits: dict[FlowKey, str | None] = {}
    for s in a.plan.notable:  # every step whose action is not NONE, in order
        if s.action == Action.NONE:
            continue  # in sync: the tip's blob, already in the tip's tree
        if s.key in done:
            want = a.adopted[s.key] if s.action == Action.ADOPT else (
                None if s.action == Action.DELETE else snap.tip_blobs.get(s.key))
        else:
            want = snap.base_blobs.get(s.key)
        if tip_flows.get(s.key) != want:
            edits[s.key] = want
    if tip is None and not edits:
        return replace(a, marker=snap.marker)
    if not edits and tip is not None:
        target = tip
    else:
        tree = a.store.tree_with(tip, env.folder, edits)
        n = len(edits)
        target = a.store.commit(None, tip, tree,
                                f"reconciler: what {env.name} holds ({n} flow{'s' * (n != 1)} differ from the branch)\n")
    if target != snap.marker:
        a.store.set_marker(env.name, target)
    return replace(a, marker=target)


STEPS: tuple[StepFn, ...] = (save_drift, adopt, write, verify, gate, mark)


def carry_out(a: Apply, steps: tuple[StepFn, ...] = STEPS) -> Apply:
    """Run the steps in order; the first exception stops the chain."""
    for step in steps:
        a = step(a)
    return a


# -- helpers ---------------------------------------------------------------------------------


def _for_git(a: Apply, key: FlowKey, declared: tuple | None = None) -> StoredFlow:
    """A live flow as git may hold it (see :func:`live_git_form`)."""
    return live_git_form(a.driver, a.store, a.env, a.snap, key, declared)


def live_git_form(driver: Driver, store: GitStore, env: EnvironmentConfig, snap: Snapshot, key: FlowKey,
                  declared: tuple | None = None) -> StoredFlow:
    """A live flow as git may hold it: placeholders back in, nothing secret left, what the platform
    never returns (:class:`~reconciler.drivers.WriteOnly`) taken from git's version, and its code split
    out into sidecar files (:func:`reconciler.gitform.git_form`). ``declared``: ``env.code_declarations()``
    where the caller has them.

    Raises :class:`_Unsafe` naming the pointer (never the value) when the flow
    holds a secret that cannot be replaced by a placeholder.
    """
    flow = snap.live.flows[key]
    data = flow.data
    if data is None:  # a snapshot that keeps ids only: read the bytes again, as planned?
        loaded = driver.load(key)
        if loaded is None or loaded.oid != flow.oid or loaded.data is None:
            raise _Moved(f"{key} changed in the environment since it was read; the next run re-checks it")
        data = loaded.data
    t = snap.templating
    carry = isinstance(driver, WriteOnly) and key in snap.tip_blobs
    clean = t.quick_clean(data)
    if not carry and clean and not may_split(data, env.code_declarations() if declared is None else declared):
        return StoredFlow(data)  # provably nothing to put back, nothing secret, no code to split: no walk
    doc = parse_json(data)
    if carry:
        doc = driver.carry_write_only(doc, git_doc(store, snap.tip_blobs[key], where=f"{snap.branch}:{key}",
                                                   flow=str(key)))
    if not clean or carry:
        if t.active:
            doc, problems = t.templatize(doc)
            if problems:
                raise _Unsafe(problems, doc, env, key)
        problems = t.scan(doc)
        if problems:
            raise _Unsafe(problems, doc, env, key)
    return git_form(doc, env, key)


def _version_data(a: Apply, key: FlowKey, blob: str | None, want: str | None, rendering: bool | None = None) -> bytes | None:
    """The rendered canonical bytes of a version in git, if they still have the id the plan used
    (``rendering``: whether the driver is :class:`Rendering`, when the caller knows)."""
    return _version(a, key, blob, want, rendering)[0]


def _version(a: Apply, key: FlowKey, blob: str | None, want: str | None,
             rendering: bool | None = None) -> tuple[bytes | None, str | None]:
    """:func:`_version_data` (as this run's read rendered them, else read again), and their blob id where it
    was computed from these very bytes (a kept flow's id; git's bytes taken as they are), else None."""
    if blob is None:
        return None, None
    if a.snap.rendered is not None and (kept := a.snap.rendered.data(key, blob, want)) is not None:
        return kept, want  # rendered by this run's read from this very entry, with the id the plan used
    if rendering is None:
        rendering = isinstance(a.driver, Rendering)
    json_oid, sidecars = entry_parts(blob)
    valid = a.snap.desired.get(key)  # read from the tip without a problem, rendered canonical id ``oid``
    if sidecars is None and json_oid == want and valid is not None and valid.oid == want and not rendering:
        # Git holds exactly the bytes the read derived (their blob id is the rendered canonical id): rendering
        # and canonicalising them again would give them back, so they are not parsed again.
        try:
            data = a.store.read_blob(json_oid)
        except RetryableError:
            data = None  # the full read below says what it is
        if data is not None and blob_id(data) == want:
            return data, want
    got = read_git_flow(a.store, blob, a.env, where=str(key), key=key, templating=a.snap.templating)
    if isinstance(got, CanonicalFlow) and rendering:
        got = a.driver.present(got, str(key))  # the form the plan compared (and the driver writes from)
    return (got.data if isinstance(got, CanonicalFlow) and got.oid == want else None), None


class NotForGit(Exception):
    """A live flow git cannot take as it is (moved since read, or holding a secret)."""


class _Moved(NotForGit):
    """A live flow that is no longer what the plan saw."""


class _Unsafe(NotForGit):
    """A flow that must not be written to git as it is (secret scan); a pointer into code names the
    sidecar file it would have gone to."""

    def __init__(self, problems: list[tuple[str, str]], doc=None, env: EnvironmentConfig | None = None,
                 key: FlowKey | None = None):
        self.problems = problems
        files = sidecar_files(doc, env, key) if env is not None and key is not None else {}
        super().__init__("; ".join(f"{p or '/'}{files.get(p, '')}: {m}" for p, m in problems[:5]))


def _adopt_message(env: str, snap: Snapshot, changes: Mapping[FlowKey, StoredFlow | None]) -> str:
    added = sorted(k for k, v in changes.items() if v is not None and k not in snap.tip_blobs)
    changed = sorted(k for k, v in changes.items() if v is not None and k in snap.tip_blobs)
    removed = sorted(k for k, v in changes.items() if v is None)
    parts = [f"{word} {len(keys)}" for word, keys in (("add", added), ("update", changed), ("remove", removed)) if keys]
    lines = [f"{env}: {', '.join(parts)} flow{'s' * (len(changes) != 1)} from the environment", ""]
    for word, keys in (("added", added), ("changed", changed), ("removed", removed)):
        lines.extend(f"{word}: {k}" for k in keys)
    lines += ["", f"Environment: {env}"]
    return "\n".join(lines) + "\n"


def mass_deletion(env: EnvironmentConfig, snap: Snapshot, p: Plan, allowed) -> str | None:
    """Why carrying ``p`` out would delete too much (Argo CD's ``allowEmpty``), or None.

    Counted in each direction: flows deleted from the environment (prune, or a
    restore of deletions made in git) and deletions adopted into git. Deleting
    every flow of a side needs ``allow_empty``; more than ``max_delete`` of them
    needs a larger limit; ``--allow-mass-delete`` lifts both for one run.
    """
    steps = [s for s in p.changes if allowed is None or s.action in allowed]
    sides = (
        ("from the environment", [s for s in steps if s.action == Action.DELETE], len(snap.live.flows)),
        (f"from {snap.branch}", [s for s in steps if s.action == Action.ADOPT and s.live is None], len(snap.tip_blobs)),
    )
    for where, deleting, total in sides:
        n = len(deleting)
        if not n:
            continue
        names = ", ".join(str(s.key) for s in deleting[:5]) + (", …" if n > 5 else "")
        how = (f"run it once with `reconciler sync {env.name} --allow-mass-delete`"
               if where == "from the environment" else f"run `reconciler export {env.name} --allow-mass-delete`")
        if n >= total and not env.allow_empty:
            return (f"environment {env.name}: this run would delete every flow {where} ({n}: {names}); nothing "
                    f"was changed. If that is intended, {how}, or set allow_empty = true for the environment")
        limit = env.delete_limit(total)
        if n > limit and not (n >= total and env.allow_empty):
            return (f"environment {env.name}: this run would delete {n} of {total} flows {where} ({names}), more "
                    f"than max_delete = {env.max_delete!r} allows ({limit}); nothing was changed. If that is "
                    f"intended, {how}, or raise max_delete for the environment")
    return None
