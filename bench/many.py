"""``python -m bench --envs E --flows N``: one service holding E environments of N flows each.

Every environment is a directory environment with its own folder (hard links to one generated
set, so 100 x 1,000 flows cost the disk 1,000 files) and its own branch (all pointing at one
export, with their applied markers). A child process plays the service: one warm engine, as the
workers hold it, runs a drift check (``sync``, nothing to change) of every environment in turn;
the first cycle reads everything, the next ones are what the service's periodic checks cost.
Reported: the cold cycle, the warm cycle (median of ``--runs``) and the child's peak RSS.
Targets (issue 15): a full cycle of 100 x 1,000 in <= 2 s, RSS <= 1 GB.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.generate import write_flows

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import json, statistics, sys, time
from reconciler.config import load_config
from reconciler.engine import Engine
from reconciler.logsetup import setup_logging
setup_logging("warning")
config = load_config(sys.argv[1])
runs = int(sys.argv[2])
engine = Engine(config, keep_reads=False)  # the service's own memory, nothing from an earlier process
def cycle():
    start = time.perf_counter()
    for env in config.environments:
        out = engine.sync(env.name)
        assert not out.plan.changes and not out.failed, (env.name, out.plan.counts())
    return time.perf_counter() - start
cold = cycle()
warm = [cycle() for _ in range(runs)]
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(json.dumps({"cold": cold, "warm": warm, "rss_mb": rss}))
"""


def main(envs: int, flows: int, runs: int, out: Path) -> int:
    work = Path(tempfile.mkdtemp(prefix=f"bench-many-{envs}x{flows}-"))
    try:
        started = time.perf_counter()
        source = work / "source"
        write_flows(source, flows)
        lines = ['[repository]', 'path = "state/flows.git"', ""]
        for i in range(envs):
            name = f"env{i:03d}"
            folder = work / "envs" / name
            folder.mkdir(parents=True)
            for p in source.iterdir():
                os.link(p, folder / p.name)
            lines += ["[[environment]]", f'name = "{name}"', 'driver = "directory"', f'path = "envs/{name}"',
                      'drift = "report"', 'ignore = ["/exportedAt"]', "interval = 3600", ""]
        (work / "reconciler.toml").write_text("\n".join(lines))
        first = "env000"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "reconciler", "export", first, "-q"], cwd=work, env=env, check=True,
                       capture_output=True)
        repo = work / "state" / "flows.git"
        tip = subprocess.run(["git", "rev-parse", f"env/{first}"], cwd=repo, check=True, capture_output=True,
                             text=True).stdout.strip()
        refs = "".join(f"update refs/heads/env/env{i:03d} {tip}\nupdate refs/reconciler/applied/env{i:03d} {tip}\n"
                       for i in range(envs))
        subprocess.run(["git", "update-ref", "--stdin"], cwd=repo, input=refs, text=True, check=True)
        print(f"{envs} environments x {flows} flows ready in {time.perf_counter() - started:.1f} s", flush=True)
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(work / "reconciler.toml"), str(runs)], cwd=work,
                              env=env, check=True, capture_output=True, text=True)
        got: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
        from bench.__main__ import machine, summary

        result = {"envs": envs, "flows": flows, "cold_cycle_s": got["cold"], "warm_cycle": summary(got["warm"]),
                  "rss_mb": got["rss_mb"], "target": {"warm_cycle_s": 2.0, "rss_mb": 1024}, "machine": machine(),
                  "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        w = result["warm_cycle"]
        print(f"drift check of all {envs} environments: cold {got['cold']:.2f} s, warm {w['median']:.2f} s "
              f"(min {w['min']:.2f}, max {w['max']:.2f}, {w['runs']} runs); peak RSS {got['rss_mb']:.0f} MB")
        out.mkdir(parents=True, exist_ok=True)
        (out / f"latest-envs-{envs}x{flows}.json").write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0
