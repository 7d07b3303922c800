"""Randomized model test: the real service under random users, crashes and races.

The harness runs ``reconciler run`` (a subprocess, :class:`ServiceProcess`)
against three directory environments and a real bare repository:

- ``dev``  (drift = adopt),
- ``acc``  (drift = adopt),
- ``prod`` (drift = restore, prune = true),

all with ``ignore = ["/exportedAt"]``, ``interval = 2``. For a bounded time,
actors (threads) act on the system the way people do. Step n of actor A draws
all its choices from ``Random(f"{seed}-{A}-{n}")``, so what each actor tries
is fixed by the printed seed; the interleaving with the service is not (it is
a real process on a real clock), so a replay re-runs the same scenario, not
the same microsecond timing.

- two **git users** (``u1``, ``u2``), each with a clone: edit, create, delete
  flows on environment branches, commit, push (a rejected push is retried with
  ``git pull --rebase``; a rebase conflict is aborted and the change redone on
  the new tip), write invalid JSON now and then (a later edit of that file
  fixes it), promote by merging ``env/dev -> env/acc -> env/prod``, resolve
  conflicts the status API reports by committing the environment's version,
  and run ``git pack-refs --all`` on the server now and then;
- a **UI** (``ui``) editing environment folders: edits (atomic renames and
  in-place rewrites), new flows, deletions, invalid JSON (fixed by a later
  edit), formatting-only "touches" of ignored fields, and resolving reported
  conflicts by restoring git's version by hand;
- a **racer** (``rc``): a folder edit and a push to the same branch at once
  (same flow or another), racing the service's own adopt commits; or a push
  of flow K followed, a few milliseconds later, by an edit of K in the folder;
- a **hunter** (``hn``): pushes a change of K, then saves a prepared edit of K
  with one rename a random 0-800 us after the service's temporary file
  appears in the folder, i.e. while the directory driver is writing;
- **chaos** (``ch``) restarting the service: ``kill -9`` at random moments
  (sometimes while a reconcile is running, sometimes during the startup
  reconcile of the next process), or SIGTERM; then a new
  :class:`ServiceProcess`. A ref ``.lock`` a kill left behind is the service's
  to remove (``stale_lock_after = 3`` here, 60 s by default); a user whose
  push fails on one removes it after 3 s, as git's error tells a person to.

Every edit writes a unique token ``edit-<seed>-<actor>-<n>`` into the flow
document and is recorded in the operation log with its place (``branch``
env/E or ``folder`` E/file) and the tokens it replaced.

Then: stop the actors, *heal* (fix invalid files left in folders and at branch
tips, each fix being an edit with its own token), and settle: force syncs
through the API (bearer token) until two consecutive rounds leave refs,
folders and status identical. Then check the invariant (see :func:`check`
and ``INVARIANT`` below).

Run longer locally::

    python -m tests.modelcheck --seconds 60 --seeds 1-10
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from reconciler.names import encode, parse_flow_path
from tests.conftest import Workspace, git_env
from tests.servicekit import ServiceProcess, wait_for

INVARIANT = """\
Invariant, checked after the quiet period (all actors stopped, folders and
branch tips healed, the service settled: two consecutive forced-sync rounds
left every ref, every folder and the status API unchanged):

I1 (nothing is lost) every edit ever made is accounted for:
   its token occurs in E's folder (any *.json file, valid or not), or in a blob
   reachable from refs/heads/env/E or refs/heads/drift/E, where E is the
   environment the edit was made for (its folder or its branch); or the edit
   was *superseded*: a later operation by a person at the same place (same
   folder file) read the token in the content it replaced (an edit overwritten
   or deleted on purpose by a later edit in the same place is not lost).
   Git edits count only once pushed (a push that never succeeded is logged as
   abandoned), and are never exempted as superseded.
   "Reported as a conflict/invalid in status" is NOT an exemption by default:
   a directory environment hides nothing from the harness, so an edit whose
   token is nowhere is gone even if status lists its flow (the report notes
   it). --lenient-reports (lenient_reports=True) accepts such edits as
   accounted for, as the issue's wording allows, and lists them as notices.
I2 (in sync means in sync) for each environment E and flow key K, the branch
   side is the document at env/E:flows/<name>/<version>.json and the folder
   side is the one *.json file in E's folder whose document holds K; K agrees
   when both exist, parse, and are equal as JSON values after removing E's
   ignored pointers (/exportedAt). Then: status.counts.in_sync == number of
   agreeing keys; no agreeing key is listed as a conflict; the other counts
   add up to the disagreeing keys; when every key agrees the result is "ok"
   with nothing pending/drifted/conflicting/invalid; every disagreeing key is
   explained (a reported conflict, an invalid flow, or, in an adopt
   environment with prune off, a flow deleted in git that stays: blocked).
I3 (the marker tells the truth) for every agreeing key the applied marker
   refs/reconciler/applied/E holds an equal document; status.branch_tip and
   status.applied are the refs' values.
I4 (no crash) no service process exited unless the harness stopped it, no run
   logged "reconcile crashed", every restart reached "listening", and
   `git fsck` passes on the repository.
