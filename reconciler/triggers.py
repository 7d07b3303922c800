"""Where reconcile requests come from: file watches and the schedule.

Both depend on a small protocol, :class:`Requests` (ask for a reconcile of an
environment, of every environment, of the environments on a branch, or fetch
first), and on plain watch specifications (:class:`WatchSpec`: an environment,
the folders a driver says are its environment, and which files count): they
know nothing of the service or of any driver.

- :class:`Watcher` (watchfiles) watches the repository's refs and every
  watched folder. A push shows up as ``refs/heads/<branch>`` written through a
  ``.lock`` rename (or ``packed-refs`` changing); watchfiles' default filter
  drops paths under ``.git``-like folders, so ours is explicit. A ref moves in
  one rename, so a push is routed within :attr:`Watcher.STEP_MS`; a burst of
  folder changes ends after ``[server] debounce_ms`` of quiet (until then a
  run does not know of it, as before: its request comes after). It also says which flow
  files of an environment's folder it saw change (:meth:`Watcher.changed`), so a
  run looks at those instead of scanning the folder.
- :class:`Scheduler` (APScheduler 3) asks every environment for a drift check
  each ``interval``, and fetches from the remote each ``fetch_interval``.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from watchfiles import Change, watch

from reconciler.logsetup import get_logger
from reconciler.suspension import SUSPEND_PREFIX as _SUSPEND

# A file made together with its new folder can be missed by a recursive watch (the folder is watched only
# once its creation is seen), so the folders' own creation is a reason to look at every environment.
_SUSPEND_DIRS = frozenset({"refs/reconciler", _SUSPEND.rstrip("/")})

__all__ = ["Requests", "WatchSpec", "Watcher", "Scheduler"]


class Requests(Protocol):
    """What a trigger may ask for (the service implements it)."""

    def trigger(self, env: str, reason: str) -> bool:
        """Ask for a reconcile of one environment; False when it is not one of ours."""
        ...

    def trigger_all(self, reason: str) -> None:
        ...

    def trigger_branch(self, branch: str, reason: str) -> list[str]:
        """Ask for a reconcile of the environments on ``branch``; returns their names."""
        ...

    def fetch_and_trigger(self, reason: str, branches: tuple[str, ...] | None = None) -> None:
        """Fetch from the remote, then ask for the environments on the fetched branches."""
        ...


@dataclass(frozen=True)
class WatchSpec:
    """One environment's folders to watch, and which changed files count (from its driver)."""

    env: str
    paths: tuple[Path, ...]
    is_flow_file: Callable[[Path], bool]

log = get_logger("reconciler.triggers")


