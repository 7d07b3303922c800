"""A very large history: does any command's cost grow with the number of commits?

``python -m bench.deep_history [--commits N] [--flows F] [--runs R]``

Builds ``env/production`` with N commits (default 100,000) over F flows
(default 200; every commit edits one flow, every 50th also adds a merge of a
side branch) with ``git fast-import``, then times, as medians of R runs, each
against a baseline measured in the same run on the same repository:

- ``history production -n 10`` vs ``git log -n 10``;
- one flow's whole history vs ``git log -- <path>``;
- a no-change sync (read, plan) of the deep repository vs the same sync of a
  repository holding only the tip (one commit): the ratio should be ~1;
- an export of one folder edit on top of the deep history vs the same on the
  one-commit repository.

Results go to ``bench/results/latest-history-<N>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reconciler.config import load_config  # noqa: E402
from reconciler.engine import Engine  # noqa: E402
from reconciler.logsetup import setup_logging  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def flow_doc(i: int, rev: int) -> dict[str, Any]:
    return {"name": f"flow-{i:04d}", "version": "1.0", "rev": rev,
            "steps": [{"id": "s1", "type": "http-in", "config": {"url": f"/f{i}", "method": "POST"}},
                      {"id": "s2", "type": "transform", "config": {"expr": f"payload.total * {rev}"}}]}


def flow_path(i: int) -> str:
    return f"flows/flow-{i:04d}/1.0.json"


def write_history(repo: Path, branch: str, commits: int, flows: int, *, merge_every: int = 50) -> dict[int, int]:
    """Append ``commits`` commits to ``branch`` of the bare ``repo`` with ``git fast-import``.

    Commit k edits flow ``k % flows`` (the first ``flows`` commits create
    them); every ``merge_every``-th is a merge of a one-commit side branch
    that edited another flow. Returns each flow's last revision.
    """
    last: dict[int, int] = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    proc = subprocess.Popen(["git", "--git-dir", str(repo), "fast-import", "--quiet", "--done"],
                            stdin=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    out = proc.stdin

    def blob_cmd(i: int, rev: int) -> bytes:
        data = (json.dumps(flow_doc(i, rev), indent=2) + "\n").encode()
        last[i] = rev
        return b"M 100644 inline %s\ndata %d\n%s\n" % (flow_path(i).encode(), len(data), data)

    def commit(ref: str, k: int, body: bytes, parents: tuple[str, ...] = ()) -> None:
        msg = f"edit {k}\n".encode()
        out.write(b"commit %s\nmark :%d\ncommitter Ada User <ada@example.com> %d +0000\ndata %d\n%s"
                  % (ref.encode(), k, 1_700_000_000 + k, len(msg), msg))
        for i, p in enumerate(parents):
            out.write(b"%s %s\n" % (b"from" if i == 0 else b"merge", p.encode()))
        out.write(body + b"\n")

    ref, side = f"refs/heads/{branch}", "refs/heads/bench-side"
    mark = 0
    for k in range(1, commits + 1):
        mark += 1
        if merge_every and k % merge_every == 0 and k > flows:
            # a side branch forked from the tip edits another flow; the merge takes it
            commit(side, mark, blob_cmd((k * 7) % flows, k), (f":{mark - 1}",))
            mark += 1
            commit(ref, mark, blob_cmd(k % flows, k), (f":{mark - 2}", f":{mark - 1}"))
        else:
            commit(ref, mark, blob_cmd(k % flows, k), (f":{mark - 1}",) if mark > 1 else ())
    out.write(b"reset %s\nfrom 0000000000000000000000000000000000000000\n\ndone\n" % side.encode())
    out.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    return last


def _median(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], check=True, capture_output=True, text=True).stdout


def setup(work: Path, commits: int, flows: int) -> Path:
    """A workspace: config, folder, and the bare repository with the history."""
    (work / "envs" / "production").mkdir(parents=True)
    repo = work / "state" / "flows.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo)], check=True)
    write_history(repo, "env/production", commits, flows)
    (work / "reconciler.toml").write_text(
        '[repository]\npath = "state/flows.git"\n\n[[environment]]\nname = "production"\ndriver = "directory"\n'
        'path = "envs/production"\ndrift = "adopt"\n')
    return repo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.deep_history", description=__doc__.split("\n")[0])
    ap.add_argument("--commits", type=int, default=100_000)
    ap.add_argument("--flows", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    setup_logging("warning", "console")
    tmp = Path(tempfile.mkdtemp(prefix="bench-history-"))
    try:
        t = time.perf_counter()
        deep = setup(tmp / "deep", args.commits, args.flows)
        built = time.perf_counter() - t
        shallow = setup(tmp / "shallow", 1, 1)
        # the shallow workspace holds the deep tip as its only commit
        tip_tree = _git(deep, "rev-parse", "env/production^{tree}").strip()
        subprocess.run(["git", "--git-dir", str(deep), "push", "-q", str(shallow), "env/production:refs/heads/deep"], check=True)
        one = _git(shallow, "commit-tree", tip_tree, "-m", "the same tip, no history").strip()
        _git(shallow, "update-ref", "refs/heads/env/production", one)
        _git(shallow, "update-ref", "-d", "refs/heads/deep")
        _git(shallow, "gc", "-q", "--prune=now")
        engines = {name: Engine(load_config(tmp / name / "reconciler.toml"), create_repository=True) for name in ("deep", "shallow")}
        for e in engines.values():
            e.sync("production")  # import every flow; from here on syncs change nothing
        time.sleep(1.2)  # past the racy-timestamp window: files written just now are re-read
        for e in engines.values():
            e.sync("production")
        path = flow_path(7)
        r: dict[str, Any] = {"commits": int(_git(deep, "rev-list", "--count", "env/production")), "flows": args.flows,
                             "build_s": round(built, 2), "runs": args.runs}
        store = engines["deep"].store
        r["history_10_s"] = _median(lambda: store.history("env/production", limit=10), args.runs)
        r["git_log_10_s"] = _median(lambda: _git(deep, "log", "-n", "10", "--format=%H %s", "env/production"), args.runs)
        r["flow_history_s"] = _median(lambda: store.history("env/production", path), args.runs)
        r["git_log_path_s"] = _median(lambda: _git(deep, "log", "--format=%H %s", "env/production", "--", path), args.runs)
        r["flow_history_commits"] = len(store.history("env/production", path))
        for name, e in engines.items():
            r[f"nochange_{name}_s"] = _median(lambda e=e: e.sync("production"), args.runs)
        n = 0

        def edit_and_export(name: str) -> None:
            nonlocal n
            n += 1
            f = tmp / name / "envs" / "production" / "flow-0007@1.0.json"
            doc = json.loads(f.read_text())
            doc["rev"] = -n
            f.write_text(json.dumps(doc))
            engines[name].export("production")

        for name in engines:
            r[f"export_{name}_s"] = _median(lambda name=name: edit_and_export(name), args.runs)
        r["ratio_history_10"] = r["history_10_s"] / r["git_log_10_s"]
        r["ratio_flow_history"] = r["flow_history_s"] / r["git_log_path_s"]
        r["ratio_nochange_deep_vs_shallow"] = r["nochange_deep_s"] / r["nochange_shallow_s"]
        r["ratio_export_deep_vs_shallow"] = r["export_deep_s"] / r["export_shallow_s"]
        r = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"latest-history-{args.commits}.json").write_text(json.dumps(r, indent=2) + "\n")
        for k, v in r.items():
            print(f"{k:32} {v}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
