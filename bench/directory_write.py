"""What the directory driver's guarded write costs: swap, move-aside, and a plain replace.

``python -m bench.directory_write [--flows N] [--runs R]``

N flow files (default 2,000) are updated in one batch, as a sync that changes
every flow does, three ways, each a median of R runs (default 5) on the same
folder in the same run:

- **swap**: the driver where ``renameat2(RENAME_EXCHANGE)`` works (the new
  version is swapped in, what came out is checked and dropped);
- **move-aside**: the driver where it does not (old file moved aside, checked,
  new one hard-linked in);
- **baseline**: what a naive writer does with the same temporary files and one
  sync: ``os.replace`` each over the flow's file, no check (it would lose an
  edit saved meanwhile).

Results go to ``bench/results/latest-directory-write-<N>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reconciler.canonical import Rules, canonical_bytes  # noqa: E402
from reconciler.drivers import Change  # noqa: E402
from reconciler.drivers.directory import DirectoryDriver, FileSystem  # noqa: E402


class _NoExchange(FileSystem):
    """A file system without renameat2(RENAME_EXCHANGE) (EINVAL, as on NFS)."""

    def exchange(self, a: str | Path, b: str | Path) -> None:
        raise OSError(22, "Invalid argument")


def _doc(i: int, rev: int) -> bytes:
    doc = {"name": f"flow-{i:05d}", "version": "1", "rev": rev,
           "steps": [{"id": f"s{j}", "type": "http", "config": {"url": f"/p/{i}/{j}", "retries": rev}} for j in range(8)]}
    return canonical_bytes(json.dumps(doc).encode(), Rules())


def _fill(folder: Path, n: int, rev: int) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"flow-{i:05d}@1.json").write_bytes(_doc(i, rev))


def _driver_update(folder: Path, n: int, swap: bool) -> float:
    d = DirectoryDriver(folder, fs=FileSystem() if swap else _NoExchange())
    live = d.export()
    changes = [Change(k, _doc(int(k.name[5:]), 2), f.oid) for k, f in live.flows.items()]
    assert len(changes) == n
    t = time.perf_counter()
    failed = d.apply(changes)
    took = time.perf_counter() - t
    assert failed == {}, list(failed.values())[:3]
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"flow-{i:05d}@1.json" for i in range(n))
    return took


def _baseline(folder: Path, n: int) -> float:
    fs = FileSystem()
    t = time.perf_counter()
    temps = []
    for i in range(n):
        tmp = folder / f".tmp-{i}"
        with open(tmp, "wb") as f:
            f.write(_doc(i, 2))
        temps.append((tmp, folder / f"flow-{i:05d}@1.json"))
    fs.syncfs(folder)
    for tmp, path in temps:
        os.replace(tmp, path)
    fs.fsync_dir(folder)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-dirwrite-"))
    times: dict[str, list[float]] = {"swap": [], "move-aside": [], "baseline": []}
    try:
        folder = work / "env"
        for _ in range(args.runs):  # interleaved, so drift in machine load hits all three alike
            for way in times:
                _fill(folder, args.flows, 1)
                if way == "baseline":
                    times[way].append(_baseline(folder, args.flows))
                else:
                    times[way].append(_driver_update(folder, args.flows, swap=way == "swap"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    result: dict[str, Any] = {
        "flows": args.flows,
        "runs": args.runs,
        "median_seconds": med,
        "swap_vs_baseline": med["swap"] / med["baseline"],
        "move_aside_vs_baseline": med["move-aside"] / med["baseline"],
        "swap_vs_move_aside": med["swap"] / med["move-aside"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"latest-directory-write-{args.flows}.json").write_text(json.dumps(result, indent=2) + "\n")
    for k, v in med.items():
        print(f"{k:>11}: {v * 1000:8.1f} ms for {args.flows} files (median of {args.runs})")
    print(f"swap / baseline {result['swap_vs_baseline']:.2f}x, move-aside / baseline "
          f"{result['move_aside_vs_baseline']:.2f}x, swap / move-aside {result['swap_vs_move_aside']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
