"""The engine: one reconcile of one environment as a short list of named steps.

``read`` gathers the three sides (applied marker A, branch tip D, live L) in
canonical form; :func:`reconciler.plan.plan` decides; ``apply`` carries the
plan out in this order, each step idempotent so a crash anywhere is repaired
by the next run:

1. ``save_drift``: live content about to be overwritten or deleted is
   committed to ``drift/<env>`` first;
2. ``adopt``: live changes taken into git are committed to the branch
   (compare-and-swap; a moved tip means re-read and re-plan);
3. ``write``: imports and deletions through the driver, each guarded by the
   live content the plan saw;
4. ``verify``: the environment is re-exported and every written flow compared
   with what was meant (read-after-write);
5. ``mark``: the applied marker moves to a commit whose tree is exactly what
   the environment now holds.

The outcome is frozen data; the CLI and the service render it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import structlog

from reconciler.canonical import blob_id, canonicalize, parse_json
from reconciler.config import Config, EnvironmentConfig
from reconciler.drivers import Change, Driver, LiveSet, Recoverable
from reconciler.errors import (BranchMovedError, LiveMovedError, MassDeletionRefused, Problem, RetryableError,
                               StallError)
from reconciler.flows import CanonicalFlow, FlowKey, read_flow
from reconciler.gitstore import GitStore
from reconciler.names import case_collisions, encode, flow_path
from reconciler.redaction import Redactor
from reconciler.schemas import load_validator
from reconciler.plan import Action, Plan, Policy, State, Step, plan
from reconciler.templating import Templating

__all__ = ["Engine", "Snapshot", "Outcome", "make_driver", "mass_deletion", "ProgressFn"]

log = structlog.get_logger("reconciler.engine")

ProgressFn = Callable[[str, int, int | None], None]
# A flow larger than this in git is refused before it is read into memory.
MAX_FLOW_BYTES = 64 * 1024 * 1024


def make_driver(env: EnvironmentConfig) -> Driver:
    """Build the driver an environment's config names."""
    try:
        return env.build_driver()
    except NotImplementedError as exc:
        raise StallError(f"environment {env.name}: {exc}") from exc


@dataclass(frozen=True)
class Snapshot:
    """The three sides of one environment, read at one moment."""

    env: str
    branch: str
    tip: str | None
    marker: str | None
    base: Mapping[FlowKey, str]
    desired: Mapping[FlowKey, CanonicalFlow]
    tip_blobs: Mapping[FlowKey, str]  # raw blob ids at the tip (may be non-canonical)
    live: LiveSet
    invalid: Mapping[FlowKey, str]
    problems: tuple[Problem, ...]
    desired_oids_map: Mapping[FlowKey, str] = field(default_factory=dict)
    base_blobs: Mapping[FlowKey, str] = field(default_factory=dict)  # git blob ids at the marker
    templating: Templating = Templating()

    def desired_oids(self) -> dict[FlowKey, str]:
        return dict(self.desired_oids_map)


class _Derived(NamedTuple):
    """Canonical flows derived from one tree's ``key -> blob id`` mapping."""

    source: Mapping[FlowKey, str]
    flows_by_key: dict[FlowKey, CanonicalFlow]  # valid flows (ids only unless data is kept)
    oids: dict[FlowKey, str]  # comparison ids (rendered canonical blob ids)
    problems: dict[FlowKey, Problem]


def _derive(source: Mapping[FlowKey, str], prev: _Derived | None, read, donor: _Derived | None,
            keep_data: bool = True) -> _Derived:
    """Derive canonical flows, re-reading only keys whose blob id changed since ``prev``.

    ``donor`` is another derivation (the tip's, for the marker) whose results
    are reused for identical blobs.
    """
    if prev is not None and prev.source is source:
        return prev
    if prev is None:
        flows, oids, problems, changed = {}, {}, {}, source.keys()
    else:
        flows, oids, problems = dict(prev.flows_by_key), dict(prev.oids), dict(prev.problems)
        changed = _changed_keys(source, prev.source)
        for k in changed:
            flows.pop(k, None)
            oids.pop(k, None)
            problems.pop(k, None)
    for key in changed:
        oid = source.get(key)
        if oid is None:
            continue
        got = None
        if donor is not None and donor.source.get(key) == oid:
            got = donor.flows_by_key.get(key) or donor.problems.get(key)
        if got is None:
            got = read(key, oid)
        if isinstance(got, Problem):
            problems[key] = got
            oids[key] = oid  # an unreadable base still differs from anything valid
        else:
            oids[key] = got.oid
            flows[key] = got if keep_data else got.light()
    return _Derived(source, flows, oids, problems)


