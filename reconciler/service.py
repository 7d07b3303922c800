"""The long-running service: one worker per environment, fed by triggers.

Triggers (a ref moved, a folder changed, the schedule, a webhook, the API)
only *request* a reconcile: requests for one environment coalesce into one
pending run, one worker thread per environment runs them one at a time, and
environments run in parallel, so a slow platform delays only its own
environment.

What an error means decides what happens next (see :mod:`reconciler.errors`):

- :class:`RetryableError` (platform down, lock held, push rejected): retry
  with exponential backoff, capped; triggers arriving meanwhile wait for it;
- :class:`StallError` or a run with invalid flows: nothing is retried; the
  environment waits for the next trigger (a new commit, a file change, the
  interval), and a flow whose file did not change stays refused without
  re-logging;
- a conflict: reported, left alone, re-checked on every trigger.

Status, metrics and logs of a run are written in one place, ``_record``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import structlog

from reconciler.config import Config, EnvironmentConfig
from reconciler.drivers import Watchable
from reconciler.engine import Engine, Outcome, RunResult
from reconciler.errors import MassDeletionRefused, ReconcilerError, RetryableError
from reconciler.gitstore import GitStore
from reconciler.metrics import Metrics
from reconciler.plan import Action
from reconciler.redaction import Redactor
from reconciler.remote import Remote
from reconciler.shard import Shard

__all__ = ["Service", "EnvStatus"]

log = structlog.get_logger("reconciler.service")


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

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("last_run", "last_success"):
            out[key] = _rfc3339(out[key])
        return out


def _rfc3339(ts: float | None) -> str | None:
    """Seconds since the epoch as RFC 3339 in UTC (``2026-12-01T10:13:34.120Z``): every time in the status API."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EnvWorker(threading.Thread):
    """Reconciles one environment whenever asked, one run at a time."""

    def __init__(self, service: "Service", env: EnvironmentConfig):
        super().__init__(name=f"env-{env.name}", daemon=True)
        self.service, self.env = service, env
        self.status = EnvStatus(env.name, env.branch_name)
        self._cond = threading.Condition()
        self._reasons: set[str] = set()
        self._stopping = False
        self._retry_at: float | None = None
        self._seen_problems: frozenset[str] = frozenset()
        self._reported: frozenset[str] = frozenset()
        self._applied_tip: str | None = None
        self.idle = threading.Event()
        self.idle.set()
        cfg = service.config
        self.store = GitStore.from_config(cfg.repository, create=bool(cfg.repository.remote))
        self.engine = Engine(cfg, store=self.store, redactor=service.redactor)
        self.remote = Remote.from_config(self.store, cfg.repository)

    # -- requests --------------------------------------------------------------------

    def trigger(self, reason: str) -> None:
        with self._cond:
            if self._stopping:
                return
            self._reasons.add(reason)
            self.idle.clear()
            self._cond.notify()
        self.service.metrics.triggers.labels(self.env.name, reason.split(":")[0]).inc()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def run(self) -> None:
        clock = self.service.clock
        while True:
            with self._cond:
                while not self._stopping:
                    now = clock()
                    if self._retry_at is not None:
                        if now >= self._retry_at:
                            self._reasons.add("retry")
                            self._retry_at = None
                            break
                        self._cond.wait(self._retry_at - now)  # backoff: new triggers wait too
                        continue
                    if self._reasons:
                        break
                    self.idle.set()
                    self._cond.wait()
                if self._stopping:
                    self.idle.set()
                    return
                reasons, self._reasons = self._reasons, set()
            self._reconcile(reasons)

    # -- one run -----------------------------------------------------------------------

    def _reconcile(self, reasons: set[str]) -> None:
        env, clock = self.env, self.service.clock
        self.status.running = True
        started = clock()
        outcome: Outcome | None = None
        error: str | None = None
        try:
            self.store.ensure_present()
            if self._folder_quiet(reasons):
                driver = self.engine.driver(env)
                if isinstance(driver, Watchable):
                    driver.trust_watch()
            outcome = self.engine.sync(env.name, before=self._integrate if self.remote else None)
            if self.remote is not None:
                rejected = self.remote.publish(env.name, env.branch_name)
                if rejected:
                    self.service.metrics.push_failures.labels(env.name).inc()
                    raise RetryableError(f"the remote rejected {', '.join(rejected)} (it moved); fetching again")
            result = outcome.result
        except RetryableError as exc:
            result, error = RunResult.RETRY, str(exc)
        except MassDeletionRefused as exc:
            result, error = RunResult.ERROR, str(exc)
            self.service.metrics.mass_delete_refusals.labels(env.name).inc()
        except ReconcilerError as exc:
            result, error = RunResult.ERROR, str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker; back off and say so
            log.exception("reconcile crashed", environment=env.name)
            result, error = RunResult.RETRY, f"internal error: {exc!r}"
        self._record(reasons, outcome, result, error, clock() - started)

    def _folder_quiet(self, reasons: set[str]) -> bool:
        """True when only git moved and the folder watch vouches that the folder did not."""
        if not reasons or any(not (r == "ref" or r.startswith("webhook")) for r in reasons):
            return False  # folder events, the schedule, startup, retries and the API re-scan
        watcher = self.service.watcher
        return watcher is not None and watcher.is_alive() and watcher.ready.is_set() and watcher.watches(self.env.name)

    def _integrate(self, env: EnvironmentConfig) -> None:
        assert self.remote is not None
        got = self.remote.integrate(env.name, env.branch_name)
        if got.action == "rewritten":
            self.status.rewritten = (f"{env.branch_name} was rewritten on the server at {_rfc3339(self.service.wall())}: "
                                     f"now {got.remote and got.remote[:12]}, was {got.previous and got.previous[:12]} here")
            self.service.metrics.rewrites.labels(env.name).inc()
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
        return max(0.0, self.service.wall() - landed)

    def _record(self, reasons: set[str], outcome: Outcome | None, result: RunResult, error: str | None,
                seconds: float) -> None:
        st, env, svc = self.status, self.env, self.service
        st.runs += 1
        st.result, st.error = result.value, error
        st.last_run = svc.wall()
        st.running = False
        new_reports = 0
        latency = None
        if result == RunResult.RETRY:
            st.failures += 1
            delay = min(svc.config.server.retry_max, svc.config.server.retry_base * 2 ** (st.failures - 1))
            self._retry_at = svc.clock() + delay
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
            st.conflicts = [str(s.key) for s in outcome.plan.steps if s.action == Action.CONFLICT]
            reported = frozenset(str(s.key) for s in outcome.plan.steps if s.action == Action.REPORT)
            new_reports = len(reported - self._reported)
            for key in sorted(reported - self._reported):
                log.warning("drift reported", environment=env.name, flow=key, action="report", commit=outcome.tip)
            self._reported = reported
            if result in (RunResult.OK, RunResult.CONFLICT):
                st.last_success = svc.wall()
            latency = self._latency(outcome)
            if outcome.plan.changes or result != RunResult.OK:
                log.info(
                    "reconciled",
                    environment=env.name,
                    result=result.value,
                    commit=outcome.tip,
                    applied=outcome.marker,
                    changes=len(outcome.done),
                    seconds=round(seconds, 3),
                    reasons=sorted(reasons),
                )
        svc.metrics.record(env.name, outcome, seconds, result, new_reports, latency)
        svc.on_run(env.name, result.value)


