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

import os
import stat
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from watchfiles import Change, watch

from reconciler.drivers.directory import DirectoryEnvironment

if TYPE_CHECKING:
    from reconciler.service import Service

__all__ = ["Watcher", "Scheduler"]

log = structlog.get_logger("reconciler.triggers")


class Watcher(threading.Thread):
    """Watches the repository's refs and the folders of directory environments.

    A watched folder can disappear (an NFS mount dropped, a folder restored from
    a backup by moving it into place): its inotify watch dies with it. Every
    half second the watcher compares each folder's identity (device, inode)
    with what it watches and restarts the watch when one went, came back or was
    replaced, logging the gap and asking for a drift check of the environment.
    While a folder is not watched, :meth:`watches` is False for it, so no run
    skips its folder scan on the watch's word.
    """

    def __init__(self, service: "Service"):
        super().__init__(name="watcher", daemon=True)
        self.service = service
        self.repo = Path(service.config.repository.path).resolve()
        self.folders = {
            Path(e.path).resolve(): e.name for e in service.owned_envs() if isinstance(e, DirectoryEnvironment)
        }
        self._watched: dict[Path, tuple[int, int]] = {}
        self._gone: dict[Path, float] = {}  # folder -> when it was found missing
        self._live = False  # a watch is running over self._watched
        self._stop = threading.Event()
        self.ready = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def watches(self, env: str) -> bool:
        return self._live and any(self.folders.get(f) == env for f in self._watched)

    def _identities(self) -> dict[Path, tuple[int, int]]:
        out = {}
        for folder in (self.repo, *self.folders):
            try:
                st = os.stat(folder)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                out[folder] = (st.st_dev, st.st_ino)
        return out

    def _notice(self, now: dict[Path, tuple[int, int]]) -> None:
        """Log what went, came back or was replaced since the watch started, and ask for checks."""
        svc, clock = self.service, time.monotonic()
        for folder in (self.repo, *self.folders):
            env = self.folders.get(folder)
            what = "repository" if env is None else "environment folder"
            before, after = self._watched.get(folder), now.get(folder)
            if before == after:
                continue
            if after is None:
                self._gone[folder] = clock
                log.warning(f"{what} disappeared; not watched until it is back", path=str(folder), environment=env)
            else:
                since = self._gone.pop(folder, None)
                gap = None if since is None else round(clock - since, 3)
                how = "came back" if before is None else "was replaced"
                log.warning(f"{what} {how}; watching it again", path=str(folder), environment=env, gap_s=gap)
            if env is not None:
                svc.trigger(env, "folder")
            else:
                for e in svc.owned_envs():
                    svc.trigger(e.name, "ref")

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
        step = max(1, self.service.config.server.debounce_ms)
        self._watched = self._identities()
        for folder in (self.repo, *self.folders):
            if folder not in self._watched:
                self._gone[folder] = time.monotonic()
                log.warning("not watching a folder that does not exist; it is watched once it is there",
                            path=str(folder), environment=self.folders.get(folder))
        while not self._stop.is_set():
            if not self._watched:
                self.ready.set()
                self._stop.wait(0.5)
            else:
                try:
                    for changes in watch(
                        *map(str, self._watched),
                        watch_filter=self._keep,
                        stop_event=self._stop,
                        step=step,
                        debounce=max(step, 1600),
                        rust_timeout=500,
                        yield_on_timeout=True,
                        raise_interrupt=False,
                        ignore_permission_denied=True,
                    ):
                        self._live = True
                        self.ready.set()
                        if changes:
                            self.route(changes)
                        if self._identities() != self._watched:
                            break  # something went, came back or was replaced: watch the new set
                except Exception as exc:  # noqa: BLE001 - a failed watch is restarted; the schedule covers the gap
                    log.warning("file watch failed; restarting it", error=repr(exc))
                    self._stop.wait(0.5)
                finally:
                    self._live = False
            now = self._identities()
            self._notice(now)
            self._watched = now


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

    def next_run(self, env: str) -> float | None:
        """When the next drift check of ``env`` is due (seconds since the epoch)."""
        job = self._sched.get_job(f"check:{env}")
        when: datetime | None = getattr(job, "next_run_time", None) if job else None
        return when.timestamp() if when else None
