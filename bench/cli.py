"""Whole-process figures: ``reconciler`` commands as a user or a CI job runs them, beside git.

Each figure is the wall time of fresh processes (median of ``runs``, min and max beside it, and
the CPU time of the same processes: ``ours.cpu``, ``cpu_ratio``),
and its baseline is the git CLI on the same canonical files in the same run:

- ``--version`` / ``--help``: interpreter start and imports;
- C0, the floor: ``import pygit2`` as ``reconciler.gitstore.tls`` imports it, with the same
  interpreter: what any command that reads git pays before its work under the project's fixed
  choices (a command whose config comes from its cache imports no pydantic, so pydantic is no
  longer part of it; ``tests/test_imports_budget.py`` holds that); each later figure reports it
  against its own baseline (``floor_ratio``);
- initial ``export`` into an empty repository vs ``git init && git add -A && git commit``;
- no-change ``plan ENV`` and ``export ENV`` vs ``git status --porcelain`` (after one plan has
  read the new tip, as git's first ``status`` after a commit refreshes its index);
- ``export`` after 1% of the files changed vs ``git add -A && git commit`` of the same change;
- full ``sync`` into an empty folder vs ``git checkout`` of the same tree into an empty work tree
  followed by ``sync`` (the command: both then have their files on disk);
- ``sync`` of a 1% change pushed to git vs ``git checkout`` of the same change + ``sync``.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.generate import change_flows

__all__ = ["CliBench", "CONFIG", "FLOOR"]

# The fixed floor of a working command: the interpreter with its site (the same one the console script
# runs) and pygit2 as the package imports it (reconciler/gitstore/tls.py, loaded by its path so that no
# other module of ours comes with it), which every command that reads git needs. pydantic is not in it:
# a command whose config comes from the config cache builds no model (reconciler/configview.py).
# C0 measures it as a whole process; C3-C8 report it against their baseline (``floor_ratio``).
_TLS = Path(__file__).resolve().parent.parent / "reconciler" / "gitstore" / "tls.py"
FLOOR = ("import importlib.util as u\n"
         f"s = u.spec_from_file_location('tls', {str(_TLS)!r}); m = u.module_from_spec(s); s.loader.exec_module(m)\n"
         "m.load()")

CONFIG = """[repository]
path = "state/flows.git"
[[environment]]
name = "acceptance"
driver = "directory"
path = "envs/acceptance"
drift = "adopt"
ignore = ["/exportedAt"]
[[environment]]
name = "production"
driver = "directory"
path = "envs/production"
drift = "restore"
prune = true
ignore = ["/exportedAt"]
"""


class Took(float):
    """A wall-clock time that also carries the CPU time (user + system) of the processes it waited for:
    on a shared machine the wall clock of both sides moves with the load, their CPU time much less.
    Sums (``a + b``) add both."""

    cpu: float = 0.0

    def __new__(cls, wall: float, cpu: float) -> "Took":
        t = super().__new__(cls, wall)
        t.cpu = cpu
        return t

    def __add__(self, other: object) -> "Took":  # type: ignore[override]
        if isinstance(other, (int, float)):
            return Took(float(self) + float(other), self.cpu + getattr(other, "cpu", 0.0))
        return NotImplemented

    __radd__ = __add__


class _Timer:
    """Wall-clock and children's CPU time of what runs inside (``subprocess.run`` waits for its child)."""

    def __enter__(self) -> "_Timer":
        self.start, self.ru = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        return self

    def __exit__(self, *exc: object) -> None:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.took = Took(time.perf_counter() - self.start,
                         ru.ru_utime - self.ru.ru_utime + ru.ru_stime - self.ru.ru_stime)


def _compile_package() -> None:
    """An installed package has its bytecode (pip compiles it); a checkout run under
    ``PYTHONDONTWRITEBYTECODE`` would compile every module again in every timed process (~0.2 s of
    CPU each), so the package the commands import is compiled once here, as tests/conftest.py does."""
    import compileall

    import reconciler

    compileall.compile_dir(Path(reconciler.__file__).parent, quiet=2)


