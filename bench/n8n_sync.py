"""Time to sync N workflows from git into an empty n8n with ``reconciler sync``, beside n8n's own import.

``python -m bench.n8n_sync [--workflows N] [--runs 3] [--ways reconciler-sync,cli-running,...] [--json FILE]``

Each run starts a fresh, empty n8n (tests/n8nkit.py: owner, API key, and the
credential the workflows name), puts the same N generated workflows
(bench/n8n_workflows.py) into it one way, checks that all N are listed with the
right names, and stops it. Ways:

- ``reconciler-sync``: ``reconciler sync production``, the CLI as a user runs it,
  with the production mapping of manifests/examples/n8n (only its URLs changed)
  and env/production of a bare repository holding the N workflows. It lists the
  empty instance, lists the credentials, then for each workflow lists its name
  (nothing made meanwhile?) and POSTs it, one after the other; reads each back
  (the read-after-write proof, 4 at a time); moves the applied marker;
- ``cli-running``: ``n8n import:workflow --separate --input=DIR`` while the
  instance runs (the CLI opens the same sqlite database);
- ``cli-stopped``: the same with the instance stopped (as n8n's docs suggest);
- ``api-sequential``: bare ``POST /api/v1/workflows`` one after the other (what
  any sync through the API costs at least).

Times are wall clock of the whole command (process start included: n8n's CLI
loads all of n8n, the reconciler's is a Python process). Figures are medians of
``--runs`` (min-max); the ways take turns, so a change in the machine's load
touches them all. Only one n8n runs at a time.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.n8n_import import api_sequential, bench_args, bench_command, cli_import, fresh, write_files  # noqa: E402
from bench.n8n_workflows import CREDENTIAL_TYPE, workflows  # noqa: E402
from reconciler.names import flow_path  # noqa: E402
from tests.conftest import git_env  # noqa: E402
from tests.n8nkit import N8n  # noqa: E402

EXAMPLE = ROOT / "manifests/examples/n8n/reconciler.toml"
WAYS = ("reconciler-sync", "cli-running", "cli-stopped", "api-sequential")


def git_repo(root: Path, wfs: list[dict[str, Any]]) -> Path:
    """A bare repository whose env/production holds the workflows as flows/<name>/1.json (made once, copied per run)."""
    env = git_env(root)
    bare, work = root / "flows.git", root / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True, env=env)
    subprocess.run(["git", "init", "-q", "-b", "env/production", str(work)], check=True, env=env)
    for wf in wfs:
        path = work / flow_path("flows", wf["name"], "1")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(wf, indent=2, ensure_ascii=False))
    for args in (["add", "-A"], ["commit", "-q", "-m", f"{len(wfs)} workflows"],
                 ["push", "-q", str(bare), "env/production"]):
        subprocess.run(["git", *args], cwd=work, check=True, env=env, capture_output=True)
    return bare


def reconciler_sync(n8n: N8n, ws: Path, repo: Path) -> None:
    shutil.copytree(repo, ws / "state/flows.git")
    config = ws / "reconciler.toml"
    config.write_text(EXAMPLE.read_text().replace("127.0.0.1:5679", f"127.0.0.1:{n8n.port}"))
    env = dict(git_env(ws), N8N_PRODUCTION_API_KEY=n8n.api_key, N8N_PRODUCTION_SESSION=n8n.session())
    proc = subprocess.run([sys.executable, "-m", "reconciler", "--config", str(config), "sync", "production", "-q"],
                          cwd=ws, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"reconciler sync failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def one_run(way: str, wfs: list[dict[str, Any]], repo: Path, command: list[str]) -> float:
    with tempfile.TemporaryDirectory(prefix="n8n-sync-bench-") as tmp:
        root = Path(tmp)
        folder = write_files(root / "import", wfs)
        (root / "ws").mkdir()
        n8n = fresh(root / "n8n", command, {})
        try:
            answer = n8n.api("POST", "/credentials", {"name": "Orders API token", "type": CREDENTIAL_TYPE,
                                                        "data": {"name": "X-Token", "value": "bench"}})
            assert answer.ok, answer
            if way == "cli-stopped":
                n8n.stop()
            t0 = time.perf_counter()
            if way == "reconciler-sync":
                reconciler_sync(n8n, root / "ws", repo)
            elif way == "api-sequential":
                api_sequential(n8n, wfs, folder, 1)
            else:
                cli_import(n8n, folder)
            took = time.perf_counter() - t0
            if way == "cli-stopped":
                n8n.start()
            names = sorted(w["name"] for w in n8n.workflows())
            if names != sorted(wf["name"] for wf in wfs):
                raise RuntimeError(f"{way}: {len(names)} workflows there, not the {len(wfs)} sent")
            return took
        finally:
            n8n.stop()


def main(argv: list[str] | None = None) -> int:
    args = bench_args(__doc__, WAYS, argv)
    command = bench_command()
    if command is None:
        return 2
    wfs = workflows(args.workflows)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="n8n-sync-repo-") as tmp:
        repo = git_repo(Path(tmp), wfs)
        for run in range(args.runs):  # round-robin: every way once, then again
            for way in args.ways.split(","):
                took = one_run(way, wfs, repo, command)
                results.setdefault(way, []).append(took)
                print(f"{way} run {run + 1}: {took:.2f} s", flush=True)
    print(f"\n{args.workflows} workflows into an empty n8n, medians of {args.runs} (min-max), seconds:")
    for way, times in results.items():
        median = statistics.median(times)
        rate = args.workflows / median
        print(f"  {way:16} {median:7.2f}   ({min(times):.2f}-{max(times):.2f})   {rate:6.1f} workflows/s")
    if args.json:
        args.json.write_text(json.dumps({"workflows": args.workflows, "runs": results,
                                         "cpus": os.cpu_count()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
