"""The long-running service: one worker per environment (:mod:`reconciler.worker`), fed by triggers.

Triggers (a ref moved, a folder changed, the schedule, a webhook, the API)
only *request* a reconcile, through the small protocol the triggers depend on
(:class:`reconciler.triggers.Requests`: ``trigger``, ``trigger_all``,
``trigger_branch``, ``fetch_and_trigger``): requests for one environment
coalesce into one pending run, one worker thread per environment runs them one
at a time, and environments run in parallel, so a slow platform delays only its
own environment. What to watch comes from the drivers (``Watchable``), never
from knowing a driver's settings. The workers' events go to one
:class:`~reconciler.notify.Dispatcher` (``[[notify]]``), which delivers them
in the background and is flushed last on stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from reconciler.config import Config, EnvironmentConfig
from reconciler.drivers import Watchable
from reconciler.engine import Engine, Outcome, make_driver
from reconciler.errors import ReconcilerError, RetryableError, StallError
from reconciler.flows import CanonicalFlow, FlowKey
from reconciler.gitstore import GitStore
from reconciler.logsetup import get_logger
from reconciler.metrics import Metrics
from reconciler.notify import Dispatcher, status_link
from reconciler.redaction import Redactor
from reconciler.remote import Remote
from reconciler.shard import Shard
from reconciler.triggers import Scheduler, Watcher, WatchSpec
from reconciler.worker import EnvStatus, EnvWorker, WorkerDeps, rfc3339

__all__ = ["Service", "EnvStatus"]

log = get_logger("reconciler.service")


class _Engine(Engine):
    """A worker's engine that keeps the outcome of its last sync: the per-flow states the status page shows
    (the worker records counts only; a reference assignment, so a page thread reads it without a lock)."""

    last: Outcome | None = None

    def sync(self, name: str, **kwargs: Any) -> Outcome:
        outcome = super().sync(name, **kwargs)
        self.last = outcome
        return outcome


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
        self.notifier = Dispatcher.from_config(config, metrics=self.metrics, redactor=self.redactor)
        self.store = GitStore.from_config(config.repository, create=bool(config.repository.remote))
        self.remote = Remote.from_config(self.store, config.repository)
        owned = set(shard.select(e.name for e in config.environments))
        self.workers = {e.name: self._worker(e) for e in config.environments if e.name in owned}
        for name in self.workers:
            self.metrics.register(name)
        self._fetch_lock = threading.Lock()
        self._run_listeners: list[Callable[[str, str], None]] = []
        self.scheduler = None
        self.watcher = None

    def _worker(self, env: EnvironmentConfig) -> EnvWorker:
        """A worker with its own store, engine and remote (a worker thread never shares a libgit2 handle)."""
        cfg = self.config
        store = GitStore.from_config(cfg.repository, create=bool(cfg.repository.remote))
        # keep_later: the kept reads are written when the worker is idle (and on stop), off a push's latency
        return EnvWorker(env, WorkerDeps(
            engine=_Engine(cfg, store=store, redactor=self.redactor, keep_later=True), store=store,
            remote=Remote.from_config(store, cfg.repository), metrics=self.metrics, clock=self.clock, wall=self.wall,
            retry_base=cfg.server.retry_base, retry_max=cfg.server.retry_max,
            on_run=self.on_run, notifier=self.notifier, link=self.link,
        ))

    def link(self, env: str) -> str | None:
        """The environment's status page, for notifications and commit statuses (``[server] public_url``)."""
        return status_link(self.config.server.public_url, env)

    def _watched(self, env: str) -> frozenset[str] | None:
        """The flow files of ``env``'s folder the watch saw change since its driver last asked (None:
        it cannot say, so the next export scans the folder)."""
        w = self.watcher
        return None if w is None else w.changed(env)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.notifier.start()
        for w in self.workers.values():
            w.start()
        intervals = {e.name: e.interval for e in self.owned_envs()}
        self.scheduler = Scheduler(self, intervals, self.config.repository.fetch_interval if self.remote else None)
        self.scheduler.start()
        specs = []
        for name, w in self.workers.items():
            driver = w.engine.driver(w.env)
            if isinstance(driver, Watchable):
                specs.append(WatchSpec(name, driver.watch_paths(), driver.is_flow_file))
                driver.watched_by(lambda env=name: self._watched(env))
        self.watcher = Watcher(self, self.config.repository.path, specs, debounce_ms=self.config.server.debounce_ms)
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
            if not w.is_alive():
                w.engine.close()
        # Last, so the events of the runs that just finished are sent too; within what is left of the grace.
        delivered = self.notifier.stop(max(0.0, deadline - self.clock()))
        log.info("service stopped", clean=clean, notifications_flushed=delivered)
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

    def trigger_all(self, reason: str) -> None:
        for name in self.workers:
            self.trigger(name, reason)

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

    def set_suspension(self, env: str, flows: list[str], *, suspend: bool, by: str, reason: str = "") -> Any:
        """Suspend or resume ``env`` (or these flows) for the API, then reconcile it (a resume applies
        what is pending). LookupError: not this replica's environment; ValueError: a bad selector."""
        from reconciler import holding

        if env not in self.workers:
            raise LookupError(env)
        try:
            store = GitStore.from_config(self.config.repository)  # this thread's own libgit2 handle
            changed = holding.change(self.config, store, env, flows, suspend=suspend, by=by, reason=reason,
                                     now=self.wall())
        except StallError as exc:
            raise ValueError(str(exc)) from exc
        self.trigger(env, "suspension")
        return changed

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
                st["next_check"] = rfc3339(when) if when is not None else None
            envs.append(st)
        return {"shard": str(self.shard), "environments": envs}

    def last_outcome(self, env: str) -> Outcome | None:
        """What the last completed sync of ``env`` read and did (None before the first, or for an
        environment this replica does not own); a run that failed keeps the previous one here."""
        worker = self.workers.get(env)
        engine = worker.engine if worker is not None else None
        return engine.last if isinstance(engine, _Engine) else None

    def live_flow(self, env: str, key: FlowKey) -> CanonicalFlow | None:
        """One flow as the environment holds it now (None when it has none), read by a driver of its own:
        the worker's driver belongs to the worker's thread. Raises RetryableError when the platform is down."""
        driver = make_driver(self.config.env(env))
        try:
            found = driver.export().flows.get(key)
            return found if found is None or found.data is not None else driver.load(key)
        finally:
            driver.close()

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
