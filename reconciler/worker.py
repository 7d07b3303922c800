"""One environment's worker: requests coalesce, one run at a time, backoff after transient failures.

What an error means decides what happens next (see :mod:`reconciler.errors`):

- :class:`RetryableError` (platform down, lock held, push rejected): retry
  with exponential backoff, capped; triggers arriving meanwhile wait for it;
- :class:`StallError` or a run with invalid flows: nothing is retried; the
  environment waits for the next trigger (a new commit, a file change, the
  interval), and a flow whose file did not change stays refused without
  re-logging;
- a conflict: reported, left alone, re-checked on every trigger.

Status, metrics and logs of a run are written in one place, ``_record``. The
worker gets its engine, store, remote, clock and metrics passed in
(:class:`WorkerDeps`), so it is tested without a process or a wall clock.

What the runs read is kept for the next process (:meth:`Engine.keep
<reconciler.engine.Engine.keep>`: the kept reads of git and the folder's stat
index, the re-render map written whole) once the worker has been idle for
``keep_idle`` seconds (a run asked for meanwhile goes first), at the latest
``keep_within`` seconds after the first run that left something to keep, and on
stop: not on a push's latency path. Those files are caches of facts, so a crash
before they are written costs the next process a read of what changed since.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from reconciler.config import EnvironmentConfig
from reconciler.drivers import Watchable
from reconciler.engine import Engine, Outcome, RunResult
from reconciler.errors import MassDeletionRefused, ReconcilerError, RetryableError
from reconciler.events import Event, Notifier, NullNotifier, events_of
from reconciler.logsetup import get_logger
from reconciler.windows import verdict
from reconciler.gitstore import GitStore
from reconciler.metrics import Metrics
from reconciler.plan import Action
from reconciler.remote import Remote

__all__ = ["EnvWorker", "EnvStatus", "WorkerDeps", "retry_delay", "rfc3339"]

log = get_logger("reconciler.worker")


@dataclass
class EnvStatus:
    name: str
    branch: str
    runs: int = 0
    result: str | None = None  # ok | conflict | error | retry
    error: str | None = None
    branch_tip: str | None = None
    applied: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    last_run: float | None = None
    last_success: float | None = None
    retry_in: float | None = None
    failures: int = 0
    next_check: str | None = None
    running: bool = False
    rewritten: str | None = None  # the last rewrite of the branch on the server that was followed
    window: dict[str, Any] | None = None  # a closed sync window: why, and when it opens
    suspended: str | None = None  # "suspended since … by …: reason" while the environment is suspended

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("last_run", "last_success"):
            out[key] = rfc3339(out[key])
        return out


def rfc3339(ts: float | None) -> str | None:
    """Seconds since the epoch as RFC 3339 in UTC (``2026-12-01T10:13:34.120Z``): every time in the status API."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class WorkerDeps:
    """What a worker needs, passed in (tests give their own clock, driver and metrics)."""

    engine: Engine
    store: GitStore
    remote: Remote | None
    metrics: Metrics
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    retry_base: float = 1.0
    retry_max: float = 300.0
    on_run: Callable[[str, str], None] = lambda env, result: None  # noqa: E731
    notifier: Notifier = field(default_factory=NullNotifier)  # events for people and forges (never blocks)
    link: Callable[[str], str | None] = lambda env: None  # noqa: E731 - the environment's status page
    keep_idle: float = 2.0  # seconds without a run before what the runs read is kept for the next process
    keep_within: float = 30.0  # ... and at the latest this long after the first run that left it unkept


