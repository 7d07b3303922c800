"""Where reconcile requests come from: file watches and the schedule.

- :class:`Watcher` (watchfiles) watches the repository's refs and every
  directory environment's folder. A push shows up as ``refs/heads/<branch>``
  written through a ``.lock`` rename (or ``packed-refs`` changing); watchfiles'
  default filter drops paths under ``.git``-like folders, so ours is explicit.
  A burst of changes ends after ``[server] debounce_ms`` of quiet.
- :class:`Scheduler` (APScheduler 3) asks every environment for a drift check
  each ``interval``, and fetches from the remote each ``fetch_interval``.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from watchfiles import Change, watch

from reconciler.config import DirectoryEnvironment

if TYPE_CHECKING:
    from reconciler.service import Service

__all__ = ["Watcher", "Scheduler"]

log = structlog.get_logger("reconciler.triggers")


class Watcher(threading.Thread):
    def __init__(self, service: "Service"):
        super().__init__(name="watcher", daemon=True)
        self.service = service
        self.repo = Path(service.config.repository.path).resolve()
        self.folders = {
            Path(e.path).resolve(): e.name for e in service.owned_envs() if isinstance(e, DirectoryEnvironment)
        }
        for folder, env in list(self.folders.items()):
            if not folder.is_dir():
                # Watching it would fail; its drift checks still run on the schedule.
                log.warning("not watching the environment's folder: not a folder", environment=env, path=str(folder))
                del self.folders[folder]
        self._stop = threading.Event()
        self.ready = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def watches(self, env: str) -> bool:
        return env in self.folders.values()

    def _keep(self, change: Change, path: str) -> bool:
        p = Path(path)
        if p.is_relative_to(self.repo):
            rel = p.relative_to(self.repo).as_posix()
            return rel == "packed-refs" or (rel.startswith("refs/heads/") and not rel.endswith(".lock"))
        return p.suffix == ".json" and not p.name.startswith(".")

    def route(self, changes: set[tuple[Change, str]]) -> None:
        svc = self.service
        branches: set[str] = set()
        envs: set[str] = set()
        all_branches = False
        for _, path in changes:
            p = Path(path)
            if p.is_relative_to(self.repo):
                rel = p.relative_to(self.repo).as_posix()
                if rel == "packed-refs":
                    all_branches = True
                else:
                    branches.add(rel.removeprefix("refs/heads/"))
            elif p.parent in self.folders:
                envs.add(self.folders[p.parent])
        if all_branches:
            for env in svc.owned_envs():
                svc.trigger(env.name, "ref")
        for branch in branches:
            if not branch.startswith("drift/"):
                svc.trigger_branch(branch, "ref")
        for env in envs:
            svc.trigger(env, "folder")

    def run(self) -> None:
        paths = [str(self.repo), *map(str, self.folders)]
        step = max(1, self.service.config.server.debounce_ms)
        try:
            for changes in watch(
                *paths,
                watch_filter=self._keep,
                stop_event=self._stop,
                step=step,
                debounce=max(step, 1600),
                rust_timeout=500,
                yield_on_timeout=True,
                raise_interrupt=False,
                ignore_permission_denied=True,
            ):
                self.ready.set()
                if changes:
                    self.route(changes)
        except Exception as exc:  # noqa: BLE001 - without the watch, the schedule still reconciles
            log.error("file watch stopped; relying on the schedule and webhooks", error=repr(exc))


class Scheduler:
    def __init__(self, service: "Service"):
        self.service = service
        self._sched = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})

    def start(self) -> None:
        svc = self.service
        for env in svc.owned_envs():
            self._sched.add_job(svc.trigger, "interval", seconds=env.interval, args=(env.name, "interval"), id=f"check:{env.name}")
        if svc.remote is not None:
            self._sched.add_job(
                svc.fetch_and_trigger, "interval", seconds=svc.config.repository.fetch_interval, args=("fetch",), id="fetch"
            )
        self._sched.start()

    def stop(self) -> None:
        if self._sched.running:
            self._sched.shutdown(wait=False)

    def next_run(self, env: str) -> str | None:
        job = self._sched.get_job(f"check:{env}")
        when: datetime | None = getattr(job, "next_run_time", None) if job else None
        return when.isoformat() if when else None
