"""``python -m bench.sidecars --flows N``: what the split form (code as sidecar files) costs, beside the
single-file form, on the same N Node-RED flows (a folder environment of exported tabs, ~6 KB each:
three function nodes of 15-40 lines, a template, a comment, the tab's description; each flow gets
7 sidecar files).

Scenarios, each the median of ``--runs`` (min-max beside it), the two forms in alternating runs:

1. **export** of the N flows into an empty repository (``reconciler export``);
2. **no-change plan, cold**: ``reconciler plan`` right after, a new process: every flow read from
   git (JSON and sidecars joined), rendered and compared with the folder;
3. **no-change plan, warm**: a plan where nothing changed, in a process that planned before (the
   service's steady state; median of 5 in each run).

Export and cold plan are whole processes, as a user runs them (``python -m reconciler`` with this
checkout's code), interpreter start included; their CPU time (user + system) is recorded beside the
wall-clock time, as it is what other jobs on a shared machine disturb least.

Results: a table, and JSON in ``bench/results/latest-sidecars-<N>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
FORMS = ("single-file", "split")
SCENARIOS = {"export": "export into an empty repository (process)",
             "export_cpu": "  the same, CPU time (user + system)",
             "plan_cold": "no-change plan, cold (`reconciler plan`)",
             "plan_cold_cpu": "  the same, CPU time (user + system)",
             "plan_warm": "no-change plan, warm (service)"}

CONFIG = """[repository]
path = "state/flows.git"
[[environment]]
name = "acceptance"
driver = "directory"
path = "envs/acceptance"
drift = "adopt"
interval = 3600
form = "{form}"
"""


def _code(rnd: random.Random, lines: int) -> str:
    body = [f"const v{k} = msg.payload.items[{k}] * {rnd.randint(1, 99)} + {rnd.random():.6f};" for k in range(lines - 2)]
    return "\n".join(["// computes the totals of one order", *body, "return msg;"])


def make_flow(i: int, rnd: random.Random) -> dict[str, Any]:
    tab = f"tab{i:06d}"
    nodes: list[dict[str, Any]] = []
    for j in range(3):
        nodes.append({"id": f"{tab}-fn{j}", "type": "function", "z": tab, "name": f"step {j}", "outputs": 1, "timeout": 0,
                      "noerr": 0, "func": _code(rnd, rnd.randint(15, 40)), "initialize": "" if j else "let n = 0;",
                      "finalize": "", "libs": [], "x": 200 + 180 * j, "y": 80, "wires": [[f"{tab}-fn{j + 1}" if j < 2 else f"{tab}-tpl"]]})
    nodes.append({"id": f"{tab}-tpl", "type": "template", "z": tab, "name": "page", "field": "payload", "fieldType": "msg",
                  "format": "html", "syntax": "mustache", "template": "<h1>{{payload.total}}</h1>\n<p>order {{payload.id}}</p>",
                  "output": "str", "x": 760, "y": 80, "wires": [[f"{tab}-out"]]})
    nodes.append({"id": f"{tab}-out", "type": "debug", "z": tab, "name": "", "active": False, "x": 920, "y": 80, "wires": []})
    nodes.append({"id": f"{tab}-note", "type": "comment", "z": tab, "name": "how it works", "x": 200, "y": 20, "wires": [],
                  "info": "The order's lines are totalled,\nthen rendered.\n"})
    return {"name": f"flow {i:06d}", "version": "1", "tab": {"id": tab, "type": "tab", "disabled": False,
            "info": f"Flow {i}: orders of region {rnd.randint(1, 40)}"}, "nodes": nodes}


def write_flows(folder: Path, n: int, seed: int = 7) -> int:
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(n):
        data = json.dumps(make_flow(i, rnd), ensure_ascii=False).encode()
        (folder / f"flow-{i:06d}.json").write_bytes(data)
        total += len(data)
    return total


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cli(root: Path, *args: str, expect: int = 0) -> tuple[float, float]:
    """One ``reconciler`` command as a user runs it: a new process, this checkout's code; its wall-clock
    and CPU seconds (user + system: what a machine shared with other jobs disturbs least)."""
    env = dict(os.environ, RECONCILER_CONFIG=str(root / "reconciler.toml"),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    cpu, start = _cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "reconciler", "--no-progress", "--log-level", "warning", *args],
                          cwd=root, env=env, capture_output=True, text=True)
    took, used = time.perf_counter() - start, _cpu() - cpu
    if proc.returncode != expect:
        raise SystemExit(f"reconciler {' '.join(args)} exited {proc.returncode} (expected {expect}):\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return took, used


def run(n: int, runs: int, work: Path) -> dict[str, Any]:
    from reconciler.config import load_config
    from reconciler.engine import Engine

    source = work / "source"
    size = write_flows(source, n)
    print(f"generated {n} flows ({size / 1e6:.1f} MB)", flush=True)
    times: dict[str, dict[str, list[float]]] = {f: {k: [] for k in SCENARIOS} for f in FORMS}
    files: dict[str, int] = {}
    for r in range(runs):
        for form in (FORMS if r % 2 == 0 else FORMS[::-1]):  # alternate, so drift of the machine hits both
            root = work / f"{form}-{r}"
            shutil.rmtree(root, ignore_errors=True)
            (root / "envs").mkdir(parents=True)
            shutil.copytree(source, root / "envs" / "acceptance")
            (root / "reconciler.toml").write_text(CONFIG.format(form=form))
            for k, args in (("export", ("export", "acceptance")), ("plan_cold", ("plan", "acceptance"))):
                wall, cpu = _cli(root, *args)  # plan: exit 0, nothing pending
                times[form][k].append(wall)
                times[form][k + "_cpu"].append(cpu)
            engine = Engine(load_config(root / "reconciler.toml"))
            files[form] = _count(engine.store, engine.store.tip("env/acceptance"))
            first = engine.sync("acceptance", dry_run=True)
            if first.plan.changes or first.problems:
                raise SystemExit(f"{form}: the plan after export is not empty: {first.plan.counts()} {first.problems[:3]}")
            warm = [_timed(lambda: engine.sync("acceptance", dry_run=True)) for _ in range(5)]
            times[form]["plan_warm"].append(statistics.median(warm))
            engine.close()
            shutil.rmtree(root)
            t = times[form]
            print(f"  run {r + 1} {form:<11}: export {t['export'][-1]:6.2f} s (cpu {t['export_cpu'][-1]:6.2f} s), "
                  f"plan cold {t['plan_cold'][-1]:6.2f} s (cpu {t['plan_cold_cpu'][-1]:6.2f} s), "
                  f"plan warm {t['plan_warm'][-1] * 1000:6.0f} ms", flush=True)
    results: dict[str, Any] = {form: {k: _summary(v) for k, v in t.items()} | {"files_in_git": files[form]}
                               for form, t in times.items()}
    results["ratio"] = {k: results["split"][k]["median"] / results["single-file"][k]["median"] for k in SCENARIOS}
    return {"flows": n, "bytes": size, "runs": runs, "results": results}


def _count(store, tip: str) -> int:
    out = subprocess.run(["git", "ls-tree", "-r", "--name-only", tip], cwd=store.path, capture_output=True, text=True,
                         check=True)
    return len(out.stdout.splitlines())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sidecars", description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=1000, help="number of flows N (default 1000)")
    ap.add_argument("--runs", type=int, default=3, help="runs per form (median reported; default 3)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON results")
    args = ap.parse_args(argv)
    from reconciler.logsetup import setup_logging

    setup_logging("warning")
    work = Path(tempfile.mkdtemp(prefix=f"bench-sidecars-{args.flows}-"))
    try:
        doc = run(args.flows, args.runs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    from bench.__main__ import machine

    doc["machine"] = machine()
    r = doc["results"]
    print(f"\nsplit form vs single-file form, N = {args.flows} ({doc['bytes'] / 1e6:.0f} MB; files in git: "
          f"{r['single-file']['files_in_git']} vs {r['split']['files_in_git']})")
    for k, label in SCENARIOS.items():
        a, b = r["single-file"][k], r["split"][k]
        print(f"  {label:<44} single-file {a['median']:7.3f} s ({a['min']:.3f}-{a['max']:.3f})   "
              f"split {b['median']:7.3f} s ({b['min']:.3f}-{b['max']:.3f})   {r['ratio'][k]:.2f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"latest-sidecars-{args.flows}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
