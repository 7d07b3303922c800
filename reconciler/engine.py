"""The engine: one reconcile of one environment as a short list of named steps.

``read`` gathers the three sides (applied marker A, branch tip D, live L) in
canonical form; :func:`reconciler.plan.plan` decides (again only for what
changed since the last plan, :mod:`reconciler.readcache`); :mod:`reconciler.apply`
carries the plan out step by step (save drift, adopt, write, verify, mark), each
idempotent so a crash anywhere is repaired by the next run. A branch or a live
flow that moves meanwhile makes the engine read and plan again.

The outcome is frozen data (:mod:`reconciler.outcome`); the CLI and the service
render it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from reconciler.apply import Apply, carry_out, mass_deletion
from reconciler.drivers import Driver, Indexed, IndexedLater, Preflighted, Recoverable, Remembering, Rendering, presenter
from reconciler.errors import BranchMovedError, LiveMovedError, MassDeletionRefused, Problem, RetryableError, StallError
from reconciler.flows import CanonicalFlow, FlowKey
from reconciler.gitform import read_git_flow
from reconciler.gitstore import FlowTree, GitStore
from reconciler.kinds import kind_problems
from reconciler.layoutdrift import ignore_layout
from reconciler.logsetup import bound_contextvars, get_logger
from reconciler.migrate import Migration, migrate_env, note_written
from reconciler import quarantine, suspension
from reconciler.names import flow_path
from reconciler.outcome import Outcome, RunResult, Snapshot
from reconciler.plan import Action, Plan, Policy
from reconciler.rerender import keep as keep_rendered, remember, rerendered
from reconciler.readcache import Memo, PlanInputs, derive, replan
from reconciler.readindex import KeptReads, derivation, fingerprint as reads_fingerprint
from reconciler.redaction import Redactor
from reconciler.rendered import Rendered
from reconciler.templating import Templating

if TYPE_CHECKING:
    from reconciler.config import Config, EnvironmentConfig

__all__ = ["Engine", "Snapshot", "Outcome", "RunResult", "make_driver", "exportable", "ProgressFn"]

log = get_logger("reconciler.engine")

ProgressFn = Callable[[str, int, int | None], None]
DRIVER_MEMORY = "refs/reconciler/driver/"  # per environment: what its driver keeps (Remembering)


def make_driver(env: EnvironmentConfig) -> Driver:
    """Build the driver an environment's config names."""
    try:
        return env.build_driver()
    except NotImplementedError as exc:
        raise StallError(f"environment {env.name}: {exc}") from exc


def exportable(env: EnvironmentConfig, driver: Driver) -> None:
    """Raise when environment ``env`` cannot be exported, before anything is written: a one-way
    environment (rendered, never read back), or one whose driver says it is not there to read."""
    if isinstance(driver, Rendering):
        raise StallError(f"environment {env.name}: nothing was exported: {driver.one_way}")
    if isinstance(driver, Preflighted):
        driver.preflight()