class Watcher(threading.Thread):
    """Watches the repository's refs and the folders of directory environments.

    A watched folder can disappear (an NFS mount dropped, a folder restored from
    a backup by moving it into place): its inotify watch dies with it. Every
    half second the watcher compares each folder's identity (device, inode)
    with what it watches and restarts the watch when one went, came back or was
    replaced, logging the gap and asking for a drift check of the environment.
    While a folder is not watched, :meth:`watches` is False for it, so no run
    skips its folder scan on the watch's word.

    :meth:`changed` tells a run which flow files of an environment's folders
    the watch saw change since the last run asked, or None when it cannot say:
    before the first question asked while watching, after any gap in the watch
    (a restart: events may have gone unseen), or after a burst naming more than
    :attr:`MAX_NAMED` files. None means: scan the folder.
    """

    MAX_NAMED = 1000

    def __init__(self, requests: Requests, repo: Path, specs: Sequence[WatchSpec], *, debounce_ms: int = 50):
        super().__init__(name="watcher", daemon=True)
        self.requests, self.debounce_ms = requests, debounce_ms
        self.repo = Path(repo).resolve()
        self.folders = {Path(p).resolve(): spec.env for spec in specs for p in spec.paths}
        self._counts = {spec.env: spec.is_flow_file for spec in specs}
        self._watched: dict[Path, tuple[int, int]] = {}
        self._gone: dict[Path, float] = {}  # folder -> when it was found missing
        self._live = False  # a watch is running over self._watched
        # env -> names of flow files seen changing since the last changed(env); None: unknown (scan)
        self._saw: dict[str, set[str] | None] = {spec.env: None for spec in specs}
        self._saw_lock = threading.Lock()
        self._halt = threading.Event()  # not _stop: that is a method of Thread (join, is_alive)
        self.ready = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def watches(self, env: str) -> bool:
        return self._live and any(self.folders.get(f) == env for f in self._watched)

    def changed(self, env: str) -> frozenset[str] | None:
        """The names of ``env``'s flow files the watch saw change since the last call (empty: none),
        or None when it cannot vouch for the folder; either way the next call counts from now."""
        with self._saw_lock:
            if not (self.is_alive() and self.ready.is_set() and self.watches(env)):
                self._saw[env] = None
                return None
            got, self._saw[env] = self._saw.get(env), set()
        return None if got is None else frozenset(got)

    def _note_names(self, changes: set[tuple[Change, str]]) -> None:
        """Note the flow files of the environments' folders among ``changes`` for :meth:`changed`."""
        with self._saw_lock:
            for _, path in changes:
                p = Path(path)
                env = self.folders.get(p.parent)
                saw = self._saw.get(env) if env is not None else None
                if saw is not None:
                    saw.add(p.name)
                    if len(saw) > self.MAX_NAMED:
                        self._saw[env] = None

    def _unknown(self) -> None:
        """The watch stopped (or never ran): what changed meanwhile is unknown until a scan."""
        with self._saw_lock:
            for env in self._saw:
                self._saw[env] = None

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
        requests, clock = self.requests, time.monotonic()
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
                requests.trigger(env, "folder")
            else:
                requests.trigger_all("ref")

    def _keep(self, change: Change, path: str) -> bool:
        p = Path(path)
        if p.is_relative_to(self.repo):
            rel = p.relative_to(self.repo).as_posix()
            return not rel.endswith(".lock") and (rel in _SUSPEND_DIRS or rel == "packed-refs"
                                                  or rel.startswith(("refs/heads/", _SUSPEND)))
        env = self.folders.get(p.parent)
        return env is not None and self._counts[env](p)

    def route(self, changes: set[tuple[Change, str]]) -> None:
        requests = self.requests
        branches: set[str] = set()
        envs: set[str] = set()
        suspended: set[str] = set()
        all_branches = all_suspended = False
        for _, path in changes:
            p = Path(path)
            if p.is_relative_to(self.repo):
                rel = p.relative_to(self.repo).as_posix()
                if rel == "packed-refs":
                    all_branches = True
                elif rel.startswith(_SUSPEND):  # `reconciler suspend`/`resume` from another process
                    suspended.add(rel.removeprefix(_SUSPEND))
                elif rel in _SUSPEND_DIRS:  # the first suspension made the folder: a file in it can go unseen
                    all_suspended = True
                elif p.is_dir():  # a new folder of branches (`env/`): its refs may have come unseen with it
                    all_branches = True
                else:
                    branches.add(rel.removeprefix("refs/heads/"))
            elif p.parent in self.folders:
                envs.add(self.folders[p.parent])
        self._note_names(changes)
        if all_branches:
            requests.trigger_all("ref")
        for branch in branches:
            if not branch.startswith("drift/"):
                requests.trigger_branch(branch, "ref")
        for env in envs:
            requests.trigger(env, "folder")
        if all_suspended:
            requests.trigger_all("suspension")
        for env in suspended:
            requests.trigger(env, "suspension")

    #: how soon a batch of events is taken from the watch (ms of quiet): a ref moves in one rename, so a
    #: push is routed at once; the folders' events are routed after ``debounce_ms`` of quiet
    STEP_MS = 5

    def run(self) -> None:
        quiet = max(1, self.debounce_ms)
        step = min(quiet, self.STEP_MS)
        self._watched = self._identities()
        for folder in (self.repo, *self.folders):
            if folder not in self._watched:
                self._gone[folder] = time.monotonic()
                log.warning("not watching a folder that does not exist; it is watched once it is there",
                            path=str(folder), environment=self.folders.get(folder))
        while not self._halt.is_set():
            if not self._watched:
                self.ready.set()
                self._halt.wait(0.5)
            else:
                held: set[tuple[Change, str]] = set()  # folder events waiting for their burst to end
                held_at = 0.0
                try:
                    for changes in watch(
                        *map(str, self._watched),
                        watch_filter=self._keep,
                        stop_event=self._halt,
                        step=step,
                        debounce=max(quiet, 1600),
                        rust_timeout=max(quiet, 20),  # wakes up to end a burst of folder events
                        yield_on_timeout=True,
                        raise_interrupt=False,
                        ignore_permission_denied=True,
                    ):
                        self._live = True
                        self.ready.set()
                        now = time.monotonic()
                        if changes:
                            refs = {c for c in changes if Path(c[1]).is_relative_to(self.repo)}
                            if refs:
                                self.route(refs)
                            if len(refs) < len(changes):
                                held |= changes - refs
                                held_at = now
                        if held and (now - held_at) * 1000 >= quiet:
                            got, held = held, set()
                            self.route(got)
                        if self._identities() != self._watched:
                            break  # something went, came back or was replaced: watch the new set
                except Exception as exc:  # noqa: BLE001 - a failed watch is restarted; the schedule covers the gap
                    log.warning("file watch failed; restarting it", error=repr(exc))
                    self._halt.wait(0.5)
                finally:
                    self._live = False
                    self._unknown()
                    if held:
                        self.route(held)
            now = self._identities()
            self._notice(now)
            self._watched = now


class Scheduler:
    def __init__(self, requests: Requests, intervals: Mapping[str, float], fetch_interval: float | None = None):
        self.requests, self.intervals, self.fetch_interval = requests, dict(intervals), fetch_interval
        self._sched = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})

    def start(self) -> None:
        for env, seconds in self.intervals.items():
            self._sched.add_job(self.requests.trigger, "interval", seconds=seconds, args=(env, "interval"),
                                id=f"check:{env}")
        if self.fetch_interval is not None:
            self._sched.add_job(self.requests.fetch_and_trigger, "interval", seconds=self.fetch_interval,
                                args=("fetch",), id="fetch")
        self._sched.start()

    def stop(self) -> None:
        if self._sched.running:
            self._sched.shutdown(wait=False)

    def next_run(self, env: str) -> float | None:
        """When the next drift check of ``env`` is due (seconds since the epoch)."""
        job = self._sched.get_job(f"check:{env}")
        try:
            when: datetime | None = job.next_run_time if job is not None else None
        except AttributeError:  # a job not scheduled yet (the scheduler has not started)
            when = None
        return when.timestamp() if when else None