def retry_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff: ``base``, 2x, 4x… after each failure in a row, at most ``cap``."""
    return min(cap, base * 2 ** max(0, failures - 1))


class EnvWorker(threading.Thread):
    """Reconciles one environment whenever asked, one run at a time.

    Requests coalesce into one pending run (a set of reasons); after a transient
    failure the next run waits for the backoff, and requests arriving meanwhile
    wait with it. :meth:`due` and :meth:`reconcile` are the loop's two halves, so
    tests drive them on an injected clock without the thread.
    """

    def __init__(self, env: EnvironmentConfig, deps: WorkerDeps):
        super().__init__(name=f"env-{env.name}", daemon=True)
        self.env, self.deps = env, deps
        self.engine, self.store, self.remote = deps.engine, deps.store, deps.remote
        self.status = EnvStatus(env.name, env.branch_name)
        self._cond = threading.Condition()
        self._reasons: set[str] = set()
        self._stopping = False
        self._retry_at: float | None = None
        self._wake_at: float | None = None  # a closed sync window opens then: run again
        self._was_suspended = False
        self._seen_problems: frozenset[str] = frozenset()
        self._reported: frozenset[str] = frozenset()
        self._applied_tip: str | None = None
        self.idle = threading.Event()
        self.idle.set()
        self._announced: str | None = None  # the last tip a "pending" event was sent for
        self._notified_applied: str | None = None  # the last tip an "applied" event was sent for
        self._unkept: tuple[float, float] | None = None  # (first, last) end of the runs not kept yet

    # -- requests --------------------------------------------------------------------

    def trigger(self, reason: str) -> None:
        with self._cond:
            if self._stopping:
                return
            self._reasons.add(reason)
            self.idle.clear()
            self._cond.notify()
        self.deps.metrics.triggers.labels(self.env.name, reason.split(":")[0]).inc()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def due(self, now: float) -> set[str] | None:
        """The reasons to run now (taken), or None while there is nothing to do or the backoff lasts.
        Call it holding no lock; it takes the worker's."""
        with self._cond:
            if self._wake_at is not None and now >= self._wake_at:
                self._reasons.add("window")
                self._wake_at = None
            if self._retry_at is not None:
                if now < self._retry_at:
                    return None  # backoff: new triggers wait too
                self._reasons.add("retry")
                self._retry_at = None
            if not self._reasons:
                return None
            reasons, self._reasons = self._reasons, set()
            return reasons

    def run(self) -> None:
        clock = self.deps.clock
        try:
            while True:
                keep = False
                with self._cond:
                    while not self._stopping:
                        now = clock()
                        keep_at = self.keep_at()
                        if self._retry_at is not None:
                            if now >= self._retry_at:
                                break
                        elif self._reasons or (self._wake_at is not None and now >= self._wake_at):
                            break
                        else:
                            self.idle.set()
                        if keep_at is not None and now >= keep_at:
                            keep = True
                            break
                        # the backoff's end (new triggers wait too) or a closed window's opening; keeping what was read
                        until = [t for t in (self._retry_at if self._retry_at is not None else self._wake_at, keep_at)
                                 if t is not None]
                        self._cond.wait(max(0.0, min(until) - now) if until else None)
                    if self._stopping:
                        return
                if keep:
                    self.keep(yielding=True)
                    continue
                reasons = self.due(clock())
                if reasons:
                    self.reconcile(reasons)
                    if self._unkept is not None and clock() >= self._unkept[0] + self.deps.keep_within:
                        self.keep()  # runs that never stop still keep within the bound
        finally:
            try:
                self.keep()  # on stop: what the runs read, for the next process
            finally:
                self.idle.set()

    # -- keeping what the runs read ------------------------------------------------------

    def keep_at(self) -> float | None:
        """When what the runs read is to be kept for the next process (None: nothing to keep)."""
        if self._unkept is None:
            return None
        first, last = self._unkept
        return min(last + self.deps.keep_idle, first + self.deps.keep_within)

    def keep(self, *, yielding: bool = False) -> None:
        """Write what the runs read for the next process (:meth:`Engine.keep`); a failure only costs
        that process a read. ``yielding``: a run asked for meanwhile goes first (the rest is kept after)."""
        if self._unkept is None:
            return
        unkept, self._unkept = self._unkept, None
        try:
            done = self.engine.keep(self.env.name, wanted=(lambda: bool(self._reasons)) if yielding else (lambda: False))
        except Exception:  # noqa: BLE001 - a cache not written must never stop the worker
            log.exception("could not keep what the runs read for the next process", environment=self.env.name)
            return
        if not done:
            self._unkept = unkept

    # -- one run -----------------------------------------------------------------------

    def reconcile(self, reasons: set[str]) -> None:
        """One run for these reasons: sync (with the remote brought in first and published after),
        then status, metrics and logs, written in one place (:meth:`_record`)."""
        env, clock = self.env, self.deps.clock
        self.status.running = True
        started = clock()
        outcome: Outcome | None = None
        error: str | None = None
        try:
            self.store.ensure_present()
            self._announce()
            driver = self.engine.driver(env)
            if isinstance(driver, Watchable):  # set at every run: a run that failed before reading leaves none
                driver.trust_watch(self._watch_may_do(reasons))
            outcome = self.engine.sync(env.name, before=self._integrate if self.remote else None,
                                       hold=self._window_hold(reasons))
            if self.remote is not None:
                rejected = self.remote.publish(env.name, env.branch_name)
                if rejected:
                    self.deps.metrics.push_failures.labels(env.name).inc()
                    raise RetryableError(f"the remote rejected {', '.join(rejected)} (it moved); fetching again")
            result = outcome.result
        except RetryableError as exc:
            result, error = RunResult.RETRY, str(exc)
        except MassDeletionRefused as exc:
            result, error = RunResult.ERROR, str(exc)
            self.deps.metrics.mass_delete_refusals.labels(env.name).inc()
        except ReconcilerError as exc:
            result, error = RunResult.ERROR, str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker; back off and say so
            log.exception("reconcile crashed", environment=env.name)
            result, error = RunResult.RETRY, f"internal error: {exc!r}"
        self._record(reasons, outcome, result, error, clock() - started)
        ended = clock()
        self._unkept = (ended if self._unkept is None else self._unkept[0], ended)

    def _window_hold(self, reasons: set[str]) -> str | None:
        """Why this run may only plan (a closed sync window), and a wake-up at its opening; None: go on.
        A sync asked for through the API is a manual one: it runs where the windows say ``manual = true``."""
        windows = self.env.sync_windows()
        self.status.window = None
        if not windows:
            return None
        now = self.deps.wall()
        v = verdict(windows, datetime.fromtimestamp(now, timezone.utc))
        if v.allowed or ("api" in reasons and v.manual_allowed):
            return None
        opens = v.opens.timestamp() if v.opens is not None else None
        self.status.window = {"open": False, "why": v.why, "opens": rfc3339(opens)}
        if opens is not None:
            with self._cond:
                self._wake_at = self.deps.clock() + max(0.0, opens - now)
        return f"sync window: {v.why}" + (f"; it opens {rfc3339(opens)}" if opens is not None else "")

    def _announce(self) -> None:
        """A "pending" event the first time a new tip is seen (a commit status goes to pending)."""
        tip = self.store.tip(self.env.branch_name)
        if tip is not None and tip != self._announced and tip != self.status.applied:
            self._announced = tip
            self.deps.notifier.publish(Event("pending", self.env.name, tip, "pending", f"{self.env.name}: applying "
                                             f"{tip[:12]}", rfc3339(self.deps.wall()) or "",
                                             link=self.deps.link(self.env.name)))

    @staticmethod
    def _watch_may_do(reasons: set[str]) -> bool:
        """True when git moved or the folder watch saw files change: the driver may rely on its watch
        (it looks at the files the watch saw change, or scans when the watch cannot say)."""
        return bool(reasons) and all(r in ("ref", "folder") or r.startswith("webhook") for r in reasons)
        # the schedule, startup, retries, suspensions and the API always scan

    def _integrate(self, env: EnvironmentConfig) -> None:
        assert self.remote is not None
        got = self.remote.integrate(env.name, env.branch_name)
        if got.action == "rewritten":
            self.status.rewritten = (f"{env.branch_name} was rewritten on the server at {rfc3339(self.deps.wall())}: "
                                     f"now {got.remote and got.remote[:12]}, was {got.previous and got.previous[:12]} here")
            self.deps.metrics.rewrites.labels(env.name).inc()
        elif got.action not in ("none", "ahead"):
            log.info("branch updated from the remote", environment=env.name, action=got.action, commit=got.local)

    def _latency(self, outcome: Outcome) -> float | None:
        """Seconds from the applied tip landing on the branch to now, once per tip."""
        tip = outcome.tip
        if tip is None or tip == self._applied_tip or outcome.marker != tip:
            return None
        first = self._applied_tip is None
        self._applied_tip = tip
        if first:
            return None  # the tip was there before the service started
        landed = self.store.ref_mtime(self.env.branch_name) or self.store.commit_time(tip)
        return max(0.0, self.deps.wall() - landed)

    def _record(self, reasons: set[str], outcome: Outcome | None, result: RunResult, error: str | None,
                seconds: float) -> None:
        st, env, deps = self.status, self.env, self.deps
        held = outcome.held if outcome is not None else None
        st.suspended = held if held is not None and held.startswith("suspended") else None
        st.result, st.error = result.value, error
        st.last_run = deps.wall()
        new_reports = 0
        latency = None
        if result == RunResult.RETRY:
            st.failures += 1
            delay = retry_delay(st.failures, deps.retry_base, deps.retry_max)
            self._retry_at = deps.clock() + delay
            st.retry_in = delay
            log.warning("reconcile failed, will retry", environment=env.name, error=error, retry_in=delay, reasons=sorted(reasons))
        else:
            st.failures, st.retry_in = 0, None
            if error:
                log.error("reconcile stopped", environment=env.name, error=error, reasons=sorted(reasons))
        if outcome is not None:
            st.branch_tip, st.applied, st.counts = outcome.tip, outcome.marker, outcome.states
            problems = frozenset(str(p) for p in outcome.problems) | frozenset(
                f"{k}: {why}" for k, why in outcome.failed.items()
            )
            for p in sorted(problems - self._seen_problems):
                log.warning("flow problem", environment=env.name, problem=p, commit=outcome.tip)
            self._seen_problems = problems
            st.problems = sorted(problems)[:100]
            st.conflicts = [str(s.key) for s in outcome.plan.notable if s.action == Action.CONFLICT]
            reported = frozenset(str(s.key) for s in outcome.plan.notable if s.action == Action.REPORT)
            new_reports = len(reported - self._reported)
            for key in sorted(reported - self._reported):
                log.warning("drift reported", environment=env.name, flow=key, action="report", commit=outcome.tip)
            self._reported = reported
            if result in (RunResult.OK, RunResult.CONFLICT):
                st.last_success = deps.wall()
            latency = self._latency(outcome)
            if outcome.plan.changes or result != RunResult.OK:
                log.info("reconciled", environment=env.name, result=result.value, commit=outcome.tip,
                         applied=outcome.marker, changes=len(outcome.done), seconds=round(seconds, 3),
                         reasons=sorted(reasons))
        st.runs += 1  # last: a reader that sees the run counted and not running sees all of it
        st.running = False
        deps.metrics.record(env.name, outcome, seconds, result, new_reports, latency)
        try:
            self._notify(outcome, result, error)
        except Exception:  # noqa: BLE001 - a notification must never fail a reconcile
            log.exception("could not hand the run's events to the notifier", environment=env.name)
        deps.on_run(env.name, result.value)

    def _notify(self, outcome: Outcome | None, result: RunResult, error: str | None) -> None:
        at, link = rfc3339(self.deps.wall()) or "", self.deps.link(self.env.name)
        events = events_of(outcome, result=result.value, error=error, at=at, link=link,
                           applied_before=self._notified_applied)
        if outcome is None and error and (result != RunResult.RETRY or self.status.failures == 1):
            tip = self.store.tip(self.env.branch_name) if result != RunResult.RETRY else None
            events.append(Event("failed", self.env.name, tip, result.value, error, at, link=link))
        suspended = self.status.suspended is not None  # set by _record
        if outcome is not None and suspended != self._was_suspended:
            self._was_suspended = suspended
            kind = "suspended" if suspended else "resumed"
            events.append(Event(kind, self.env.name, outcome.tip, result.value,
                                outcome.held or f"{self.env.name} resumed", at, link=link))
        for e in events:
            if e.kind == "applied":
                self._notified_applied = e.commit
            self.deps.notifier.publish(e)