class Service:
    """Every owned environment's worker, the triggers, and the HTTP surface."""

    def __init__(
        self,
        config: Config,
        *,
        shard: Shard = Shard(),
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        api_token: str | None = None,
        webhook_secret: str | None = None,
        redactor: Redactor | None = None,
    ):
        self.config, self.shard = config, shard
        self.metrics = metrics or Metrics()
        self.clock, self.wall = clock, wall
        self.api_token, self.webhook_secret = api_token, webhook_secret
        self.redactor = redactor if redactor is not None else Redactor()
        for env in config.environments:
            self.redactor.add(env.load_secrets(strict=False).values())
        self.store = GitStore.from_config(config.repository, create=bool(config.repository.remote))
        self.remote = Remote.from_config(self.store, config.repository)
        owned = set(shard.select(e.name for e in config.environments))
        self.workers = {e.name: EnvWorker(self, e) for e in config.environments if e.name in owned}
        for name in self.workers:
            self.metrics.register(name)
        self._fetch_lock = threading.Lock()
        self._run_listeners: list[Callable[[str, str], None]] = []
        self.scheduler = None
        self.watcher = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        from reconciler.triggers import Scheduler, Watcher

        for w in self.workers.values():
            w.start()
        self.scheduler = Scheduler(self)
        self.scheduler.start()
        self.watcher = Watcher(self)
        self.watcher.start()
        if self.remote is not None:
            self.fetch_and_trigger("startup")
        for name in self.workers:
            self.trigger(name, "startup")
        log.info("service started", environments=sorted(self.workers), shard=str(self.shard), repository=str(self.config.repository.path))

    def stop(self, grace: float | None = None) -> bool:
        """Stop taking work, let runs in flight finish within ``grace``; True if they all did."""
        grace = self.config.server.shutdown_grace if grace is None else grace
        if self.watcher is not None:
            self.watcher.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        for w in self.workers.values():
            w.stop()
        deadline = self.clock() + grace
        clean = True
        for w in self.workers.values():
            w.join(max(0.0, deadline - self.clock()))
            clean = clean and not w.is_alive()
        log.info("service stopped", clean=clean)
        return clean

    # -- triggers ------------------------------------------------------------------------

    def owned_envs(self) -> list[EnvironmentConfig]:
        return [e for e in self.config.environments if e.name in self.workers]

    def why_not(self, env: str) -> str:
        """Why a request for ``env`` cannot be taken: unknown, or owned by another replica."""
        known = [e.name for e in self.config.environments]
        if env not in known:
            return f"no environment named {env!r} (known: {', '.join(known)})"
        return f"environment {env!r} is handled by another replica (this one is shard {self.shard})"

    def trigger(self, env: str, reason: str) -> bool:
        worker = self.workers.get(env)
        if worker is None:
            return False
        worker.trigger(reason)
        return True

    def trigger_branch(self, branch: str, reason: str) -> list[str]:
        hit = [e.name for e in self.owned_envs() if e.branch_name == branch]
        for name in hit:
            self.trigger(name, reason)
        return hit

    def fetch_and_trigger(self, reason: str, branches: tuple[str, ...] | None = None) -> None:
        """Fetch from the remote, then reconcile the environments on the fetched branches."""
        if self.remote is not None:
            with self._fetch_lock:
                self.metrics.fetches.inc()
                try:
                    self.remote.fetch()
                except RetryableError as exc:
                    self.metrics.fetch_failures.inc()
                    log.warning("fetch failed", error=str(exc))
                    return
        for env in self.owned_envs():
            if branches is None or env.branch_name in branches:
                self.trigger(env.name, reason)

    def on_run(self, env: str, result: str) -> None:
        for listener in list(self._run_listeners):
            listener(env, result)

    def add_run_listener(self, fn: Callable[[str, str], None]) -> None:
        self._run_listeners.append(fn)

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        envs = []
        for name, w in sorted(self.workers.items()):
            st = w.status.as_dict()
            if self.scheduler is not None:
                when = self.scheduler.next_run(name)
                st["next_check"] = _rfc3339(when) if when is not None else None
            envs.append(st)
        return {"shard": str(self.shard), "environments": envs}

    def ready(self) -> tuple[bool, list[str]]:
        reasons = []
        try:
            self.store.ensure_present()
        except ReconcilerError as exc:
            reasons.append(str(exc))
        for name, w in self.workers.items():
            if w.status.runs == 0:
                reasons.append(f"{name}: not reconciled yet")
        return (not reasons, reasons)