class _PlanInputs(NamedTuple):
    base: Mapping[FlowKey, str]
    desired: Mapping[FlowKey, str]
    live: Mapping[FlowKey, str]
    invalid: Mapping[FlowKey, str]
    policy: Policy
    live_complete: bool

    def changed_since(self, old: "_PlanInputs") -> set[FlowKey]:
        changed: set[FlowKey] = set()
        for new_map, old_map in ((self.base, old.base), (self.desired, old.desired), (self.live, old.live),
                                 (self.invalid, old.invalid)):
            if new_map is not old_map:
                changed |= _changed_keys(new_map, old_map)
        return changed


def _changed_keys(new: Mapping[FlowKey, Any], old: Mapping[FlowKey, Any]) -> set[FlowKey]:
    """Keys added, removed or with another value (dict lookups: no tuple hashing of items)."""
    get = old.get
    changed = {k for k, v in new.items() if get(k) != v}
    if len(new) != len(old) or changed:
        changed.update(k for k in old if k not in new)
    return changed


def _only(mapping: Mapping[FlowKey, str], keys: set[FlowKey]) -> dict[FlowKey, str]:
    return {k: mapping[k] for k in keys if k in mapping}


class _Memo(NamedTuple):
    """What one environment's last read and plan derived from their (immutable) inputs."""

    fingerprint: str
    desired: _Derived
    base: _Derived
    planned: tuple[_PlanInputs, dict[FlowKey, Step]] | None


@dataclass(frozen=True)
class Outcome:
    """What one run did (or, for a dry run, would do)."""

    env: str
    plan: Plan
    dry_run: bool
    tip: str | None
    marker: str | None
    commit: str | None = None  # a commit the run made on the branch (adopt / export)
    drift_commit: str | None = None  # a commit the run made on drift/<env>
    failed: Mapping[FlowKey, str] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    done: tuple[Step, ...] = ()
    refused: str | None = None  # a dry run: why the sync would refuse to carry the plan out
    stale: bool = False  # a dry run made while another process held the environment
    unreadable: int = 0  # live entries that could not be read as flows (counted as invalid)

    @property
    def states(self) -> dict[str, int]:
        counts = self.plan.counts()
        counts["invalid"] += self.unreadable
        if not self.dry_run:
            # Steps carried out are now in sync; failed ones keep their state.
            for s in self.done:
                if s.state != State.IN_SYNC:
                    counts[s.state.value] -= 1
                    counts[State.IN_SYNC.value] += 1
        return counts

    @property
    def conflicts(self) -> int:
        return sum(1 for s in self.plan.steps if s.action == Action.CONFLICT)

    @property
    def errors(self) -> int:
        return len(self.failed) + len(self.problems) + (self.refused is not None)

    def as_dict(self) -> dict[str, Any]:
        done = {s.key for s in self.done}
        return {
            "environment": self.env,
            "dry_run": self.dry_run,
            "branch_tip": self.tip,
            "applied": self.marker,
            "commit": self.commit,
            "drift_commit": self.drift_commit,
            "counts": self.states,
            "steps": [
                {**s.as_dict(), "done": s.key in done, "error": self.failed.get(s.key)}
                for s in self.plan.steps
                if s.action != Action.NONE
            ],
            "problems": [p.as_dict() for p in self.problems],
            "refused": self.refused,
            "stale": self.stale,
        }


