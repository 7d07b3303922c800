"""Time to put N workflows (default 250) into an empty n8n: its public API against its own CLI.

``python -m bench.n8n_import [--workflows N] [--runs 3] [--concurrency 4] [--json FILE]``

Each run starts a fresh, empty n8n (tests/n8nkit.py: owner, API key, nothing
else), puts the same N generated workflows (bench/n8n_workflows.py) into it one
way, checks that all N are listed, and stops it. Ways:

- ``api-sequential``: ``POST /api/v1/workflows`` one after the other;
- ``api-concurrent``: the same with ``--concurrency`` requests in flight (n8n's default
  sqlite, one connection, refuses some: they are counted, then sent one by one);
- ``api-concurrent-pool`` / ``api-sequential-pool``: the same on an n8n with
  ``DB_SQLITE_POOL_SIZE=4`` (WAL, four connections);
- ``cli-running``: ``n8n import:workflow --separate --input=DIR`` while the
  instance runs (the CLI opens the same sqlite database);
- ``cli-stopped``: the same with the instance stopped (as n8n's docs suggest).

Also timed on the first way's instance, for the driver's export: listing all N
(``limit=250`` pages) and one ``GET /workflows/{id}`` per workflow. Figures are
medians of ``--runs`` runs, with min and max; the ways take turns, so a change
in the machine's load touches them all. Only one n8n runs at a time.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.n8n_workflows import workflows  # noqa: E402
from tests.n8nkit import N8n, n8n_command  # noqa: E402


def fresh(tmp: Path, command: list[str], env: dict[str, str]) -> N8n:
    return N8n(command, tmp, env=env).start().setup()


def api_sequential(n8n: N8n, wfs: list[dict[str, Any]], _: Path, __: int) -> None:
    for wf in wfs:
        n8n.create(wf)


def api_concurrent(n8n: N8n, wfs: list[dict[str, Any]], _: Path, concurrency: int) -> dict[str, float]:
    """Counts the POSTs n8n refused and sends those again one by one.

    On n8n's default sqlite (one connection, no WAL) concurrent writes share one
    connection's transactions: some are answered 400 ("SQLITE_ERROR: cannot start a
    transaction within a transaction", "no such savepoint", "FOREIGN KEY constraint
    failed"), and a 200 may not have landed (counted by one_run as ``lost``).
    """
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        answers = list(pool.map(lambda wf: n8n.api("POST", "/workflows", wf), wfs))
    refused = [wf for wf, a in zip(wfs, answers) if not a.ok]
    failed_again = sum(not n8n.api("POST", "/workflows", wf).ok for wf in refused)
    return {"refused": len(refused), "failed-again": failed_again}


def write_files(folder: Path, wfs: list[dict[str, Any]]) -> Path:
    folder.mkdir()
    for i, wf in enumerate(wfs):  # no id: n8n gives each a new one, as the API does
        (folder / f"{i:05d}.json").write_text(json.dumps(wf))
    return folder


def cli_import(n8n: N8n, folder: Path) -> None:
    proc = n8n.cli("import:workflow", "--separate", f"--input={folder}")
    if proc.returncode != 0:
        raise RuntimeError(f"import:workflow failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


COUNTS = {
    "refused": "POSTs answered 400 SQLITE_ERROR, then sent again one by one",
    "failed-again": "of those, refused again",
    "lost": "workflows not there at the end although every POST was answered or resent",
    "duplicated": "workflows there twice: a refused POST had landed",
}
POOL = {"DB_SQLITE_POOL_SIZE": "4"}  # WAL and 4 connections instead of the default single one
WAYS: dict[str, tuple[Callable[..., dict[str, float] | None], dict[str, str]]] = {
    "api-sequential": (api_sequential, {}),
    "api-concurrent": (api_concurrent, {}),
    "api-concurrent-pool": (api_concurrent, POOL),
    "api-sequential-pool": (api_sequential, POOL),
    "cli-running": (lambda n8n, wfs, folder, _: cli_import(n8n, folder), {}),
    "cli-stopped": (lambda n8n, wfs, folder, _: cli_import(n8n, folder), {}),
}


def one_run(way: str, wfs: list[dict[str, Any]], command: list[str], concurrency: int,
            reads: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="n8n-bench-") as tmp:
        root = Path(tmp)
        folder = write_files(root / "import", wfs)
        write, env = WAYS[way]
        n8n = fresh(root / "n8n", command, env)
        try:
            if way == "cli-stopped":
                n8n.stop()
            t0 = time.perf_counter()
            counts = write(n8n, wfs, folder, concurrency)
            took = {"write": time.perf_counter() - t0, **(counts or {})}
            if way == "cli-stopped":
                n8n.start()
            listed = n8n.workflows()
            names = [w["name"] for w in listed]
            sent = {wf["name"] for wf in wfs}
            took["lost"] = len(sent - set(names))  # answered 200 (or sent again) yet not there
            took["duplicated"] = len(names) - len(set(names))  # a refused POST that had landed after all
            if reads:
                t0 = time.perf_counter()
                n8n.workflows()
                took["list-all"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                for wf in listed:
                    n8n.get(wf["id"])
                took["get-each"] = time.perf_counter() - t0
            return took
        finally:
            n8n.stop()


def bench_args(doc: str, ways: Iterable[str], argv: list[str] | None, *,
               concurrency: bool = False) -> argparse.Namespace:
    """The options of an n8n benchmark (this one's, and bench/n8n_sync.py's)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=250)
    parser.add_argument("--runs", type=int, default=3)
    if concurrency:
        parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--ways", default=",".join(ways), help="comma-separated subset of " + ", ".join(ways))
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    return parser.parse_args(argv)


def bench_command() -> list[str] | None:
    """n8n's command line (None, said on stderr, without an install). From here on SIGTERM (and SIGINT,
    which a background job ignores) unwind like ^C, so the `finally` blocks stop the n8n started."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.default_int_handler)
    command = n8n_command()
    if command is None:
        print("no n8n: eval \"$(bash .ci/install-n8n)\" first", file=sys.stderr)
    return command


def main(argv: list[str] | None = None) -> int:
    args = bench_args(__doc__, WAYS, argv, concurrency=True)
    command = bench_command()
    if command is None:
        return 2
    wfs = workflows(args.workflows)
    results: dict[str, list[dict[str, float]]] = {}
    # Round-robin (every way once, then again...), so a shift in the machine's load
    # falls on every way alike instead of on whichever ran then.
    for run in range(args.runs):
        for way in args.ways.split(","):
            took = one_run(way, wfs, command, args.concurrency, reads=way == "api-sequential")
            results.setdefault(way, []).append(took)
            print(f"{way} run {run + 1}: " + ", ".join(f"{k} {v}" if k in COUNTS else f"{k} {v:.2f} s"
                                                       for k, v in took.items()), flush=True)
    print(f"\n{args.workflows} workflows into an empty n8n, medians of {args.runs} (min-max), seconds:")
    for way, runs in results.items():
        for key in dict.fromkeys(k for r in runs for k in r):
            values = [r.get(key, 0) for r in runs]
            label = f"{way} ({args.concurrency} in flight)" if way.startswith("api-concurrent") else way
            if key in COUNTS:
                if any(values):
                    print(f"  {label:36} {key:12} {values} ({COUNTS[key]})")
                continue
            print(f"  {label:36} {key:12} {statistics.median(values):7.2f}   ({min(values):.2f}-{max(values):.2f})"
                  f"   {args.workflows / statistics.median(values):6.1f} workflows/s")
    if args.json:
        args.json.write_text(json.dumps({"workflows": args.workflows, "concurrency": args.concurrency,
                                         "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