class CliBench:
    """The whole-process scenarios on a folder of N generated flows (``source``) and their canonical
    copies laid out as in the branch (``canon``), both made by :class:`bench.__main__.Bench`."""

    def __init__(self, bench: Any):
        self.b = bench
        self.env = bench.env
        self.reconciler = [sys.executable, "-m", "reconciler"]
        exe = Path(sys.executable).with_name("reconciler")
        if exe.exists():
            self.reconciler = [str(exe)]  # the console script, as a user runs it
        _compile_package()

    def run(self, cwd: Path, *args: str, ok: tuple[int, ...] = (0,)) -> float:
        with _Timer() as t:
            proc = subprocess.run([*self.reconciler, *args], cwd=cwd, env=self.env, capture_output=True, text=True)
        assert proc.returncode in ok, f"reconciler {' '.join(args)} -> {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        return t.took

    def python(self, cwd: Path, code: str) -> float:
        with _Timer() as t:
            subprocess.run([sys.executable, "-c", code], cwd=cwd, env=self.env, check=True, capture_output=True)
        return t.took

    def git(self, cwd: Path, *args: str) -> float:
        with _Timer() as t:
            subprocess.run(["git", *args], cwd=cwd, env=self.env, check=True, capture_output=True)
        return t.took

    def sync_cmd(self) -> float:
        with _Timer() as t:
            subprocess.run(["sync"], check=True)
        return t.took

    def record(self, name: str, ours: list[float], base: list[float] | None, baseline: str, target: float | None,
               target_s: float | None = None) -> None:
        from bench.__main__ import summary

        o = summary(ours)
        o["cpu"] = summary([getattr(x, "cpu", float("nan")) for x in ours])
        entry: dict[str, Any] = {"ours": o, "target_ratio": target, "target_seconds": target_s, "whole_process": True}
        cpu = f" (CPU {o['cpu']['median']:.3f} s)"
        if base:
            b = summary(base)
            b["cpu"] = summary([getattr(x, "cpu", float("nan")) for x in base])
            entry.update(baseline=b, baseline_command=baseline, ratio=o["median"] / b["median"] if b["median"] else None,
                         cpu_ratio=o["cpu"]["median"] / b["cpu"]["median"] if b["cpu"]["median"] else None)
            print(f"  {name}: {o['median']:.3f} s{cpu} vs {b['median']:.3f} s (CPU {b['cpu']['median']:.3f} s) "
                  f"({baseline}) -> {entry['ratio']:.2f}x", flush=True)
        else:
            print(f"  {name}: {o['median']:.3f} s{cpu}", flush=True)
        self.b.results[name] = entry

    # -- the scenarios ---------------------------------------------------------------

    def all(self) -> None:
        b, runs = self.b, self.b.runs
        work = b.work / "cli"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        self.record("C1. reconciler --version", [self.run(work, "--version") for _ in range(max(5, runs))], None, "", None, 0.1)
        self.record("C2. reconciler --help", [self.run(work, "--help") for _ in range(max(5, runs))], None, "", None, 0.15)

        exports, inits = [], []
        for r in range(runs):
            root = self.fresh(work / f"export{r}")
            exports.append(self.run(root, "export", "acceptance", "-q"))
            tree = work / f"git{r}"
            shutil.copytree(b.canon, tree)
            inits.append(self.git(tree, "init", "-q") + self.git(tree, "config", "gc.auto", "0")
                         + self.git(tree, "add", "-A") + self.git(tree, "commit", "-q", "-m", "all"))
            if r < runs - 1:
                shutil.rmtree(root)
                shutil.rmtree(tree)
        self.record("C3. export into an empty repository", exports, inits, "git init && git add -A && git commit", 1.0)

        tree = work / f"git{runs - 1}"
        self.run(root, "plan", "acceptance", "-q")  # reads the tip the export wrote, once (see the docstring)
        status = [self.git(tree, "status", "--porcelain") for _ in range(max(5, runs))]
        plans = [self.run(root, "plan", "acceptance", "-q") for _ in range(max(5, runs))]
        self.record("C4. plan ENV, nothing changed", plans, status, "git status --porcelain", 10.0, 0.25)
        again = [self.run(root, "export", "acceptance", "-q") for _ in range(max(5, runs))]
        self.record("C5. export ENV, nothing changed", again, status, "git status --porcelain", 10.0, 0.25)

        ours, base = [], []
        for r in range(runs):
            changed = change_flows(root / "envs" / "acceptance", 0.01, seed=300 + r, tag=f"cli{r}")
            self.canonical_copy(changed, tree)
            ours.append(self.run(root, "export", "acceptance", "-q"))
            base.append(self.git(tree, "add", "-A") + self.git(tree, "commit", "-q", "-m", "1%"))
            self.run(root, "plan", "acceptance", "-q")  # as C4: the next process's view of the new tip
        self.record("C6. export after 1% changed", ours, base, "git add -A && git commit (same change)", 2.0)

        self.full_and_partial_sync(work, root, tree)
        self.the_floor(work)

    def the_floor(self, work: Path) -> None:
        """C0, measured last (once the writes of the set-up have settled, as every other figure), and what
        it is of each figure's baseline (``floor_ratio``): what any command that reads git through pygit2
        (a fixed choice) pays before its first line of work."""
        from bench.__main__ import summary

        floor = [self.python(work, FLOOR) for _ in range(max(7, self.b.runs))]
        self.record("C0. the floor: import pygit2", floor, None, "", None)
        median = summary(floor)["median"]
        for name, entry in self.b.results.items():
            if entry.get("whole_process") and entry.get("baseline", {}).get("median"):
                entry["floor_ratio"] = median / entry["baseline"]["median"]
                print(f"  {name}: the floor is {entry['floor_ratio']:.2f}x its baseline", flush=True)

    def full_and_partial_sync(self, work: Path, root: Path, tree: Path) -> None:
        runs = self.b.runs
        repo = root / "state" / "flows.git"
        target = root / "envs" / "production"
        ours, base = [], []
        # The folders a run replaces are moved aside, and deleted after the last figure: on ext4 without
        # a journal (this machine's disk), a file created in a block group where thousands of inodes
        # were freed in the last minute costs up to ~1 ms of kernel time (the inode allocator skips
        # them one by one: recently_deleted() in fs/ext4/ialloc.c). Deleting the old folder right
        # before our sync, as this figure did, made ours pay it every run (git's folder, new, only some).
        trash = work / "replaced"
        trash.mkdir(exist_ok=True)
        for r in range(runs):
            subprocess.run(["git", "branch", "-f", "env/production", "env/acceptance"], cwd=repo, env=self.env, check=True)
            subprocess.run(["git", "update-ref", "-d", "refs/reconciler/applied/production"], cwd=repo, env=self.env, check=True)
            target.rename(trash / f"production{r}")
            target.mkdir()
            shutil.rmtree(repo / "reconciler" / "index" / "production", ignore_errors=True)
            self.sync_cmd()
            ours.append(self.run(root, "sync", "production", "-q") + self.sync_cmd())
            checkout = work / f"checkout{r}"
            shutil.rmtree(checkout, ignore_errors=True)
            checkout.mkdir()
            self.sync_cmd()
            base.append(self.git(tree, f"--work-tree={checkout}", "checkout", "-f", "HEAD", "--", ".") + self.sync_cmd())
            checkout.rename(trash / f"checkout{r}")
        self.record("C7. sync into an empty folder (+ sync)", ours, base, "git checkout of the same tree + sync", 1.5)

        # 1% changed in git: a clone commits and pushes, then a sync applies it.
        clone = work / "clone"
        shutil.rmtree(clone, ignore_errors=True)
        subprocess.run(["git", "clone", "-q", "-b", "env/production", str(repo), str(clone)], env=self.env, check=True)
        files = sorted((clone / "flows").rglob("*.json"))
        step = max(1, len(files) // max(1, len(files) // 100))
        worktree = work / "checkout-1pct"
        shutil.rmtree(worktree, ignore_errors=True)
        subprocess.run(["git", "clone", "-q", str(repo), str(worktree), "-b", "env/production"], env=self.env, check=True)
        self.run(root, "plan", "production", "-q", ok=(0, 2))
        ours, base = [], []
        for r in range(runs):
            for p in files[r % step::step]:
                doc = json.loads(p.read_text())
                doc["bench_cli"] = r
                p.write_text(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            subprocess.run(["git", "commit", "-qam", f"1% ({r})"], cwd=clone, env=self.env, check=True)
            subprocess.run(["git", "push", "-q", "origin", "env/production"], cwd=clone, env=self.env, check=True)
            self.sync_cmd()
            ours.append(self.run(root, "sync", "production", "-q") + self.sync_cmd())
            subprocess.run(["git", "fetch", "-q", "origin"], cwd=worktree, env=self.env, check=True)
            self.sync_cmd()
            base.append(self.git(worktree, "checkout", "-q", "--detach", "origin/env/production") + self.sync_cmd())
            self.run(root, "plan", "production", "-q")
        self.record("C8. sync of a 1% change pushed to git (+ sync)", ours, base,
                    "git checkout of the same change + sync", 2.0)
        shutil.rmtree(trash)

    # -- helpers -------------------------------------------------------------------------

    def fresh(self, root: Path) -> Path:
        shutil.rmtree(root, ignore_errors=True)
        (root / "envs" / "production").mkdir(parents=True)
        shutil.copytree(self.b.source, root / "envs" / "acceptance")
        (root / "reconciler.toml").write_text(CONFIG)
        return root

    def canonical_copy(self, changed: list[Path], tree: Path) -> None:
        canonical_copy(changed, tree)


def canonical_copy(changed: list[Path], tree: Path) -> None:
    """Put the canonical form of the changed flow files where git's work tree holds them (git's side of
    a 1% change: only those files are written, as a person's edit would)."""
    from reconciler.canonical import Rules, canonical_bytes
    from reconciler.names import flow_path

    rules = Rules.of(["/exportedAt"])
    for p in changed:
        data = canonical_bytes(p.read_bytes(), rules)
        doc = json.loads(data)
        (tree / flow_path("flows", doc["name"], doc["version"])).write_bytes(data)