class Engine:
    """Reconciles the environments of one config against one repository."""

    def __init__(self, config: Config, *, store: GitStore | None = None, drivers: Mapping[str, Driver] | None = None,
                 create_repository: bool = False, redactor: Redactor | None = None):
        """``create_repository``: an export may start a new repository (so may a service with a
        remote, whose local repository is a copy of the server's); everything else needs it there."""
        self.config = config
        self.redactor = redactor if redactor is not None else Redactor()  # learns each secret as it is loaded
        self.store = store or GitStore.from_config(
            config.repository, create=create_repository or bool(config.repository.remote))
        self._drivers: dict[str, Driver] = dict(drivers or {})
        self._memo: dict[str, _Memo] = {}  # per environment: what the last read and plan derived
        self._validators: dict[str, Callable[[Any], list[tuple[str, str]]] | None] = {}

    def driver(self, env: EnvironmentConfig) -> Driver:
        if env.name not in self._drivers:
            self._drivers[env.name] = make_driver(env)
        return self._drivers[env.name]

    # -- step 0: read ------------------------------------------------------------

    def read(self, env: EnvironmentConfig, progress: ProgressFn | None = None, *, creating: bool = False) -> Snapshot:
        """The three sides in canonical form.

        A missing branch, or a branch whose flows folder is missing or not a
        folder, is an error (:class:`StallError`), never "no flows": read as
        empty, it would delete every flow. Only an export (``creating``) may
        start from a missing branch or folder, since it writes the
        environment's flows there.

        Trees and live snapshots are immutable; what was derived from the last
        ones is patched for the keys whose blob ids changed, so the cost of a
        read grows with what changed, not with the number of flows.
        """
        branch = env.branch_name
        self.store.ensure_present()
        tip, marker = self.store.tip(branch), self.store.marker(env.name)
        if tip is None and not creating:
            raise StallError(
                f"environment {env.name}: {self.store.missing_branch(branch)}; nothing was changed. "
                f"Check `branch` of environment {env.name} in the config, or run `reconciler export {env.name}` "
                "to create the branch from the environment's flows"
            )
        at_tip = self.store.flows_at(tip, env.folder)
        if tip is not None and at_tip.missing is not None:
            if at_tip.missing != "absent":
                raise StallError(
                    f"environment {env.name}: {branch}:{env.folder} is {at_tip.missing}, not a folder of flows; "
                    f"nothing was changed. Put the flows back at {env.folder}/<name>/<version>.json"
                )
            if not (creating or env.allow_empty):
                raise StallError(
                    f"environment {env.name}: {branch} has no {env.folder}/ folder, which would mean that every "
                    "flow was deleted; nothing was changed. Check `folder` in the config; if every flow is meant "
                    f"to go, set allow_empty = true for environment {env.name}"
                )
        at_marker = at_tip if marker == tip else self.store.flows_at(marker, env.folder)
        templating = self._templating(env)
        fingerprint = templating.fingerprint()
        memo = self._memo.get(env.name)
        if memo is not None and memo.fingerprint != fingerprint:
            memo = None  # a parameter or secret changed: re-render everything
        validate = self._validator(env)
        store = self.store

        def from_tip(key: FlowKey, oid: str) -> CanonicalFlow | Problem:
            where = f"{branch}:{flow_path(env.folder, key.name, key.version)}"
            try:
                size = store.blob_size(oid)
                if size > MAX_FLOW_BYTES:
                    return Problem(where, f"{size} bytes is larger than the {MAX_FLOW_BYTES}-byte limit for a flow", "", str(key))
                raw = store.read_blob(oid)
            except RetryableError as exc:  # the entry's object is missing or unreadable: this flow only
                return Problem(where, f"cannot be read ({exc}); fix or remove it in git", "", str(key))
            return read_flow(raw, env.flow_identity, env.rules, where=where, expect=key,
                             validate=validate, render=templating.renderer(raw))

        desired = _derive(at_tip.flows, memo.desired if memo else None, from_tip, None, keep_data=False)

        def from_marker(key: FlowKey, oid: str) -> CanonicalFlow | Problem:
            try:
                raw = store.read_blob(oid)
            except RetryableError as exc:
                return Problem(f"applied:{key}", f"cannot be read ({exc})", "", str(key))
            return read_flow(raw, env.flow_identity, env.rules, where=f"applied:{key}",
                             expect=key, render=templating.renderer(raw))

        base = _derive(at_marker.flows, memo.base if memo else None, from_marker, desired, keep_data=False)
        live = self.driver(env).export(progress=_phase(progress, "export"))
        self._memo[env.name] = _Memo(fingerprint, desired, base, memo.planned if memo else None)
        redact = templating.redact  # a schema or platform message may quote a rendered secret
        invalid = {k: f"invalid in git: {why}" for k, why in at_tip.bad.items()}
        invalid.update((k, redact(f"invalid in git: {p.message}")) for k, p in desired.problems.items())
        for key, reason in live.invalid.items():
            invalid.setdefault(key, redact(f"invalid in the environment: {reason}"))
        problems = tuple(replace(p, message=redact(p.message))
                         for p in (*at_tip.problems, *desired.problems.values(), *live.problems))
        return Snapshot(
            env.name, branch, tip, marker, base.oids, desired.flows_by_key, dict(at_tip.flows), live, invalid,
            problems, desired.oids, at_marker.flows, templating,
        )

    def _templating(self, env: EnvironmentConfig) -> Templating:
        """Parameters and secrets of an environment (secrets read from files and env vars now)."""
        try:
            secrets = env.load_secrets()
        except OSError as exc:
            raise RetryableError(f"environment {env.name}: cannot read secrets_dir {env.secrets_dir}: {exc.strerror}") from exc
        self.redactor.add(secrets.values())
        return Templating(
            params=dict(env.params),
            secrets=secrets,
            secret_pointers=tuple(env.secret_fields),
            secret_keys=tuple(env.secret_keys),
            keep=(env.identity.name, env.identity.version),
            secret_allow=tuple(env.secret_allow),
        )

    def _validator(self, env: EnvironmentConfig):
        if env.name not in self._validators:
            self._validators[env.name] = load_validator(env.schema_) if env.schema_ is not None else None
        return self._validators[env.name]

    def plan(self, env: EnvironmentConfig, snap: Snapshot, policy: Policy | None = None) -> Plan:
        """The plan for a snapshot; only keys whose inputs changed since the last plan are decided again."""
        policy = policy or env.policy
        inputs = _PlanInputs(snap.base, snap.desired_oids_map, snap.live.oids(), dict(snap.invalid), policy,
                             snap.live.complete)
        memo = self._memo.get(env.name)
        last = memo.planned if memo is not None else None
        if last is not None and last[0].policy == policy and last[0].live_complete == inputs.live_complete:
            changed = inputs.changed_since(last[0])
            steps = dict(last[1])
            for key in changed:
                steps.pop(key, None)
            sub = plan(*(_only(m, changed) for m in (inputs.base, inputs.desired, inputs.live)), policy,
                       invalid=_only(inputs.invalid, changed), live_complete=inputs.live_complete)
            steps.update((s.key, s) for s in sub.steps)
        else:
            full = plan(inputs.base, inputs.desired, inputs.live, policy, invalid=inputs.invalid,
                        live_complete=inputs.live_complete)
            steps = {s.key: s for s in full.steps}
        if memo is not None:
            self._memo[env.name] = memo._replace(planned=(inputs, steps))
        return Plan(tuple(steps[k] for k in sorted(steps)))

    # -- commands ------------------------------------------------------------------

    def sync(
        self,
        name: str,
        *,
        dry_run: bool = False,
        progress: ProgressFn | None = None,
        before: Callable[[EnvironmentConfig], object] | None = None,
        allow_mass_delete: bool = False,
    ) -> Outcome:
        """Reconcile one environment per its policy.

        ``before`` runs under the environment's lock ahead of the read (the
        service brings the branch up to the remote's there). A dry run does not
        wait for the lock: when another process holds it, it reads anyway,
        without the crash recovery, and the outcome says it may be stale.
        """
        env = self.config.env(name)
        return self._run(env, env.policy, dry_run=dry_run, progress=progress, allowed=None, before=before,
                         allow_mass_delete=allow_mass_delete)

    def export(self, name: str, *, progress: ProgressFn | None = None, allow_mass_delete: bool = False) -> Outcome:
        """Commit the environment's live flows to its branch.

        This is a reconcile with drift policy ``adopt`` that writes nothing to the
        environment: changes made in git but not yet synced are left pending (and
        a flow changed on both sides is a conflict), so an export never undoes a
        push. It is the one command that may create the branch (from a readable
        environment holding flows).
        """
        env = self.config.env(name)
        policy = Policy(drift="adopt", prune=env.prune, override=env.override)
        return self._run(env, policy, dry_run=False, progress=progress, allowed=frozenset({Action.ADOPT, Action.ADVANCE}),
                         creating=True, allow_mass_delete=allow_mass_delete)

    def _run(self, env, policy: Policy, *, dry_run: bool, progress, allowed, before=None, creating: bool = False,
             allow_mass_delete: bool = False) -> Outcome:
        with self.store.lock(env.name, required=not dry_run) as held:
            driver = self.driver(env)
            if held and isinstance(driver, Recoverable):
                driver.recover()  # a crashed run's leftovers, before anything reads the environment
            if before is not None:
                before(env)
            for attempt in range(5):
                snap = self.read(env, progress, creating=creating)
                p = self.plan(env, snap, policy)
                refusal = None if allow_mass_delete else mass_deletion(env, snap, p, allowed)
                if dry_run:
                    return Outcome(env.name, p, True, snap.tip, snap.marker, problems=snap.problems,
                                   refused=refusal, stale=not held, unreadable=_unreadable(snap))
                if refusal is not None:
                    raise MassDeletionRefused(refusal)
                if creating and snap.tip is None and not (snap.live.flows or snap.live.problems or snap.live.invalid):
                    raise StallError(
                        f"environment {env.name}: {driver.location} holds no flows, so there is nothing to export "
                        f"and {env.branch_name} is not created; check the environment's location in the config"
                    )
                try:
                    return self._apply(env, snap, p, allowed, progress)
                except (BranchMovedError, LiveMovedError) as exc:
                    log.info("state moved, re-planning", environment=env.name, attempt=attempt + 1, error=str(exc))
            raise RetryableError(f"{env.branch_name} or the environment kept moving during 5 attempts; try again")

    # -- apply -----------------------------------------------------------------------

    def _apply(self, env, snap: Snapshot, p: Plan, allowed, progress) -> Outcome:
        steps = [s for s in p.changes if allowed is None or s.action in allowed]
        if not steps and snap.marker is not None:
            # Nothing to do: the marker already tells the truth.
            return Outcome(env.name, p, False, snap.tip, snap.marker, problems=snap.problems,
                           unreadable=_unreadable(snap))
        failed: dict[FlowKey, str] = {}
        drift_commit = self._save_drift(env, snap, steps, failed)
        tip, commit, adopted = self._adopt(env, snap, steps, failed)
        if commit is not None and snap.tip is None:
            self.store.point_head_at(env.branch_name)  # so that a clone checks something out
        written = self._write(env, snap, steps, failed, progress)
        self._verify(env, written, failed)
        done = tuple(
            s for s in steps
            if s.key not in failed and (s.action != Action.ADOPT or s.key in adopted)
        )
        marker = self._mark(env, snap, tip, p, done, adopted)
        failed = {k: snap.templating.redact(why) for k, why in failed.items()}
        for s in done:
            log.info("flow reconciled", environment=env.name, flow=str(s.key), action=s.action.value, commit=tip, reason=s.reason)
        for key, why in failed.items():
            log.warning("flow not reconciled", environment=env.name, flow=str(key), error=why, commit=tip)
        return Outcome(env.name, p, False, tip, marker, commit, drift_commit, failed, snap.problems, done,
                       unreadable=_unreadable(snap))

    def _for_git(self, env, snap: Snapshot, key: FlowKey) -> bytes:
        """A live flow as git may hold it: placeholders back in, nothing secret left.

        Raises :class:`_Unsafe` naming the pointer (never the value) when the
        flow holds a secret that cannot be replaced by a placeholder.
        """
        flow = snap.live.flows[key]
        data = flow.data
        if data is None:  # a snapshot that keeps ids only: read the bytes again, as planned?
            loaded = getattr(self.driver(env), "load", lambda _k: None)(key)
            if loaded is None or loaded.oid != flow.oid or loaded.data is None:
                raise _Moved(f"{key} changed in the environment since it was read; the next run re-checks it")
            data = loaded.data
        t = snap.templating
        if t.quick_clean(data):
            return data  # provably nothing to put back and nothing secret: no walk
        doc = parse_json(data)
        if t.active:
            doc, problems = t.templatize(doc)
            if problems:
                raise _Unsafe(problems)
        problems = t.scan(doc)
        if problems:
            raise _Unsafe(problems)
        return canonicalize(doc, env.rules)

    def _save_drift(self, env, snap: Snapshot, steps: list[Step], failed: dict[FlowKey, str]) -> str | None:
        saving: dict[FlowKey, bytes] = {}
        for s in steps:
            if s.overwrites_live:
                try:
                    saving[s.key] = self._for_git(env, snap, s.key)
                except _Unsafe as exc:
                    failed[s.key] = f"not overwritten: its live version cannot be saved to drift/{env.name}: {exc}"
                except _Moved as exc:
                    failed[s.key] = f"not overwritten: {exc}"
        if not saving:
            return None
        lines = "\n".join(f"- {k} ({next(s.reason for s in steps if s.key == k)})" for k in sorted(saving))
        msg = snap.templating.redact(f"drift({env.name}): save live flows before overwriting them\n\n{lines}\n")
        return self.store.save_drift(env.name, env.folder, saving, msg)

    def _adopt(self, env, snap: Snapshot, steps: list[Step], failed: dict[FlowKey, str]):
        adopts = [s for s in steps if s.action == Action.ADOPT]
        if not adopts:
            return snap.tip, None, {}
        # A plain name differing only in case from another would collide on a
        # case-insensitive checkout: refuse the newcomer, keep the rest.
        existing = {encode(k.name) for k in snap.tip_blobs}
        new_names = [encode(s.key.name) for s in adopts if s.live is not None and s.key not in snap.tip_blobs]
        clash = {b for a, b in case_collisions([*sorted(existing), *new_names])}
        changes: dict[FlowKey, bytes | None] = {}
        for s in adopts:
            if s.live is not None and s.key not in snap.tip_blobs and encode(s.key.name) in clash:
                failed[s.key] = f"name {s.key.name!r} differs only in case from a flow already in git; rename it"
                continue
            try:
                changes[s.key] = None if s.live is None else self._for_git(env, snap, s.key)
            except _Unsafe as exc:
                failed[s.key] = f"not committed (secret scan): {exc}"
            except _Moved as exc:
                failed[s.key] = f"not committed: {exc}"
        if not changes:
            return snap.tip, None, {}
        commit = self.store.commit_changes(snap.branch, snap.tip, env.folder, changes,
                                          snap.templating.redact(_adopt_message(env.name, snap, changes)))
        blobs = {k: (None if v is None else blob_id(v)) for k, v in changes.items()}
        return (commit or snap.tip), commit, blobs

    def _write(self, env, snap: Snapshot, steps: list[Step], failed, progress) -> list[Step]:
        writes = [s for s in steps if s.action in (Action.IMPORT, Action.DELETE) and s.key not in failed]
        if not writes:
            return []
        changes = []
        for s in writes:
            data = None
            if s.action == Action.IMPORT:
                data = self._desired_data(env, snap, s)
                if data is None:
                    failed[s.key] = "its version in git changed while it was being read; the next run re-checks it"
                    continue
            changes.append(Change(s.key, data, s.live))
        failed.update(self.driver(env).apply(changes, progress=_phase(progress, "write")))
        return [s for s in writes if s.key not in failed]

    def _desired_data(self, env, snap: Snapshot, step: Step) -> bytes | None:
        """The rendered canonical bytes of git's version (read again: snapshots keep ids only)."""
        oid = snap.tip_blobs.get(step.key)
        if oid is None:
            return None
        raw = self.store.read_blob(oid)
        got = read_flow(raw, env.flow_identity, env.rules, where=step.key, expect=step.key,
                        render=snap.templating.renderer(raw))
        return got.data if isinstance(got, CanonicalFlow) and got.oid == step.desired else None

    def _verify(self, env, written: list[Step], failed: dict[FlowKey, str]) -> None:
        if not written:
            return
        driver = self.driver(env)
        reread = getattr(driver, "reread", None)  # optional: re-read just these flows
        if reread is not None:
            now_oids = reread([s.key for s in written])
        else:
            after = driver.export()
            now_oids = {s.key: (f.oid if (f := after.flows.get(s.key)) else None) for s in written}
        for s in written:
            want = s.desired if s.action == Action.IMPORT else None
            got = now_oids.get(s.key)
            if got != want:
                failed[s.key] = (
                    "read-after-write check failed: the environment does not hold what was written "
                    f"(expected {want and want[:12]}, found {got and got[:12]}); if the platform rewrites "
                    "fields on import, list them in the environment's `ignore`"
                )

    def _mark(self, env, snap: Snapshot, tip: str | None, p: Plan, done: tuple[Step, ...], adopted: Mapping[FlowKey, str | None]) -> str | None:
        """Move the marker to a commit whose tree is what the environment now holds.

        The tree holds git's own blobs (with placeholders, never secrets): the
        tip's blob where the environment now matches the tip, the adopted blob
        for adopted flows, the old marker's blob where nothing was done.
        """
        done_keys = {s.key for s in done}
        tip_flows = self.store.flows_at(tip, env.folder).flows if tip else {}
        edits: dict[FlowKey, str | None] = {}
        for s in p.steps:
            if s.action == Action.NONE:
                continue  # in sync: the tip's blob, already in the tip's tree
            key = s.key
            if key in done_keys:
                want = adopted[key] if s.action == Action.ADOPT else (None if s.action == Action.DELETE else snap.tip_blobs.get(key))
            else:
                want = snap.base_blobs.get(key)
            if tip_flows.get(key) != want:
                edits[key] = want
        if tip is None and not edits:
            return snap.marker
        if not edits and tip is not None:
            target = tip
        else:
            tree = self.store.tree_with(tip, env.folder, edits)
            n = len(edits)
            target = self.store.commit(
                None,
                tip,
                tree,
                f"reconciler: what {env.name} holds ({n} flow{'s' * (n != 1)} differ from the branch)\n",
            )
        if target != snap.marker:
            self.store.set_marker(env.name, target)
        return target


