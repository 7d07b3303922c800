"""How the whole-process figures grow with N: ``python -m bench.scale [--flows 10000,100000] [--runs 1]``.

Issue 15 asks for N = 100,000 flows in one environment: export, no-change plan, 1% change and
RSS, "measured and reported with how each grows". For every N of ``--flows`` (in the same run,
so both sizes meet the same machine) this generates N flows (``bench.generate``: ~5 KB each, one
~1 MB flow in 2,500) and times, as fresh processes the way a user runs them:

- the initial ``reconciler export`` into an empty repository, beside ``git init && git add -A &&
  git commit`` of the same canonical files (git's own checkout of the branch we wrote);
- a no-change ``reconciler plan`` (after one plan has read the new tip), beside ``git status
  --porcelain`` on that work tree;
- ``reconciler export`` after 1% of the files changed, beside ``git add -A && git commit`` of the
  same canonical change.

Each of our processes is reaped with ``os.wait4`` so its own peak RSS (``ru_maxrss``) is
reported beside its time. Growth is each figure at the largest N divided by the same figure at the
smallest (10x more flows: 10x is linear). Results: a table on the terminal and
``bench/results/latest-scale.json``. It does not fit CI (100,000 flows are ~530 MB and a
repository of the same size); run it on demand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.__main__ import git_env
from bench.cli import CONFIG, _compile_package, canonical_copy
from bench.generate import change_flows, write_flows

RESULTS = Path(__file__).parent / "results"


class Scale:
    def __init__(self, work: Path, runs: int):
        self.work, self.runs, self.env = work, runs, git_env(work)
        exe = Path(sys.executable).with_name("reconciler")
        self.reconciler = [str(exe)] if exe.exists() else [sys.executable, "-m", "reconciler"]
        _compile_package()  # as bench.cli: the timed processes find their bytecode, as an installed package's

    def ours(self, cwd: Path, *args: str) -> tuple[float, float]:
        """(seconds, peak RSS in MB) of one ``reconciler`` process."""
        start = time.perf_counter()
        proc = subprocess.Popen([*self.reconciler, *args], cwd=cwd, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
        if proc.returncode != 0:
            raise SystemExit(f"reconciler {' '.join(args)} -> {proc.returncode}\n{out[-2000:]!r}\n{err[-2000:]!r}")
        return took, usage.ru_maxrss / 1024

    def git(self, cwd: Path, *args: str) -> float:
        start = time.perf_counter()
        subprocess.run(["git", *args], cwd=cwd, env=self.env, check=True, capture_output=True)
        return time.perf_counter() - start

    def checkout(self, repo: Path, tree: Path) -> None:
        """The files of ``env/acceptance`` into ``tree`` (``git archive``: leaves the repository's own files alone)."""
        archive = subprocess.run(["git", f"--git-dir={repo}", "archive", "env/acceptance"], env=self.env,
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)

    def one(self, n: int) -> dict[str, Any]:
        root = self.work / f"n{n}"
        (root / "envs" / "production").mkdir(parents=True)
        start = time.perf_counter()
        size = write_flows(root / "envs" / "acceptance", n)
        print(f"N = {n:,}: {size / 1e6:.0f} MB generated in {time.perf_counter() - start:.1f} s", flush=True)
        (root / "reconciler.toml").write_text(CONFIG)
        repo = root / "state" / "flows.git"
        out: dict[str, Any] = {"flows": n, "bytes": size}

        # initial export; git's baseline on the canonical files our export wrote (its checkout)
        t, rss = self.ours(root, "export", "acceptance", "-q")
        tree = root / "git"
        tree.mkdir()
        self.checkout(repo, tree)
        base = (self.git(tree, "init", "-q") + self.git(tree, "config", "gc.auto", "0")
                + self.git(tree, "add", "-A") + self.git(tree, "commit", "-q", "-m", "all"))
        out["export"] = {"ours": t, "rss_mb": rss, "git": base, "ratio": t / base}
        print(f"  initial export {t:.2f} s (RSS {rss:.0f} MB) vs git init+add+commit {base:.2f} s -> {t / base:.2f}x", flush=True)

        self.ours(root, "plan", "acceptance", "-q")  # reads the tip the export wrote, once
        plans = [self.ours(root, "plan", "acceptance", "-q") for _ in range(max(3, self.runs))]
        status = [self.git(tree, "status", "--porcelain") for _ in range(max(3, self.runs))]
        t, rss = statistics.median(p[0] for p in plans), max(p[1] for p in plans)
        base = statistics.median(status)
        out["plan_no_change"] = {"ours": t, "rss_mb": rss, "git": base, "ratio": t / base}
        print(f"  no-change plan {t:.2f} s (RSS {rss:.0f} MB) vs git status {base:.3f} s -> {t / base:.1f}x", flush=True)

        ours, rsses, bases = [], [], []
        for r in range(self.runs):
            changed = change_flows(root / "envs" / "acceptance", 0.01, seed=500 + r, tag=f"scale{r}")
            t, rss = self.ours(root, "export", "acceptance", "-q")
            canonical_copy(changed, tree)  # git's side: the same change, only those files written
            bases.append(self.git(tree, "add", "-A") + self.git(tree, "commit", "-q", "-m", f"1% {r}"))
            ours.append(t)
            rsses.append(rss)
            self.ours(root, "plan", "acceptance", "-q")
        t, base = statistics.median(ours), statistics.median(bases)
        out["export_1pct"] = {"ours": t, "rss_mb": max(rsses), "git": base, "ratio": t / base}
        print(f"  1% export {t:.2f} s (RSS {max(rsses):.0f} MB) vs git add -A && commit {base:.2f} s -> {t / base:.2f}x",
              flush=True)
        shutil.rmtree(root)
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    ap.add_argument("--flows", default="10000,100000", help="comma-separated N (default 10000,100000)")
    ap.add_argument("--runs", type=int, default=1, help="runs of the 1%% export (median; default 1)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    sizes = sorted(int(x) for x in args.flows.split(","))
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        s = Scale(work, args.runs)
        rows = [s.one(n) for n in sizes]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": platform.python_version(),
        "cpus": os.cpu_count(), "load": os.getloadavg(), "sizes": rows,
    }
    if len(rows) > 1:
        lo, hi = rows[0], rows[-1]
        result["growth"] = {k: {"time": hi[k]["ours"] / lo[k]["ours"], "git": hi[k]["git"] / lo[k]["git"],
                                "rss": hi[k]["rss_mb"] / lo[k]["rss_mb"]}
                            for k in ("export", "plan_no_change", "export_1pct")}
        print(f"growth from N = {lo['flows']:,} to {hi['flows']:,} ({hi['flows'] / lo['flows']:.0f}x the flows):")
        for k, g in result["growth"].items():
            print(f"  {k}: time {g['time']:.1f}x (git {g['git']:.1f}x), RSS {g['rss']:.1f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest-scale.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