class Engine:
    """Reconciles the environments of one config against one repository."""

    def __init__(self, config: Config, *, store: GitStore | None = None, drivers: Mapping[str, Driver] | None = None,
                 create_repository: bool = False, redactor: Redactor | None = None, keep_reads: bool = True,
                 keep_later: bool = False):
        """``create_repository``: an export may start a new repository (so may a service with a
        remote, whose local repository is a copy of the server's); everything else needs it there.
        ``keep_reads``: what a read derived is kept beside the repository for the next process
        (:mod:`reconciler.readindex`, the drivers' :class:`~reconciler.drivers.Indexed` indexes).
        ``keep_later``: those files are written by :meth:`keep`, not at the end of every run (the
        service writes them when it is idle, off a push's latency; a crash before costs the next
        process a read of what changed since, never a wrong answer: they are caches of facts)."""
        self.config = config
        self.redactor = redactor if redactor is not None else Redactor()  # learns each secret as it is loaded
        self.store = store or GitStore.from_config(
            config.repository, create=create_repository or bool(config.repository.remote))
        self._drivers: dict[str, Driver] = dict(drivers or {})
        self._memo: dict[str, Memo] = {}  # per environment: what the last read and plan derived
        self._validators: dict[str, Callable[[Any], list[tuple[str, str]]] | None] = {}
        self._rerender_seen: dict[str, dict[tuple, bool]] = {}  # per environment: is this drift a re-render?
        self._kept = KeptReads(self.store) if keep_reads else None
        self._keep_later = keep_later
        self._layout: dict[str, dict[tuple[str, str], bool]] = {}  # per environment: layout-only comparisons

    @classmethod
    def for_export(cls, config: Config, name: str) -> Engine:
        """The engine an export of environment ``name`` runs on: it may create the repository, but only
        once the environment is shown exportable (:func:`exportable`). A mistyped repository path
        with a mistyped folder must not leave an empty repository behind, after which every command
        would find "a repository" rather than say there is none."""
        if not GitStore.is_repository(config.repository.path):
            env = config.env(name)
            driver = make_driver(env)
            try:
                exportable(env, driver)
            finally:
                driver.close()
        return cls(config, create_repository=True)

    def close(self) -> None:
        """Release every driver's connections."""
        for driver in self._drivers.values():
            driver.close()

    def driver(self, env: EnvironmentConfig) -> Driver:
        if env.name not in self._drivers:
            driver = self._drivers[env.name] = make_driver(env)
            if self._kept is not None and isinstance(driver, Indexed):
                driver.keep_index(self.store.cache_path(env.name, "live"))
                if self._keep_later and isinstance(driver, IndexedLater):
                    driver.save_index_later()
        return self._drivers[env.name]

    def keep(self, name: str, *, wanted: Callable[[], bool] = lambda: False) -> bool:
        """Write what the runs of environment ``name`` read and did not keep yet (``keep_later``): the
        kept reads, the driver's index, and the re-render map whole (under the environment's lock, as
        its runs write it; when another process holds the lock, the map keeps its log until later).
        Between the three, ``wanted()`` (a run is asked for) stops it: False, the rest is for later."""
        if self._kept is not None:
            self._kept.flush(name)
        driver = self._drivers.get(name)
        if isinstance(driver, IndexedLater):
            if wanted():
                return False
            driver.save_index()
        if self._keep_later:
            if wanted():
                return False
            try:
                with self.store.lock(name):
                    keep_rendered(self.store, name)
            except RetryableError:
                pass
        return True

    # -- step 0: read ------------------------------------------------------------

    def read(self, env: EnvironmentConfig, progress: ProgressFn | None = None, *, creating: bool = False,
             desired: FlowTree | None = None, label: str | None = None) -> Snapshot:
        """The three sides in canonical form.

        A missing branch, or a branch whose flows folder is missing or not a
        folder, is an error (:class:`StallError`), never "no flows": read as
        empty, it would delete every flow. Only an export (``creating``) may
        start from a missing branch or folder, since it writes the
        environment's flows there.

        Trees and live snapshots are immutable; what was derived from the last
        ones is patched for the keys whose blob ids changed, so the cost of a
        read grows with what changed, not with the number of flows.

        ``desired``: the flows to take for D instead of the branch tip's (``plan
        --against`` passes those of a merge computed in memory), named ``label``
        in messages.
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
        templating = self._templating(env)
        fingerprint = templating.fingerprint()
        memo = self._recalled(env, fingerprint)
        limit = self.config.repository.max_flow_bytes
        own = desired is None  # D is the branch tip's (not a merge computed in memory): worth keeping
        kept = reads_fingerprint(env, fingerprint, limit) if self._kept is not None else ""
        shared = derivation(env, fingerprint, limit) if self._kept is not None else ""
        at_tip = desired if desired is not None else self.store.flows_at(tip, env.folder)
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
        if tip is None and creating:
            # No branch to compare with: the marker (of a branch deleted since) says nothing about what is
            # in git, so the export starts from scratch instead of reading every flow as "deleted in git".
            at_marker = FlowTree(None, {})
        else:
            at_marker = at_tip if marker == tip and desired is None else self.store.flows_at(marker, env.folder)
        validate = self._validator(env)
        store = self.store

        driver = self.driver(env)
        present = presenter(driver, templating.secrets)
        rendered = Rendered()  # what this read renders from the tip, for the write (not read twice)

        def from_tip(key: FlowKey, oid: str) -> CanonicalFlow | Problem:
            where = f"{label or branch}:{flow_path(env.folder, key.name, key.version)}"
            return rendered.keep(key, oid, present(read_git_flow(store, oid, env, where=where, key=key,
                                                                 templating=templating, validate=validate,
                                                                 limit=limit), where))

        desired = derive(at_tip.tree, at_tip.flows, memo.desired if memo else None, from_tip)

        def from_marker(key: FlowKey, oid: str) -> CanonicalFlow | Problem:
            where = f"applied:{key}"
            return present(read_git_flow(store, oid, env, where=where, key=key, templating=templating), where)

        if memo is not None and at_marker.tree is not None and memo.desired.tree == at_marker.tree != memo.base.tree:
            base = memo.desired  # the marker moved to the tree the last read derived for the tip: reused whole
        else:
            base = derive(at_marker.tree, at_marker.flows, memo.base if memo else None, from_marker, desired)
        if isinstance(driver, Remembering):
            driver.recall(self.store.read_state(DRIVER_MEMORY + env.name))
        live = driver.export(progress=_phase(progress, "export"))
        self._memo[env.name] = Memo(fingerprint, desired, base, memo.planned if memo else None)
        if self._kept is not None and own:
            self._kept.note(env.name, kept, at_tip, desired, at_marker, base, shared)
        redact = templating.redact  # a schema or platform message may quote a rendered secret
        invalid = {k: f"invalid in git: {why}" for k, why in at_tip.bad.items()}
        invalid.update((k, redact(f"invalid in git: {p.message}")) for k, p in desired.problems.items())
        for key, reason in live.invalid.items():
            invalid.setdefault(key, redact(f"invalid in the environment: {reason}"))
        problems = tuple(replace(p, message=redact(p.message))
                         for p in (*at_tip.problems, *desired.problems.values(), *live.problems))
        return Snapshot(
            env=env.name, branch=branch, tip=tip, marker=marker, base_ids=base.ids, desired_ids=desired.ids,
            desired=desired.flows, tip_blobs=at_tip.flows, base_blobs=at_marker.flows, live=live, invalid=invalid,
            problems=problems, templating=templating,
            quarantine=quarantine.load(self.store.read_state(quarantine.QUARANTINE_PREFIX + env.name)),
            suspension=suspension.load(self.store.read_state(suspension.SUSPEND_PREFIX + env.name)),
            rendered=rendered,
        )

    def _recalled(self, env: EnvironmentConfig, fingerprint: str) -> "Memo | None":
        """What was derived from git for ``env`` by this engine, or kept by the last process (whose
        clean trees are then given to the store before any tree is read)."""
        memo = self._memo.get(env.name)
        if memo is not None and memo.fingerprint != fingerprint:
            memo = None  # a parameter or secret changed: re-render everything
        if memo is None and self._kept is not None:
            limit = self.config.repository.max_flow_bytes  # else what another environment derived alike
            got = self._kept.recall(env.name, env.folder, reads_fingerprint(env, fingerprint, limit),
                                    derivation(env, fingerprint, limit))
            if got is not None:
                memo = self._memo[env.name] = Memo(fingerprint, got.desired, got.base)
        return memo

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
        """The environment's JSON Schema (if it has one) and the rules of each flow's kind."""
        if env.name not in self._validators:
            schema = None
            if env.schema_ is not None:  # only then the schema module (most environments have none)
                from reconciler.schemas import load_validator

                schema = load_validator(env.schema_)

            def validate(doc: Any) -> list[tuple[str, str]]:
                return [*(schema(doc) if schema is not None else ()), *kind_problems(doc)]

            self._validators[env.name] = validate
        return self._validators[env.name]

    def plan(self, env: EnvironmentConfig, snap: Snapshot, policy: Policy | None = None, *,
             hold: str | None = None) -> Plan:
        """The plan for a snapshot; only keys whose inputs changed since the last plan are decided again.

        Steps of quarantined flows, of suspended ones, and (``hold``: a closed sync window) every changing
        step are held back: planned and reported, not carried out."""
        inputs = PlanInputs(snap.base_ids, snap.desired_ids, snap.live.oids(), snap.invalid, policy or env.policy,
                            snap.live.complete)
        memo = self._memo.get(env.name)
        p, steps = replan(inputs, memo.planned if memo is not None else None)
        if memo is not None:
            self._memo[env.name] = memo.with_plan(inputs, steps)
        p = rerendered(self.driver(env), self.store, env, snap, p, policy or env.policy,
                       self._rerender_seen.setdefault(env.name, {}))
        if env.layout == "ignore":
            p = ignore_layout(env, snap, p, policy or env.policy, store=self.store, driver=self.driver(env),
                              memory=self._layout.setdefault(env.name, {}))
        return suspension.hold_back(quarantine.hold_back(p, snap.quarantine), snap.suspension or suspension.Suspension(),
                                    extra=hold)

    # -- commands ------------------------------------------------------------------

    def sync(
        self,
        name: str,
        *,
        dry_run: bool = False,
        progress: ProgressFn | None = None,
        before: Callable[[EnvironmentConfig], object] | None = None,
        allow_mass_delete: bool = False,
        hold: str | None = None,
    ) -> Outcome:
        """Reconcile one environment per its policy (``hold``: plan only, the changes held back for this reason).

        ``before`` runs under the environment's lock ahead of the read (the
        service brings the branch up to the remote's there). A dry run does not
        wait for the lock: when another process holds it, it reads anyway,
        without the crash recovery, and the outcome says it may be stale.
        """
        env = self.config.env(name)
        return self._run(env, env.policy, dry_run=dry_run, progress=progress, allowed=None, before=before,
                         allow_mass_delete=allow_mass_delete, hold=hold)

    def export(self, name: str, *, progress: ProgressFn | None = None, allow_mass_delete: bool = False) -> Outcome:
        """Commit the environment's live flows to its branch.

        This is a reconcile with drift policy ``adopt`` that writes nothing to the
        environment: changes made in git but not yet synced are left pending (and
        a flow changed on both sides is a conflict), so an export never undoes a
        push. It is the one command that may create the branch (from a readable
        environment holding flows).
        """
        env = self.config.env(name)
        exportable(env, self.driver(env))
        policy = Policy(drift="adopt", prune=env.prune, override=env.override)
        migrated: list[Migration] = []

        def to_form(e: EnvironmentConfig) -> None:  # under the lock: flows git holds in another form move first
            self._recalled(e, self._templating(e).fingerprint())  # the kept trees: the check lists no tree
            migrated.append(migrate_env(self.store, e, missing_ok=True))

        out = self._run(env, policy, dry_run=False, progress=progress, allowed=frozenset({Action.ADOPT, Action.ADVANCE}),
                        creating=True, allow_mass_delete=allow_mass_delete, before=to_form)
        for made in (migrated[0].commit if migrated else None, out.commit):
            if made is not None:  # what this export wrote is in the form: the next check need not read it
                note_written(self.store, env, made)
        return replace(out, migrated=migrated[0]) if migrated and migrated[0].commit else out

    def _run(self, env, policy: Policy, *, dry_run: bool, progress, allowed, before=None, creating: bool = False,
             allow_mass_delete: bool = False, hold: str | None = None) -> Outcome:
        # Every log line of the run (drivers' retries included) names the environment.
        try:
            return self._locked_run(env, policy, dry_run=dry_run, progress=progress, allowed=allowed, before=before,
                                    creating=creating, allow_mass_delete=allow_mass_delete, hold=hold)
        finally:
            if self._kept is not None and not self._keep_later:
                self.keep(env.name)  # what this run read, for the next process

    def _locked_run(self, env, policy: Policy, *, dry_run: bool, progress, allowed, before, creating: bool,
                    allow_mass_delete: bool, hold: str | None) -> Outcome:
        with bound_contextvars(environment=env.name), \
                self.store.lock(env.name, required=not dry_run) as locked:
            driver = self.driver(env)
            if locked and isinstance(driver, Recoverable):
                driver.recover()  # a crashed run's leftovers, before anything reads the environment
            if before is not None:
                before(env)
            attempts = self.config.repository.replan_attempts
            for attempt in range(1, attempts + 1):
                snap = self.read(env, progress, creating=creating)
                p = self.plan(env, snap, policy, hold=hold)
                held = hold or (snap.suspension.environment.describe() if snap.suspension and
                                snap.suspension.environment else None)
                refusal = None if allow_mass_delete else mass_deletion(env, snap, p, allowed)
                if dry_run:
                    return Outcome(env.name, p, True, snap.tip, snap.marker, problems=snap.problems,
                                   refused=refusal, stale=not locked, unreadable=_unreadable(snap), held=held)
                if refusal is not None:
                    raise MassDeletionRefused(refusal)
                if creating and snap.tip is None and not (snap.live.flows or snap.live.problems or snap.live.invalid):
                    raise StallError(
                        f"environment {env.name}: {driver.location} holds no flows, so there is nothing to export "
                        f"and {env.branch_name} is not created; check the environment's location in the config"
                    )
                self._lift_quarantine(env, snap)
                try:
                    out = self.apply(env, snap, p, allowed=allowed, progress=progress)
                    if self._kept is not None and out.marker is not None and out.marker != snap.marker:
                        self._kept.marked(env.name, self.store.folder_tree(out.marker, env.folder))
                    remember(self.store, env.name, p, {s.key for s in out.done}, later=self._keep_later)
                    return replace(out, held=held) if held else out
                except (BranchMovedError, LiveMovedError) as exc:
                    log.info("state moved, re-planning", environment=env.name, attempt=attempt, error=str(exc))
            raise RetryableError(f"{env.branch_name} or the environment kept moving during {attempts} attempts; try again")

    def apply(self, env: EnvironmentConfig, snap: Snapshot, p: Plan, *, allowed=None,
              progress: ProgressFn | None = None) -> Outcome:
        """Carry a plan out (``allowed``: only these actions); call it under the environment's lock.
        Raises BranchMovedError / LiveMovedError when a side moved: read and plan again."""
        driver = self.driver(env)
        steps = tuple(s for s in p.changes if allowed is None or s.action in allowed)
        if not steps and snap.marker is not None:
            # Nothing to do: the marker already tells the truth.
            return Outcome(env.name, p, False, snap.tip, snap.marker, problems=snap.problems,
                           unreadable=_unreadable(snap))
        try:
            a = carry_out(Apply(env=env, snap=snap, plan=p, steps=steps, store=self.store, driver=driver,
                                progress=_phase(progress, "write")))
        finally:
            if isinstance(driver, Remembering):  # whatever was written, the driver's memory says so
                memory = driver.memory()
                if memory != self.store.read_state(DRIVER_MEMORY + env.name):
                    self.store.write_state(DRIVER_MEMORY + env.name, dict(memory) if memory else None,
                                           f"reconciler: what the {env.driver} driver of {env.name} remembers\n")
        failed = {k: snap.templating.redact(why) for k, why in a.failed.items()}
        unhealthy = {k: snap.templating.redact(why) for k, why in a.unhealthy.items()}
        if unhealthy:
            self._quarantine(env, snap, p, a.tip, unhealthy)
        done = a.done
        for s in done:  # recorded in one place, after every step
            log.info("flow reconciled", environment=env.name, flow=str(s.key), action=s.action.value, commit=a.tip,
                     reason=s.reason)
        for key, why in failed.items():
            log.warning("flow not reconciled", environment=env.name, flow=str(key), error=why, commit=a.tip)
        return Outcome(env.name, p, False, a.tip, a.marker, a.commit, a.drift_commit, failed, snap.problems, done,
                       unreadable=_unreadable(snap), quarantined=unhealthy, health_checked=a.health_checked)

    # -- quarantine ------------------------------------------------------------------------

    def _quarantine(self, env: EnvironmentConfig, snap: Snapshot, p: Plan, tip: str | None,
                    unhealthy: Mapping[FlowKey, str]) -> None:
        desired = {s.key: s.desired for s in p.steps}
        at = _now_rfc3339()
        entries = dict(snap.quarantine)
        for key, why in unhealthy.items():
            entries[key] = quarantine.Entry(desired[key] or "", tip, why, at)
            log.error("flow unhealthy after the deploy; commit quarantined for it", environment=env.name,
                      flow=str(key), commit=tip, reason=why,
                      action="restored" if env.on_unhealthy == "restore" else "reported")
        self.store.write_state(quarantine.QUARANTINE_PREFIX + env.name, quarantine.dump(entries),
                               f"reconciler: quarantine {len(unhealthy)} flow(s) of {env.name} at {(tip or '')[:12]}\n")

    def _lift_quarantine(self, env: EnvironmentConfig, snap: Snapshot) -> None:
        gone = quarantine.lifted(snap.quarantine, snap.desired_ids)
        if not gone:
            return
        entries = {k: e for k, e in snap.quarantine.items() if k not in gone}
        self.store.write_state(quarantine.QUARANTINE_PREFIX + env.name, quarantine.dump(entries),
                               f"reconciler: lift the quarantine of {len(gone)} flow(s) of {env.name}\n")
        for key in sorted(gone):
            log.info("quarantine lifted: a new version is in git", environment=env.name, flow=str(key))


def _now_rfc3339() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _unreadable(snap: Snapshot) -> int:
    """Live entries that are not flows at all (unreadable, not JSON): no key, so no step counts them."""
    return sum(1 for p in snap.live.problems if not p.flow)


def _phase(progress: ProgressFn | None, phase: str):
    if progress is None:
        return None
    return lambda done, total: progress(phase, done, total)