def _unreadable(snap: Snapshot) -> int:
    """Live entries that are not flows at all (unreadable, not JSON): no key, so no step counts them."""
    return sum(1 for p in snap.live.problems if not p.flow)


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


class _Moved(Exception):
    """A live flow that is no longer what the plan saw."""


class _Unsafe(Exception):
    """A flow that must not be written to git as it is (secret scan)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p or '/'}: {m}" for p, m in problems[:5]))


def _adopt_message(env: str, snap: Snapshot, changes: Mapping[FlowKey, bytes | None]) -> str:
    added = sorted(k for k, v in changes.items() if v is not None and k not in snap.tip_blobs)
    changed = sorted(k for k, v in changes.items() if v is not None and k in snap.tip_blobs)
    removed = sorted(k for k, v in changes.items() if v is None)
    parts = []
    for word, keys in (("add", added), ("update", changed), ("remove", removed)):
        if keys:
            parts.append(f"{word} {len(keys)}")
    lines = [f"{env}: {', '.join(parts)} flow{'s' * (len(changes) != 1)} from the environment", ""]
    for word, keys in (("added", added), ("changed", changed), ("removed", removed)):
        lines.extend(f"{word}: {k}" for k in keys)
    lines += ["", f"Environment: {env}"]
    return "\n".join(lines) + "\n"


def _phase(progress: ProgressFn | None, phase: str):
    if progress is None:
        return None
    return lambda done, total: progress(phase, done, total)