I5 (it settles) the quiet period ends within its deadline.
"""

TOKEN_RE = re.compile(rb"edit-\d+-[a-z0-9]+-\d+")
API_TOKEN = "model-api-token-0123456789"
SERVICE_ENV = {"RECONCILER_API_TOKEN": API_TOKEN, "RECONCILER_WEBHOOK_SECRET": "model-webhook-secret-0123456789"}

ENVS: dict[str, dict[str, Any]] = {
    "dev": {"drift": "adopt", "interval": 2},
    "acc": {"drift": "adopt", "interval": 2},
    "prod": {"drift": "restore", "prune": True, "interval": 2},
}
IGNORE = ("exportedAt",)  # top-level pointers /exportedAt


def save_by_swap(tmp: Path, path: Path) -> bytes | None:
    """Put ``tmp`` at ``path`` in one atomic step (as ``os.replace``) and return the bytes it replaced.

    Linux ``renameat2(RENAME_EXCHANGE)`` swaps the two names, so what was at ``path`` at that very
    moment comes out under ``tmp``, is read and removed. No file at ``path``: a plain rename (None).
    A file system that cannot swap: ``os.replace`` (None: what it replaced is not known)."""
    libc = _libc()
    if libc is not None and path.exists():
        if libc.renameat2(-100, os.fsencode(tmp), -100, os.fsencode(path), 2) == 0:  # AT_FDCWD, RENAME_EXCHANGE
            try:
                return tmp.read_bytes()
            finally:
                tmp.unlink(missing_ok=True)
    os.replace(tmp, path)
    return None


_LIBC: list[Any] = []


def _libc() -> Any:
    if not _LIBC:
        import ctypes
        import ctypes.util

        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            lib.renameat2  # glibc >= 2.28
        except (OSError, AttributeError):
            lib = None
        _LIBC.append(lib)
    return _LIBC[0]
PROMOTIONS = (("dev", "acc"), ("acc", "prod"))
ACTORS = ("u1", "u2", "ui", "rc", "hn", "ch")
SEED_FLOWS = (("orders", "1.0"), ("billing", "1"), ("users", "2.0"), ("audit", "1"), ("Reports Q3", "1"),
              ("orders", "2.0"), ("inventory", "1"), ("Ünïcode flow", "1"))


def _branch(env: str) -> str:
    return f"env/{env}"


def tokens_in(data: bytes) -> set[str]:
    return {m.decode() for m in TOKEN_RE.findall(data)}


def normalize(doc: Any) -> str:
    """Our own canonical JSON (independent of reconciler.canonical): sorted keys, ignored fields removed."""
    if isinstance(doc, dict):
        doc = {k: v for k, v in doc.items() if k not in IGNORE}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def key_of(doc: Any) -> tuple[str, str] | None:
    if not isinstance(doc, dict):
        return None
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return None
    return (name, version)


def kstr(key: tuple[str, str]) -> str:
    return f"{key[0]}@{key[1]}"


def repo_path(key: tuple[str, str]) -> str:
    return f"flows/{encode(key[0])}/{encode(key[1])}.json"


# -- the operation log ------------------------------------------------------------------


@dataclass
class Edit:
    seq: int
    token: str
    env: str
    place: str  # "folder" | "branch"
    where: str  # file name in the folder, or path in the branch
    flow: str
    kind: str


class OpLog:
    def __init__(self, started: float):
        self.started = started
        self.entries: list[dict[str, Any]] = []
        self.edits: list[Edit] = []
        # (env, filename) -> {token: seq of the operation that replaced it}
        self.replaced: dict[tuple[str, str], dict[str, int]] = {}
        self._lock = threading.Lock()

    def add(self, actor: str, op: str, **fields: Any) -> int:
        with self._lock:
            seq = len(self.entries)
            entry = {"seq": seq, "t": round(time.monotonic() - self.started, 3), "actor": actor, "op": op}
            entry.update({k: v for k, v in fields.items() if v is not None})
            self.entries.append(entry)
            token = fields.get("token")
            if token and fields.get("made", True):
                self.edits.append(Edit(seq, token, fields["env"], fields["place"], fields["where"], fields.get("flow", ""), op))
            if fields.get("place") == "folder":
                for t in fields.get("replaced") or ():
                    self.replaced.setdefault((fields["env"], fields["where"]), {}).setdefault(t, seq)
            return seq

    def counts(self) -> Counter:
        """Operations of the actors during the random phase, by kind."""
        with self._lock:
            return Counter(e["op"] for e in self.entries if e["actor"] in ACTORS)

    def about(self, *needles: str, last: int = 40) -> list[dict[str, Any]]:
        with self._lock:
            hits = [e for e in self.entries if any(n and n in json.dumps(e, ensure_ascii=False) for n in needles)]
            return hits[-last:]

    def dump(self, path: Path) -> None:
        with self._lock:
            path.write_text("".join(json.dumps(e) + "\n" for e in self.entries))


@dataclass
class Violation:
    invariant: str
    message: str
    needles: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.message}"


@dataclass
class Result:
    seed: int
    seconds: float
    ops: int
    edits: int
    violations: list[Violation]
    counts: Counter
    stats: dict[str, Any]
    report: str
    workdir: Path

    @property
    def ok(self) -> bool:
        return not self.violations


# -- the harness ---------------------------------------------------------------------------


class Harness:
    def __init__(self, root: Path, seed: int, seconds: float, out: Callable[[str], None] = print,
                 settle_timeout: float = 90.0, before_check: Callable[["Harness", dict], None] | None = None,
                 lenient_reports: bool = False, hunt: bool = True):
        self.before_check = before_check
        self.hunt = hunt  # the hunter actor and the racer's hunting variant
        self.lenient_reports = lenient_reports
        self.root, self.seed, self.seconds, self.out = Path(root), seed, seconds, out
        self.settle_timeout = settle_timeout
        self.ws = Workspace(self.root)
        self.log = OpLog(time.monotonic())
        self.stop = threading.Event()
        self.violations: list[Violation] = []
        self._vlock = threading.Lock()
        self.folder_locks = {e: threading.Lock() for e in ENVS}
        self.broken: dict[tuple[str, str], tuple[str, str]] = {}  # (env, file) -> key of a file we broke
        self.recent: dict[tuple[str, str], float] = {}  # (env, file) -> when a person last wrote it
        self.svc: ServiceProcess | None = None
        self.svc_lock = threading.Lock()
        self.services: list[ServiceProcess] = []
        self.expected_dead: set[int] = set()  # pids we killed or stopped
        self.stats: Counter = Counter()
        self.actor_errors: list[str] = []
        self.notices: list[Violation] = []  # accounted for, but worth a look

    # -- helpers ----------------------------------------------------------------------------

    def violation(self, invariant: str, message: str, *needles: str) -> None:
        with self._vlock:
            self.violations.append(Violation(invariant, message, needles))
        self.out(f"VIOLATION [{invariant}] {message}")

    def git(self, *args: str, cwd: Path | None = None, user: str = "Ada User", input: bytes | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        env = git_env(self.root)
        env.update(GIT_AUTHOR_NAME=user, GIT_COMMITTER_NAME=user)
        return subprocess.run(["git", *args], cwd=cwd or self.ws.repo, env=env, capture_output=True, input=input,
                              timeout=timeout)

    def git_ok(self, *args: str, cwd: Path | None = None, user: str = "Ada User") -> str:
        p = self.git(*args, cwd=cwd, user=user)
        if p.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
        return p.stdout.decode()

    def folder(self, env: str) -> Path:
        return self.ws.env_dir(env)

    def folder_files(self, env: str) -> dict[str, bytes]:
        out = {}
        for p in sorted(self.folder(env).iterdir()):
            if p.name.endswith(".json") and not p.name.startswith("."):
                try:
                    out[p.name] = p.read_bytes()
                except FileNotFoundError:
                    continue
        return out

    def new_doc(self, rng: random.Random, key: tuple[str, str], token: str) -> dict[str, Any]:
        return {
            "name": key[0],
            "version": key[1],
            "exportedAt": f"2026-11-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z",
            "note": token,
            "steps": [
                {"id": "s1", "type": "http-in", "config": {"url": f"/{encode(key[0])}", "method": "POST"}},
                {"id": "s2", "type": "transform", "config": {"expr": f"payload.total * {rng.randint(1, 9)}"}},
            ],
        }

    def mutate(self, rng: random.Random, doc: dict[str, Any], token: str) -> dict[str, Any]:
        doc["note"] = token
        if rng.random() < 0.5:
            doc["exportedAt"] = f"2026-12-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
        if rng.random() < 0.3 and isinstance(doc.get("steps"), list) and doc["steps"]:
            step = doc["steps"][-1]
            if isinstance(step, dict):
                step.setdefault("config", {})["expr"] = f"payload.total * {rng.randint(1, 99)}"
        return doc

    @staticmethod
    def dumps(rng: random.Random, doc: Any) -> bytes:
        indent = rng.choice([None, 2, 4])
        text = json.dumps(doc, indent=indent, sort_keys=rng.random() < 0.5, ensure_ascii=rng.random() < 0.5)
        return (text + ("\n" if rng.random() < 0.7 else "")).encode()

    @staticmethod
    def broken_bytes(key: tuple[str, str], token: str) -> bytes:
        # The token comes first, so it is in the file even though the file does not parse.
        return ('{"note": "%s", "name": %s, "version": %s, "steps": [{"id": "s1",'
                % (token, json.dumps(key[0]), json.dumps(key[1]))).encode()

    # -- the service --------------------------------------------------------------------------

    def start_service(self) -> ServiceProcess | None:
        try:
            s = ServiceProcess(self.ws.config, env=SERVICE_ENV)
        except AssertionError as exc:
            self.violation("I4", f"the service did not start: {str(exc)[-2000:]}")
            return None
        with self.svc_lock:
            self.services.append(s)
            self.svc = s
        return s

    def current(self) -> ServiceProcess | None:
        with self.svc_lock:
            return self.svc

    def status(self) -> dict[str, dict[str, Any]] | None:
        s = self.current()
        if s is None or s.proc.poll() is not None:
            return None
        try:
            code, body = s.request("GET", "/api/v1/status")
        except (urllib.error.URLError, OSError, ValueError):
            return None
        except http.client.HTTPException as exc:  # e.g. IncompleteRead: killed while answering?
            time.sleep(0.3)
            if s.proc.poll() is None and s.proc.pid not in self.expected_dead:
                self.stats["broken status response from a live service"] += 1
                self.log.add("harness", "broken-status-response", detail=f"pid {s.proc.pid}: {exc!r}")
            return None
        if code != 200:
            return None
        return {e["name"]: e for e in body["environments"]}

    def check_alive(self) -> None:
        for s in list(self.services):
            rc = s.proc.poll()
            if rc is not None and s.proc.pid not in self.expected_dead:
                self.expected_dead.add(s.proc.pid)  # report once
                tail = "\n".join(s.raw[-20:])
                self.violation("I4", f"service pid {s.proc.pid} exited on its own with code {rc}:\n{tail}")

    def stop_service(self, how: str) -> None:
        with self.svc_lock:
            s, self.svc = self.svc, None
        if s is None:
            return
        self.check_alive()
        self.expected_dead.add(s.proc.pid)
        if how == "term":
            try:
                rc = s.terminate(60)
            except subprocess.TimeoutExpired:
                self.violation("I4", f"service pid {s.proc.pid} did not stop within 60 s of SIGTERM")
                s.kill()
                return
            if rc != 0:
                self.violation("I4", f"service pid {s.proc.pid} exited {rc} after SIGTERM (expected 0)")
        else:
            s.kill()

    # -- setup --------------------------------------------------------------------------------

    def setup(self) -> None:
        for name, settings in ENVS.items():
            self.ws.add_env(name, **settings)
        self.ws.write_config("\n[server]\nretry_base = 0.1\nretry_max = 1.0\nshutdown_grace = 10\n")
        # A ref lock left by kill -9 is the service's to clear (stale_lock_after); 3 s keeps runs short.
        text = self.ws.config.read_text()
        self.ws.config.write_text(text.replace('path = "state/flows.git"\n', 'path = "state/flows.git"\nstale_lock_after = 3\n', 1))
        rng = random.Random(f"{self.seed}-setup")
        for i, key in enumerate(SEED_FLOWS):
            self.ws.put("dev", f"seed-{i}.json", self.new_doc(rng, key, f"seed-{i}"))
        self.ws.cli("export", "dev", check=True)
        for env in ENVS:
            if env != "dev":
                self.git_ok("branch", _branch(env), _branch("dev"))
        self.log.add("setup", "seed", detail=f"{len(SEED_FLOWS)} flows exported from dev; acc and prod branched from it")
        s = self.start_service()
        if s is None:
            raise RuntimeError("the service did not start")
        wait_for(lambda: all(s.runs(e) >= 1 for e in ENVS) and
                 all(len(self.folder_files(e)) >= len(SEED_FLOWS) for e in ENVS),
                 timeout=30, what="the startup reconcile to fill every folder")

    # -- actors ---------------------------------------------------------------------------------

    def actor(self, name: str, step: Callable[[random.Random], None], pause: tuple[float, float]) -> threading.Thread:
        """A thread running ``step`` until told to stop. Step n of actor A draws every choice from
        ``Random(f"{seed}-{A}-{n}")``: what it does depends on the seed, never on how earlier steps went
        (the state it finds, which depends on the service's timing, decides only the details)."""

        def loop() -> None:
            n = 0
            while not self.stop.is_set():
                n += 1
                rng = random.Random(f"{self.seed}-{name}-{n}")
                try:
                    step(rng)
                except Exception:  # noqa: BLE001 - a harness bug must be seen, not hang the run
                    self.actor_errors.append(f"{name}: {traceback.format_exc()}")
                    self.out(f"actor {name} error:\n{traceback.format_exc()}")
                self.stop.wait(rng.uniform(*pause))

        t = threading.Thread(target=loop, name=f"actor-{name}", daemon=True)
        t.start()
        return t

    # ---- git users

    def make_clone(self, name: str) -> Path:
        dest = self.root / "users" / name
        dest.parent.mkdir(exist_ok=True)
        self.git_ok("clone", "-q", str(self.ws.repo), str(dest), cwd=self.root)
        return dest

    def janitor(self, min_age: float = 3.0, who: str = "janitor") -> int:
        """Remove ref locks older than ``min_age`` s: a git write holds one for milliseconds, so
        an old one was left by a ``kill -9``; the error message tells a person to do exactly this."""
        removed = 0
        repo = self.ws.repo
        candidates = list((repo / "refs").rglob("*.lock")) + [repo / "packed-refs.lock"]
        for p in candidates:
            try:
                age = time.time() - p.stat().st_mtime
            except FileNotFoundError:
                continue
            if age >= min_age:
                try:
                    content = p.read_bytes()[:80].decode(errors="replace").strip()
                    p.unlink()
                except FileNotFoundError:
                    continue
                removed += 1
                self.stats["stale ref locks removed"] += 1
                s = self.current()
                said = [e.get("error") for e in s.find("reconcile failed, will retry")][-1:] if s else []
                self.log.add(who, "remove-stale-lock", detail=f"{p.relative_to(repo)} ({age:.1f} s old, "
                             f"holding {content!r}); the service said: {said}")
        return removed

    def reset_clone(self, clone: Path, branch: str) -> None:
        """Leave any merge or rebase in progress and check out the server's ``branch``, clean."""
        self.git("rebase", "--abort", cwd=clone)
        self.git("merge", "--abort", cwd=clone)
        self.git_ok("fetch", "-q", "origin", cwd=clone)
        self.git_ok("checkout", "-q", "-f", "-B", branch, f"origin/{branch}", cwd=clone)
        self.git_ok("clean", "-fdq", cwd=clone)

    def git_change(self, actor: str, clone: Path, env: str, change: Callable[[Path], dict[str, Any] | None],
                   message: str) -> dict[str, Any] | None:
        """Commit ``change`` on env/E in ``clone`` and push it, as a user would; returns what was pushed."""
        branch = _branch(env)
        user = f"User {actor}"
        for attempt in range(8):
            self.reset_clone(clone, branch)
            what = change(clone)
            if what is None:
                return None
            self.git_ok("add", "-A", cwd=clone)
            c = self.git("commit", "-q", "-m", f"{message} ({actor})", cwd=clone, user=user)
            if c.returncode != 0:
                return None  # nothing changed
            for _ in range(6):
                p = self.git("push", "-q", "origin", branch, cwd=clone, user=user)
                if p.returncode == 0:
                    what["attempts"] = attempt + 1
                    return what
                err = p.stderr.decode(errors="replace")
                if ".lock': File exists" in err:
                    self.stats["push failed on a held ref lock"] += 1
                    self.log.add(actor, "push-lock-error", env=env, detail=err.strip()[-300:])
                    self.janitor(who=actor)
                    self.stop.wait(0.05)
                    continue
                if "but expected" in err:
                    # the ref moved between git's check and its update (the service committed): rejected
                    self.stats["push lost a ref race"] += 1
                if "rejected" in err or "fetch first" in err or "non-fast-forward" in err:
                    self.stats["push rejected, pull --rebase"] += 1
                    r = self.git("pull", "-q", "--rebase", "origin", branch, cwd=clone, user=user)
                    if r.returncode != 0:
                        self.stats["rebase conflict, redone"] += 1
                        break  # redo the change on the new tip
                    continue
                raise RuntimeError(f"git push failed: {err}")
        self.log.add(actor, "abandoned", env=env, place="branch", detail=message, made=False)
        self.stats["git changes abandoned"] += 1
        return None

    def branch_flows(self, clone: Path) -> list[Path]:
        return sorted(p for p in (clone / "flows").glob("*/*.json"))

    def git_user_step(self, actor: str, clone: Path, rng: random.Random, counter: list[int]) -> None:
        env = rng.choices(list(ENVS), [4, 3, 1])[0]
        r = rng.random()
        if r < 0.12:
            src, dst = rng.choice(PROMOTIONS)
            self.promote(actor, clone, src, dst)
            return
        if r < 0.22:
            self.resolve_take_env(actor, clone, rng, env)
            return
        if r < 0.24:
            # server maintenance: what `git gc --auto` does to refs on a busy server
            p = self.git("pack-refs", "--all")
            self.log.add(actor, "pack-refs", detail=f"rc={p.returncode} {p.stderr.decode(errors='replace')[-200:]}")
            return
        kind = rng.choices(["edit", "create", "delete", "break"], [70, 10, 7, 5])[0]
        counter[0] += 1
        token = f"edit-{self.seed}-{actor}-{counter[0]}"
        pick = rng.random()
        fmt_rng = random.Random(rng.random())

        def change(c: Path) -> dict[str, Any] | None:
            files = self.branch_flows(c)
            if kind == "create" or not files:
                key = (rng.choice([f"{actor}-flow-{counter[0]}", f"{actor.upper()} Flow {counter[0]}"]),
                       rng.choice(["1", "1.0", "2"]))
                path = c / repo_path(key)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self.dumps(fmt_rng, self.new_doc(fmt_rng, key, token)))
                return {"token": token, "where": repo_path(key), "flow": kstr(key), "op": "create"}
            path = files[int(pick * len(files))]
            rel = path.relative_to(c).as_posix()
            key = parse_flow_path(rel.removeprefix("flows/"))
            old = path.read_bytes()
            if kind == "delete":
                if len(files) < 3:
                    return None
                path.unlink()
                return {"where": rel, "flow": kstr(key), "op": "delete", "replaced": sorted(tokens_in(old))}
            if kind == "break":
                path.write_bytes(self.broken_bytes(key, token))
                return {"token": token, "where": rel, "flow": kstr(key), "op": "break", "replaced": sorted(tokens_in(old))}
            try:
                doc = json.loads(old)
                if key_of(doc) != key:
                    raise ValueError("not this flow")
                op = "edit"
            except ValueError:
                doc, op = self.new_doc(fmt_rng, key, token), "fix"
            new = self.dumps(fmt_rng, self.mutate(fmt_rng, doc, token))
            path.write_bytes(new)
            return {"token": token, "where": rel, "flow": kstr(key), "op": op,
                    "replaced": sorted(tokens_in(old) - tokens_in(new))}

        got = self.git_change(actor, clone, env, change, f"{kind} on {env}")
        if got is not None:
            op = got.pop("op")
            self.log.add(actor, f"git-{op}", env=env, place="branch", **got)

    def promote(self, actor: str, clone: Path, src: str, dst: str) -> None:
        branch, other = _branch(dst), f"origin/{_branch(src)}"
        user = f"User {actor}"
        for attempt in range(6):
            self.reset_clone(clone, branch)
            m = self.git("merge", "-q", "--no-edit", "-X", "theirs", "-m", f"promote {src} -> {dst}", other,
                         cwd=clone, user=user)
            how = "merge -X theirs"
            if m.returncode != 0:
                # modify/delete conflicts: take the promoted side, as a reviewer promoting would
                unmerged = self.git_ok("diff", "--name-only", "--diff-filter=U", cwd=clone).split()
                for p in unmerged:
                    if self.git("cat-file", "-e", f"{other}:{p}", cwd=clone).returncode == 0:
                        self.git_ok("checkout", "-q", other, "--", p, cwd=clone)
                        self.git_ok("add", p, cwd=clone)
                    else:
                        self.git_ok("rm", "-q", "--", p, cwd=clone)
                c = self.git("commit", "-q", "--no-edit", cwd=clone, user=user)
                if c.returncode != 0:
                    self.log.add(actor, "promote-failed", env=dst, detail=m.stderr.decode(errors="replace")[-300:])
                    return
                how = "merge, modify/delete conflicts taken from the source"
            if self.git_ok("rev-parse", "HEAD", cwd=clone) == self.git_ok("rev-parse", f"origin/{branch}", cwd=clone):
                self.log.add(actor, "promote-noop", env=dst, detail=f"{src} -> {dst}: already merged")
                return
            for _ in range(4):
                p = self.git("push", "-q", "origin", branch, cwd=clone, user=user)
                if p.returncode == 0:
                    head = self.git_ok("rev-parse", "--short", "HEAD", cwd=clone).strip()
                    self.log.add(actor, "promote", env=dst, detail=f"{src} -> {dst} ({how}) {head}", attempts=attempt + 1)
                    return
                if ".lock': File exists" in p.stderr.decode(errors="replace"):
                    self.janitor(who=actor)
                    self.stop.wait(0.05)
                    continue
                break  # rejected: redo the merge on the new tip
            self.stats["promotion redone"] += 1
        self.log.add(actor, "abandoned", env=dst, detail=f"promote {src} -> {dst}")

    def find_in_folder(self, env: str, match: Callable[[tuple[str, str]], bool]) -> tuple[str, bytes, Any] | None:
        """(file name, bytes, document) of the first valid flow in E's folder whose key matches."""
        for name, raw in self.folder_files(env).items():
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            if key_of(doc) and match(key_of(doc)):
                return name, raw, doc
        return None

    def resolve_take_env(self, actor: str, clone: Path, rng: random.Random, env: str) -> None:
        """An operator resolves a reported conflict by committing the environment's version."""
        st = self.status()
        if not st or not st[env]["conflicts"]:
            return
        wanted = rng.choice(sorted(st[env]["conflicts"]))
        with self.folder_locks[env]:
            got = self.find_in_folder(env, lambda k: kstr(k) == wanted)
            found = (got[0], got[1], key_of(got[2])) if got else None
        if found is None:
            return
        name, raw, key = found

        def change(c: Path) -> dict[str, Any]:
            path = c / repo_path(key)
            old = path.read_bytes() if path.exists() else b""
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(raw)
            return {"where": repo_path(key), "flow": kstr(key), "replaced": sorted(tokens_in(old) - tokens_in(raw)),
                    "detail": f"took {env}/{name} ({', '.join(sorted(tokens_in(raw)))})"}

        got = self.git_change(actor, clone, env, change, f"resolve {wanted}: take {env}'s version")
        if got is not None:
            self.log.add(actor, "resolve-take-env", env=env, place="branch", **got)

    # ---- the UI (folders)

    def write_folder(self, path: Path, data: bytes, atomic: bool) -> bytes | None:
        """Save ``data`` at ``path`` as an editor does; returns the bytes the save replaced (None:
        there was no file, or, where the file system cannot swap two names, not known).

        What a save replaced is what it *replaced*, not what the person read earlier: the service's
        swap write shows its new version under the name for a moment (while it checks what came
        out) and then puts back a save made meanwhile, so a file read in that moment and saved later
        overwrites that save, and the log must say so (the person overwrote it, not the service)."""
        if atomic:
            tmp = path.parent / f".harness-{os.getpid()}-{threading.get_ident()}.tmp"
            tmp.write_bytes(data)
            return save_by_swap(tmp, path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # an editor saving in place
        with os.fdopen(fd, "r+b") as f:
            before = f.read()
            f.seek(0)
            f.truncate(0)
            f.write(data)
        return before

    def saved_over(self, replaced: bytes | None, read: bytes) -> bytes:
        """What a save overwrote: the bytes it replaced when known, else what the person read."""
        if replaced is None:
            return read
        if replaced != read:
            self.stats["saves over a file changed since it was read"] += 1
        return replaced

    def folder_edit(self, actor: str, rng: random.Random, env: str, kind: str, token: str,
                    key_wanted: tuple[str, str] | None = None) -> tuple[str, str] | None:
        """One UI operation in E's folder; returns the key it touched."""
        folder = self.folder(env)
        atomic = rng.random() < 0.7
        with self.folder_locks[env]:
            files = self.folder_files(env)
            if kind == "create" or not files:
                n = token.rsplit("-", 1)[1]
                key = (rng.choice([f"ui-{actor}-{n}", f"UI {actor} {n}"]), rng.choice(["1", "1.0"]))
                name = f"export-{actor}-{n}.json"
                data = self.dumps(rng, self.new_doc(rng, key, token))
                self.write_folder(folder / name, data, atomic)
                self.log.add(actor, "ui-create", env=env, place="folder", where=name, flow=kstr(key), token=token,
                             atomic=atomic)
                return key
            parsed = {}
            for name, raw in files.items():
                try:
                    parsed[name] = key_of(json.loads(raw))
                except ValueError:
                    parsed[name] = None
            names = sorted(files)
            # People rarely edit one file twice within a second or two: prefer files the
            # service had a chance to see since their last edit (fewer superseded edits).
            now = time.monotonic()
            rested = [n for n in names if now - self.recent.get((env, n), -1e9) > 1.5]
            if key_wanted is None:
                names = rested or names
            else:
                names = [n for n in names if parsed[n] == key_wanted] or names
            name = rng.choice(names)
            old = files[name]
            self.recent[(env, name)] = now
            key = parsed[name] or self.broken.get((env, name))
            path = folder / name
            if kind == "delete":
                if len(files) < 3:
                    return None
                try:
                    path.unlink()
                except FileNotFoundError:
                    return None
                self.log.add(actor, "ui-delete", env=env, place="folder", where=name, flow=key and kstr(key),
                             replaced=sorted(tokens_in(old)))
                return key
            if key is None:
                return None  # a file we did not write and cannot read: leave it
            if kind == "break":
                data = self.broken_bytes(key, token)
                old = self.saved_over(self.write_folder(path, data, atomic), old)
                self.broken[(env, name)] = key
                self.log.add(actor, "ui-break", env=env, place="folder", where=name, flow=kstr(key), token=token,
                             replaced=sorted(tokens_in(old)), atomic=atomic)
                return key
            if kind == "touch" and parsed[name] is not None:
                doc = json.loads(old)
                doc["exportedAt"] = f"2027-01-{rng.randint(1, 28):02d}T00:00:00Z"
                data = self.dumps(rng, doc)
                old = self.saved_over(self.write_folder(path, data, atomic), old)
                self.log.add(actor, "ui-touch", env=env, place="folder", where=name, flow=kstr(key),
                             replaced=sorted(tokens_in(old) - tokens_in(data)), atomic=atomic)
                return key
            if parsed[name] is None:
                doc, op = self.new_doc(rng, key, token), "ui-fix"
                self.broken.pop((env, name), None)
            else:
                doc, op = json.loads(old), "ui-edit"
            data = self.dumps(rng, self.mutate(rng, doc, token))
            old = self.saved_over(self.write_folder(path, data, atomic), old)
            self.log.add(actor, op, env=env, place="folder", where=name, flow=kstr(key), token=token,
                         replaced=sorted(tokens_in(old) - tokens_in(data)), atomic=atomic)
            return key

    def ui_step(self, rng: random.Random, counter: list[int]) -> None:
        env = rng.choice(list(ENVS))
        kind = rng.choices(["edit", "create", "delete", "break", "touch", "resolve"], [55, 8, 7, 6, 8, 15])[0]
        if kind == "resolve":
            self.resolve_take_git("ui", rng, env)
            return
        counter[0] += 1
        self.folder_edit("ui", rng, env, kind, f"edit-{self.seed}-ui-{counter[0]}")

    def resolve_take_git(self, actor: str, rng: random.Random, env: str) -> None:
        """An operator resolves a reported conflict by restoring git's version in the folder by hand."""
        st = self.status()
        if not st or not st[env]["conflicts"]:
            return
        wanted = rng.choice(sorted(st[env]["conflicts"]))
        with self.folder_locks[env]:
            for name, raw in self.folder_files(env).items():
                try:
                    key = key_of(json.loads(raw))
                except ValueError:
                    continue
                if key and kstr(key) == wanted:
                    g = self.git("show", f"{_branch(env)}:{repo_path(key)}")
                    if g.returncode != 0:
                        return
                    raw = self.saved_over(self.write_folder(self.folder(env) / name, g.stdout, True), raw)
                    self.log.add(actor, "resolve-take-git", env=env, place="folder", where=name, flow=wanted,
                                 replaced=sorted(tokens_in(raw) - tokens_in(g.stdout)))
                    return

    # ---- the racer

    def racer_step(self, clone: Path, rng: random.Random, counter: list[int]) -> None:
        if rng.random() < 0.5:
            self.push_then_edit(clone, rng, counter)
            return
        env = rng.choice(["dev", "acc"])
        counter[0] += 1
        t_folder = f"edit-{self.seed}-rc-{counter[0]}"
        counter[0] += 1
        t_git = f"edit-{self.seed}-rc-{counter[0]}"
        same = rng.random() < 0.4
        git_first = rng.random() < 0.3
        pick = rng.random()
        fmt_rng = random.Random(rng.random())
        touched: dict[str, tuple[str, str] | None] = {}

        def folder() -> None:
            touched["key"] = self.folder_edit("rc", rng, env, "edit", t_folder)

        def change(c: Path) -> dict[str, Any] | None:
            files = self.branch_flows(c)
            if not files:
                return None
            path = files[int(pick * len(files))]
            if same and touched.get("key") is not None and (c / repo_path(touched["key"])).exists():
                path = c / repo_path(touched["key"])
            rel = path.relative_to(c).as_posix()
            key = parse_flow_path(rel.removeprefix("flows/"))
            replaced = self.edit_branch_file(path, key, fmt_rng, t_git)
            return {"token": t_git, "where": rel, "flow": kstr(key), "replaced": replaced}

        if not git_first:
            folder()
        got = self.git_change("rc", clone, env, change, f"racing edit on {env}")
        if got is not None:
            self.log.add("rc", "git-race-edit", env=env, place="branch", **got)
        if git_first:
            folder()

    def edit_branch_file(self, path: Path, key: tuple[str, str], rng: random.Random, token: str) -> list[str]:
        """Write ``token`` into the flow at ``path`` in a clone (a fresh document if it is not
        that flow's valid JSON); returns the tokens the edit replaced."""
        old = path.read_bytes()
        try:
            doc = json.loads(old)
            if key_of(doc) != key:
                raise ValueError
        except ValueError:
            doc = self.new_doc(rng, key, token)
        new = self.dumps(rng, self.mutate(rng, doc, token))
        path.write_bytes(new)
        return sorted(tokens_in(old) - tokens_in(new))

    def push_then_edit(self, clone: Path, rng: random.Random, counter: list[int], actor: str = "rc",
                       always_hunt: bool = False) -> None:
        """Push a change to flow K, then edit K in the folder a few milliseconds later: the edit
        lands while the service reads, plans or writes K, so only the write guard can keep it."""
        env = rng.choice(list(ENVS))
        counter[0] += 1
        t_git = f"edit-{self.seed}-{actor}-{counter[0]}"
        counter[0] += 1
        t_folder = f"edit-{self.seed}-{actor}-{counter[0]}"
        delay = rng.uniform(0.0, 0.15)
        hunt = self.hunt and (always_hunt or rng.random() < 0.5)
        shot = rng.uniform(0.0, 0.0008)
        pick = rng.random()
        fmt_rng = random.Random(rng.random())
        live = {}
        with self.folder_locks[env]:
            for raw in self.folder_files(env).values():
                try:
                    key = key_of(json.loads(raw))
                except ValueError:
                    continue
                if key:
                    live[key] = True
        if not live:
            return

        def change(c: Path) -> dict[str, Any] | None:
            candidates = [k for k in sorted(live) if (c / repo_path(k)).exists()]
            if not candidates:
                return None
            key = candidates[int(pick * len(candidates))]
            replaced = self.edit_branch_file(c / repo_path(key), key, fmt_rng, t_git)
            return {"token": t_git, "where": repo_path(key), "flow": kstr(key), "replaced": replaced, "key": key}

        got = self.git_change(actor, clone, env, change, f"push, then edit in the folder, on {env}")
        if got is None:
            return
        key = got.pop("key")
        self.log.add(actor, "git-push-then-edit", env=env, place="branch", **got)
        if hunt and self.hunt_edit(actor, env, key, t_folder, shot, fmt_rng):
            return
        time.sleep(delay)
        self.folder_edit(actor, rng, env, "edit", t_folder, key_wanted=key)

    def hunt_edit(self, actor: str, env: str, key: tuple[str, str], token: str, shot: float, rng: random.Random) -> bool:
        """Save an edit of K the moment the service starts writing this folder.

        The directory driver writes its temporary files (``.reconciler-*.swap``/``.tmp``) first, then
        swaps each into place and checks what came out (or, without swap support, moves the target
        aside, compares it and links the new file in). The edit is prepared in advance and saved
        with one rename ``shot`` seconds after such a file appears: an editor saving at the worst time.
        """
        folder = self.folder(env)
        with self.folder_locks[env]:
            found = self.find_in_folder(env, lambda k: k == key)
            if found is None:
                return False
            name, old, doc = found
            data = self.dumps(rng, self.mutate(rng, doc, token))
            tmp = folder / f".harness-hunt-{os.getpid()}.tmp"
            tmp.write_bytes(data)
            with os.scandir(folder) as it:  # left behind by a kill -9: not a write in progress
                leftovers = {e.name for e in it if e.name.startswith(".reconciler-")}
            started = time.perf_counter()
            deadline, seen = started + 0.6, None
            while time.perf_counter() < deadline and not self.stop.is_set():
                with os.scandir(folder) as it:
                    if any(e.name.startswith(".reconciler-") and e.name not in leftovers for e in it):
                        seen = time.perf_counter()
                        break
            if seen is not None:
                while time.perf_counter() < seen + shot:
                    pass
            old = self.saved_over(save_by_swap(tmp, folder / name), old)
            self.recent[(env, name)] = time.monotonic()
            detail = (f"saved {shot * 1e6:.0f} us after the service's temporary file appeared "
                      f"({(seen - started) * 1e3:.1f} ms after the push)" if seen else "no write seen within 0.6 s")
            self.stats["hunted edits (write seen)" if seen else "hunted edits (no write seen)"] += 1
            self.log.add(actor, "ui-hunt-edit", env=env, place="folder", where=name, flow=kstr(key), token=token,
                         replaced=sorted(tokens_in(old) - tokens_in(data)), atomic=True, detail=detail)
            return True

    # ---- chaos

    def chaos_step(self, rng: random.Random) -> None:
        how = rng.choices(["kill-9", "kill-9-while-running", "term"], [55, 25, 20])[0]
        s = self.current()
        if s is None:
            return
        self.check_alive()
        if how == "kill-9-while-running":
            deadline = time.monotonic() + 3
            caught = False
            while time.monotonic() < deadline and not self.stop.is_set():
                st = self.status()
                if st and any(e["running"] for e in st.values()):
                    caught = True
                    break
                time.sleep(0.003)
            how = how if caught else "kill-9"
        self.stop_service("term" if how == "term" else "kill")
        self.log.add("ch", how, detail=f"pid {s.proc.pid}")
        self.stats[how] += 1
        down = rng.uniform(0, 1.0)
        self.stop.wait(down)
        new = self.start_service()
        if new is not None:
            self.log.add("ch", "start", detail=f"pid {new.proc.pid} after {down:.2f} s down")
        if new is not None and rng.random() < 0.15:
            # again, while the new process is still doing its startup reconcile
            time.sleep(rng.uniform(0, 0.3))
            self.stop_service("kill")
            self.log.add("ch", "kill-9-during-startup", detail=f"pid {new.proc.pid}")
            self.stats["kill-9-during-startup"] += 1
            new = self.start_service()
            if new is not None:
                self.log.add("ch", "start", detail=f"pid {new.proc.pid}")

    # -- the quiet period ------------------------------------------------------------------------

    def heal(self) -> None:
        """Fix what people left broken (each fix is an edit with its own token)."""
        rng = random.Random(f"{self.seed}-heal")
        n = 0
        for env in ENVS:
            with self.folder_locks[env]:
                files = self.folder_files(env)
                holders: dict[tuple[str, str], list[str]] = {}
                for name, raw in files.items():
                    try:
                        key = key_of(json.loads(raw))
                    except ValueError:
                        key = None
                    if key is not None:
                        holders.setdefault(key, []).append(name)
                        continue
                    key = self.broken.get((env, name))
                    path = self.folder(env) / name
                    if key is None:
                        path.unlink()
                        self.log.add("heal", "ui-delete-unreadable", env=env, place="folder", where=name,
                                     replaced=sorted(tokens_in(raw)))
                        continue
                    n += 1
                    token = f"edit-{self.seed}-heal-{n}"
                    data = self.dumps(rng, self.new_doc(rng, key, token))
                    raw = self.saved_over(self.write_folder(path, data, True), raw)
                    self.broken.pop((env, name), None)
                    self.log.add("heal", "ui-fix", env=env, place="folder", where=name, flow=kstr(key), token=token,
                                 replaced=sorted(tokens_in(raw)))
                for key, names in holders.items():
                    if len(names) > 1:
                        self.stats["duplicate flow files healed"] += 1
                        for name in sorted(names)[1:]:
                            raw = files[name]
                            (self.folder(env) / name).unlink()
                            self.log.add("heal", "ui-delete-duplicate", env=env, place="folder", where=name,
                                         flow=kstr(key), replaced=sorted(tokens_in(raw)),
                                         detail=f"{sorted(names)} all hold {kstr(key)}")
        clone = self.root / "users" / "u1"
        for env in ENVS:
            def change(c: Path) -> dict[str, Any] | None:
                nonlocal n
                fixed = []
                for path in self.branch_flows(c):
                    rel = path.relative_to(c).as_posix()
                    key = parse_flow_path(rel.removeprefix("flows/"))
                    try:
                        if key_of(json.loads(path.read_bytes())) == key:
                            continue
                    except ValueError:
                        pass
                    n += 1
                    token = f"edit-{self.seed}-heal-{n}"
                    path.write_bytes(self.dumps(rng, self.new_doc(rng, key, token)))
                    fixed.append((token, rel, kstr(key)))
                return {"fixed": fixed} if fixed else None

            got = self.git_change("heal", clone, env, change, f"fix invalid flows on {env}")
            if got is not None:
                for token, rel, flow in got["fixed"]:
                    self.log.add("heal", "git-fix", env=env, place="branch", where=rel, flow=flow, token=token)

    def fingerprint(self, st: dict[str, dict[str, Any]] | None) -> str:
        h = hashlib.sha1()
        h.update(self.git_ok("for-each-ref", "--format=%(refname) %(objectname)").encode())
        for env in ENVS:
            for name, raw in self.folder_files(env).items():
                h.update(f"{env}/{name} {hashlib.sha1(raw).hexdigest()}\n".encode())
        for env in ENVS:
            e = (st or {}).get(env, {})
            h.update(json.dumps({k: e.get(k) for k in ("result", "error", "counts", "branch_tip", "applied",
                                                       "conflicts", "problems")}, sort_keys=True).encode())
        return h.hexdigest()

    def force_round(self, timeout: float = 30) -> dict[str, dict[str, Any]] | None:
        """Two API syncs per environment; returns the status once a run that started after the
        first request has finished everywhere and nothing is running (None on timeout)."""
        s = self.current()
        if s is None or s.proc.poll() is not None:
            return None
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        try:
            before = self.status()
            if before is None:
                return None
            for env in ENVS:
                assert s.request("POST", f"/api/v1/environments/{env}/sync", headers=auth)[0] == 202
            wait_for(lambda: (st := self.status()) and all(st[e]["runs"] >= before[e]["runs"] + 1 for e in ENVS),
                     timeout=timeout, interval=0.02, what="a forced run")
            for env in ENVS:
                assert s.request("POST", f"/api/v1/environments/{env}/sync", headers=auth)[0] == 202
            return wait_for(lambda: (st := self.status()) and all(
                st[e]["runs"] >= before[e]["runs"] + 2 and not st[e]["running"] and st[e]["retry_in"] is None
                for e in ENVS) and st, timeout=timeout, interval=0.02, what="the forced runs")
        except (AssertionError, urllib.error.URLError, OSError, http.client.HTTPException):
            return None

    def settle(self) -> dict[str, dict[str, Any]] | None:
        s = self.current()
        if s is None or s.proc.poll() is not None:
            self.check_alive()
            self.start_service()
        deadline = time.monotonic() + self.settle_timeout
        prev, rounds = None, 0
        last_status = None
        while time.monotonic() < deadline:
            self.check_alive()
            if self.current() is None or self.current().proc.poll() is not None:
                self.start_service()
            st = self.force_round()
            rounds += 1
            if st is None:
                continue
            last_status = st
            fp = self.fingerprint(st)
            if fp == prev:
                self.stats["settle rounds"] = rounds
                return st
            prev = fp
        self.violation("I5", f"the service did not settle within {self.settle_timeout:.0f} s; last status: "
                       + json.dumps(last_status, indent=1, default=str)[:3000])
        return last_status

    # -- the invariant --------------------------------------------------------------------------------

    def env_tokens(self, env: str) -> set[str]:
        found: set[str] = set()
        for raw in self.folder_files(env).values():
            found |= tokens_in(raw)
        refs = [r for r in (f"refs/heads/env/{env}", f"refs/heads/drift/{env}")
                if self.git("rev-parse", "-q", "--verify", r).returncode == 0]
        objs = self.git_ok("rev-list", "--objects", *refs)
        ids = "\n".join(line.split(" ", 1)[0] for line in objs.splitlines() if line) + "\n"
        types = self.git("cat-file", "--batch-check=%(objecttype) %(objectname)", input=ids.encode()).stdout.decode()
        blobs = "\n".join(line.split()[1] for line in types.splitlines() if line.startswith("blob ")) + "\n"
        data = self.git("cat-file", "--batch", input=blobs.encode()).stdout
        return found | tokens_in(data)

    def branch_docs(self, ref: str) -> dict[tuple[str, str], str | None]:
        """key -> normalized document at ``ref`` (None: the file does not parse or names another flow)."""
        out: dict[tuple[str, str], str | None] = {}
        p = self.git("ls-tree", "-r", "-z", ref, "--", "flows/")
        if p.returncode != 0:
            return out
        entries = []
        for line in p.stdout.decode().split("\0"):
            if not line:
                continue
            meta, path = line.split("\t", 1)
            entries.append((path, meta.split()[2]))
        if not entries:
            return out
        data = self.git("cat-file", "--batch", input=("\n".join(oid for _, oid in entries) + "\n").encode()).stdout
        pos = 0
        for path, oid in entries:
            header_end = data.index(b"\n", pos)
            size = int(data[pos:header_end].split()[2])
            raw = data[header_end + 1: header_end + 1 + size]
            pos = header_end + 1 + size + 1
            key = parse_flow_path(path.removeprefix("flows/"))
            try:
                doc = json.loads(raw)
                out[key] = normalize(doc) if key_of(doc) == key else None
            except ValueError:
                out[key] = None
        return out

    def folder_docs(self, env: str) -> tuple[dict[tuple[str, str], str | None], list[str]]:
        """key -> normalized document in E's folder (None: held by several files); unreadable files."""
        out: dict[tuple[str, str], str | None] = {}
        unreadable = []
        for name, raw in self.folder_files(env).items():
            try:
                doc = json.loads(raw)
            except ValueError:
                unreadable.append(name)
                continue
            key = key_of(doc)
            if key is None:
                unreadable.append(name)
                continue
            out[key] = None if key in out else normalize(doc)
        return out, unreadable

    def check(self, st: dict[str, dict[str, Any]] | None) -> None:
        st = st or {}
        # I4: crashes
        self.check_alive()
        for s in self.services:
            for e in s.find("reconcile crashed"):
                self.violation("I4", f"pid {s.proc.pid}: reconcile crashed in {e.get('environment')}: "
                               f"{json.dumps(e)[:1500]}", e.get("environment", ""))
        fsck = self.git("fsck", "--no-progress", "--no-dangling")
        if fsck.returncode != 0:
            self.violation("I4", f"git fsck failed: {fsck.stdout.decode()[-1500:]} {fsck.stderr.decode()[-1500:]}")
        if self.actor_errors:
            self.violation("harness", f"{len(self.actor_errors)} actor errors; first:\n{self.actor_errors[0]}")

        # I1: every edit is somewhere
        tokens = {env: self.env_tokens(env) for env in ENVS}
        accounted = Counter()
        for edit in sorted(self.log.edits, key=lambda e: e.seq):
            if edit.token in tokens[edit.env]:
                accounted[f"{edit.place} edits found"] += 1
                continue
            if edit.place == "folder":
                by = self.log.replaced.get((edit.env, edit.where), {}).get(edit.token)
                if by is not None and by > edit.seq:
                    accounted[f"{edit.place} edits superseded"] += 1
                    continue
            e = st.get(edit.env, {})
            reported = bool(edit.flow) and (edit.flow in e.get("conflicts", []) or any(
                edit.flow in p or (edit.where and edit.where in p) for p in e.get("problems", [])))
            what = (f"edit {edit.token} (seq {edit.seq}, {edit.kind} of {edit.flow} in {edit.place} "
                    f"{edit.env}:{edit.where}) is lost: not in {edit.env}'s folder, not on env/{edit.env} or "
                    f"drift/{edit.env}, not superseded")
            if reported and self.lenient_reports:
                accounted[f"{edit.place} edits reported only"] += 1
                self.notices.append(Violation("I1", f"{what}; accepted only because status reports {edit.flow}",
                                              (edit.token, edit.flow, edit.where)))
                continue
            self.violation("I1", what + (f" (status lists {edit.flow} as a conflict/problem, but its content "
                                         f"is gone)" if reported else ", not reported"),
                           edit.token, edit.flow, edit.where)
        self.stats.update(accounted)

        # I2, I3: status
        for env, settings in ENVS.items():
            e = st.get(env)
            if e is None:
                self.violation("I2", f"no status for {env}")
                continue
            branch = self.branch_docs(_branch(env))
            marker = self.branch_docs(f"refs/reconciler/applied/{env}")
            live, unreadable = self.folder_docs(env)
            keys = set(branch) | set(live)
            agree = {k for k in keys if branch.get(k) is not None and branch.get(k) == live.get(k)}
            counts = e["counts"]
            tip = self.git_ok("rev-parse", _branch(env)).strip()
            applied = self.git("rev-parse", "-q", "--verify", f"refs/reconciler/applied/{env}").stdout.decode().strip()
            if e["branch_tip"] != tip:
                self.violation("I3", f"{env}: status branch_tip {e['branch_tip']} but env/{env} is {tip}")
            if e["applied"] != (applied or None):
                self.violation("I3", f"{env}: status applied {e['applied']} but the marker is {applied}")
            if counts.get("in_sync") != len(agree):
                self.violation("I2", f"{env}: {len(agree)} flows agree between env/{env} and the folder but status "
                               f"says in_sync={counts.get('in_sync')} (counts {counts}, result {e['result']}); "
                               f"disagreeing: {sorted(kstr(k) for k in keys - agree)}",
                               *(kstr(k) for k in keys - agree))
            if not unreadable and sum(counts.values()) != len(keys):
                self.violation("I2", f"{env}: status counts {counts} cover {sum(counts.values())} flows, "
                               f"there are {len(keys)}")
            for k in sorted(agree):
                if kstr(k) in e["conflicts"]:
                    self.violation("I2", f"{env}: {kstr(k)} agrees but is listed as a conflict", kstr(k))
                if marker.get(k) != branch[k]:
                    self.violation("I3", f"{env}: {kstr(k)} is in sync but the applied marker holds "
                                   f"{'nothing' if k not in marker else 'another version'}", kstr(k))
            if agree == keys and not unreadable:
                if e["result"] != "ok" or any(v for s_, v in counts.items() if s_ != "in_sync"):
                    self.violation("I2", f"{env}: branch and folder agree on all {len(keys)} flows but status says "
                                   f"result={e['result']} counts={counts} error={e.get('error')}")
            for k in sorted(keys - agree):
                s_ = kstr(k)
                if s_ in e["conflicts"] or any(s_ in p for p in e["problems"]):
                    continue
                if branch.get(k, "x") is None or live.get(k, "x") is None:
                    continue  # invalid on one side: counted as invalid
                if settings["drift"] == "adopt" and not settings.get("prune") and k not in branch and k in live:
                    continue  # deleted in git, prune off: blocked, stays (pending)
                self.violation("I2", f"{env}: {s_} differs between env/{env} and the folder "
                               f"(branch: {'absent' if k not in branch else 'present'}, folder: "
                               f"{'absent' if k not in live else 'present'}) and status does not report it "
                               f"(result {e['result']}, counts {counts}, conflicts {e['conflicts']})", s_)
            self.stats[f"{env}: flows"] = len(keys)
            self.stats[f"{env}: in sync"] = len(agree)
            self.stats[f"{env}: conflicts"] = len(e["conflicts"])

    # -- one run ------------------------------------------------------------------------------------

    def run(self) -> Result:
        started = time.monotonic()
        self.out(f"model check: seed {self.seed}, {self.seconds:.0f} s of operations in {self.root}")
        self.out(f"  reproduce: python -m tests.modelcheck --seed {self.seed} --seconds {self.seconds:g}")
        st = None
        try:
            self.setup()
            clones = {n: self.make_clone(n) for n in ("u1", "u2", "rc", "hn")}
            counters = {n: [0] for n in ("u1", "u2", "ui", "rc", "hn")}
            threads = [
                self.actor("u1", lambda r: self.git_user_step("u1", clones["u1"], r, counters["u1"]), (0.0, 0.25)),
                self.actor("u2", lambda r: self.git_user_step("u2", clones["u2"], r, counters["u2"]), (0.0, 0.4)),
                self.actor("ui", lambda r: self.ui_step(r, counters["ui"]), (0.0, 0.2)),
                self.actor("rc", lambda r: self.racer_step(clones["rc"], r, counters["rc"]), (0.1, 0.8)),
                self.actor("ch", self.chaos_step, (1.5, 5.0)),
            ]
            if self.hunt:
                threads.append(self.actor("hn", lambda r: self.push_then_edit(clones["hn"], r, counters["hn"], "hn",
                                                                              True), (0.05, 0.4)))
            op_end = time.monotonic() + self.seconds
            while time.monotonic() < op_end and not self.stop.is_set():
                time.sleep(min(1.0, max(0.0, op_end - time.monotonic())))
            self.stop.set()
            for t in threads:
                t.join(120)
            ops_done = time.monotonic()
            self.heal()
            st = self.settle()
            self.stats["quiet period s"] = round(time.monotonic() - ops_done, 1)
            if self.before_check is not None:
                self.before_check(self, st)  # the checker's own test tampers here
            self.check(st)
        except Exception:  # noqa: BLE001
            self.violation("harness", f"the harness failed:\n{traceback.format_exc()}")
        finally:
            self.stop.set()
            for s in self.services:
                s.kill()
        return self.finish(st, time.monotonic() - started)

    def finish(self, st: dict[str, Any] | None, seconds: float) -> Result:
        counts = self.log.counts()
        ops = sum(counts.values())
        events: Counter = Counter()
        for s in self.services:
            with s._lock:
                events.update(f"{e.get('event')} ({e['action']})" if e.get("event") == "flow reconciled"
                              else e.get("event") for e in s.logs)
        for event, n in events.items():
            if event and (event.startswith("flow reconciled") or event in (
                    "state moved, re-planning", "flow not reconciled", "reconcile failed, will retry",
                    "removed a stale ref lock")):
                self.stats[f"service: {event}"] = n
        self.log.dump(self.root / "oplog.jsonl")
        for i, s in enumerate(self.services):
            (self.root / f"service-{i}.log").write_text("\n".join(s.raw) + "\n")
        lines = [f"seed {self.seed}: {ops} operations ({len(self.log.edits)} edits) in {seconds:.1f} s, "
                 f"{len(self.services)} service processes, {len(self.violations)} violations"]
        lines.append("  operations: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        lines.append("  stats: " + ", ".join(f"{k}={v}" for k, v in sorted(self.stats.items())))
        for e in self.log.entries:
            if e["op"] == "remove-stale-lock":
                lines.append(f"NOTICE a kill -9 left a ref lock; removed by hand after it blocked writes: {e['detail']}")
        for notice in self.notices:
            lines.append(f"NOTICE {notice}")
            lines += [f"    {json.dumps(e, ensure_ascii=False)}" for e in self.log.about(*notice.needles, last=25)]
        if self.violations:
            first = self.violations[0]
            lines += ["", f"FIRST VIOLATION (seed {self.seed}): {first}", "",
                      f"reproduce: python -m tests.modelcheck --seed {self.seed} --seconds {self.seconds:g}", ""]
            related = self.log.about(*first.needles) if first.needles else []
            if related:
                lines.append("operations about it:")
                lines += [f"  {json.dumps(e)}" for e in related]
            lines.append("last operations:")
            lines += [f"  {json.dumps(e)}" for e in self.log.entries[-60:]]
            if len(self.violations) > 1:
                lines.append(f"other violations ({len(self.violations) - 1}):")
                lines += [f"  {v}"[:600] for v in self.violations[1:20]]
            lines.append(f"full operation log: {self.root / 'oplog.jsonl'}; service logs: {self.root}/service-*.log")
            if st:
                lines.append("final status: " + json.dumps(st, default=str)[:4000])
            lines.append("")
            lines.append(INVARIANT)
        report = "\n".join(lines)
        (self.root / "model-report.txt").write_text(report + "\n")
        self.out(report)
        return Result(self.seed, seconds, ops, len(self.log.edits), list(self.violations), counts,
                      dict(self.stats), report, self.root)


def run_model(root: Path, seed: int, seconds: float, out: Callable[[str], None] = print, **kw: Any) -> Result:
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty; every run starts from nothing")
    root.mkdir(parents=True, exist_ok=True)
    return Harness(root, seed, seconds, out, **kw).run()


def _seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            seeds.extend(range(int(a), int(b) + 1))
        elif part:
            seeds.append(int(part))
    return seeds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.modelcheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60, help="seconds of random operations per seed")
    ap.add_argument("--seed", type=int, action="append", help="a seed (repeatable)")
    ap.add_argument("--seeds", help="seeds: 1-10 or 3,5,8")
    ap.add_argument("--dir", type=Path, help="work directory (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory of passing seeds")
    ap.add_argument("--no-hunt", action="store_true",
                    help="no hunter: do not aim folder edits at the moment the service writes the folder")
    ap.add_argument("--lenient-reports", action="store_true",
                    help="accept an edit that is nowhere when status reports its flow (notice, not violation)")
    args = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the service processes of the run in progress are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seeds = (args.seed or []) + (_seeds(args.seeds) if args.seeds else [])
    seeds = list(dict.fromkeys(seeds)) or [random.SystemRandom().randrange(1, 1_000_000)]
    base = args.dir or Path(tempfile.mkdtemp(prefix="modelcheck-"))
    results = []
    for seed in seeds:
        r = run_model(base / f"seed-{seed}", seed, args.seconds, lenient_reports=args.lenient_reports,
                      hunt=not args.no_hunt)
        results.append(r)
        if r.ok and not args.keep:  # keep the report and the operation log, drop the rest
            for p in r.workdir.iterdir():
                if p.name not in ("model-report.txt", "oplog.jsonl"):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
    total_ops = sum(r.ops for r in results)
    total_edits = sum(r.edits for r in results)
    bad = [r.seed for r in results if not r.ok]
    print(f"\n{len(results)} seeds, {total_ops} operations, {total_edits} edits, "
          f"{sum(len(r.violations) for r in results)} violations"
          + (f" (seeds {bad}; reports under {base})" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
