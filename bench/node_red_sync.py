"""Time to sync N small tabs (default 1,000) into an empty Node-RED.

``python -m bench.node_red_sync [--tabs N] [--runs R] [--node-red nr4|nr5 | --url URL --token-env VAR]``

Writes N small Node-RED flows (inject -> function -> change -> debug; every
tenth also uses one shared subflow) into a directory environment, exports it
to ``env/acceptance``, makes ``env/production`` from it, and times one
``sync production`` into an empty Node-RED: export (GET /flows), plan, one
deploy (POST /flows) watched on /comms, read-after-write (proved by the
deploy's answer: Node-RED's rev is the SHA-256 of what it holds), the health
gate (until Node-RED reports the deploy started, then the settle window, here
ended at a barrier: the bench's nodes start at once), marker; beside it, the
share of our POST (until Node-RED answered) and of the gate's wait until
Node-RED reported the start (``runtime-deploy``). Then times a sync
when nothing changed (what every drift check costs), and the same sync with
``health_check = false`` into an emptied instance (side by side). The baseline (issue 15: our
sync <= 1.5x it) is Node-RED's own full deploy of the same configuration in the same run: the
flows our sync left (GET /flows), deployed again with one ``POST /flows`` into an emptied
instance, timed until it answered and until /comms reported its flows started (Node-RED
answers before it starts them; only when the bench starts its own Node-RED, which it can empty). The JSON
goes to ``--out`` (default ``bench/results``). Without ``--url`` it
starts a Node-RED of its own (as the tests do: tests/nodered.py; ``--node-red``
chooses the major version), with its flows running. With ``--runs`` above 1
every figure is the median of the runs (min and max beside it); each run
starts from an empty Node-RED and a new repository.
"""

from __future__ import annotations

import argparse
import json
import os
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

from reconciler.config import load_config  # noqa: E402
from reconciler.engine import Engine  # noqa: E402
from reconciler.logsetup import setup_logging  # noqa: E402

SUBFLOW = [
    {"id": "bench-sf", "type": "subflow", "name": "stamp", "info": "", "env": [],
     "in": [{"x": 60, "y": 40, "wires": [{"id": "bench-sf-fn"}]}],
     "out": [{"x": 320, "y": 40, "wires": [{"id": "bench-sf-fn", "port": 0}]}]},
    {"id": "bench-sf-fn", "type": "function", "z": "bench-sf", "name": "stamp", "func": "msg.stamp = Date.now();\nreturn msg;",
     "outputs": 1, "x": 190, "y": 40, "wires": [[]]},
]


def tab_flow(i: int) -> dict[str, Any]:
    t = f"bench-{i:05d}"
    last = f"{t}-chg"
    nodes = [
        {"id": f"{t}-in", "type": "inject", "z": t, "name": f"tick {i}", "props": [{"p": "payload"}], "repeat": "",
         "crontab": "", "once": False, "topic": f"t{i}", "payload": "", "payloadType": "date", "x": 120, "y": 80,
         "wires": [[f"{t}-fn"]]},
        {"id": f"{t}-fn", "type": "function", "z": t, "name": "scale", "func": f"msg.payload = msg.payload * {i};\nreturn msg;",
         "outputs": 1, "x": 300, "y": 80, "wires": [[f"{t}-chg"]]},
        {"id": f"{t}-chg", "type": "change", "z": t, "name": "", "rules": [{"t": "set", "p": "flow", "pt": "msg",
         "to": f"bench {i}", "tot": "str"}], "x": 480, "y": 80, "wires": [[f"{t}-out"]]},
        {"id": f"{t}-out", "type": "debug", "z": t, "name": "", "active": False, "x": 660, "y": 80, "wires": []},
    ]
    doc: dict[str, Any] = {"name": f"bench flow {i:05d}", "version": f"1.{i % 3}",
                           "tab": {"id": t, "type": "tab", "disabled": False, "info": f"benchmark tab {i}"}}
    if i % 10 == 0:
        nodes[1]["wires"] = [[f"{t}-sf"]]
        nodes.append({"id": f"{t}-sf", "type": "subflow:bench-sf", "z": t, "x": 390, "y": 140, "wires": [[last]]})
        doc["subflows"] = SUBFLOW
    doc["nodes"] = sorted(nodes, key=lambda n: n["id"])
    return doc


def one_run(root: Path, url: str, args: argparse.Namespace, node_red: Any = None,
            health: bool = True) -> dict[str, float] | None:
    """One export, full sync and idle sync in a fresh folder; the seconds each took (None if the sync failed).
    ``health``: False syncs with ``health_check = false`` (no gate), and measures the sync only."""
    (root / "envs/acceptance").mkdir(parents=True)
    for i in range(args.tabs):
        (root / f"envs/acceptance/{i:05d}.json").write_text(json.dumps(tab_flow(i)))
    (root / "reconciler.toml").write_text(
        '[repository]\npath = "state/flows.git"\n\n'
        '[[environment]]\nname = "acceptance"\ndriver = "directory"\npath = "envs/acceptance"\n\n'
        f'[[environment]]\nname = "production"\ndriver = "node-red"\nurl = "{url}"\n'
        f'token_env = "{args.token_env}"\ntimeout = 120\n' + ("" if health else "health_check = false\n")
    )
    config = load_config(root / "reconciler.toml")
    t0 = time.perf_counter()
    Engine(config, create_repository=True).export("acceptance")
    exported = time.perf_counter() - t0
    subprocess.run(["git", "branch", "env/production", "env/acceptance"], cwd=config.repository.path, check=True)

    driver = config.env("production").build_driver()
    gate: list[float] = []
    check = driver.check_health

    def timed_check(keys, timeout):  # the health gate's share of the sync
        started = time.perf_counter()
        try:
            return check(keys, timeout)
        finally:
            gate.append(time.perf_counter() - started)

    driver.check_health = timed_check  # type: ignore[method-assign]
    from reconciler.drivers.node_red import health as nr_health

    wait, took = nr_health.Watch.wait, []

    def timed_wait(self, *a, **k):  # of the gate: from the POST's answer until Node-RED said it started
        seen = wait(self, *a, **k)
        took.append(seen.took)
        return seen

    nr_health.Watch.wait = timed_wait  # type: ignore[method-assign]
    deploy, posted = driver.api.deploy, []

    def timed_deploy(*a, **k):  # our POST /flows, until Node-RED answered
        started = time.perf_counter()
        try:
            return deploy(*a, **k)
        finally:
            posted.append(time.perf_counter() - started)

    driver.api.deploy = timed_deploy  # type: ignore[method-assign]
    t0, c0 = time.perf_counter(), time.process_time()
    out = Engine(config, drivers={"production": driver}).sync("production")
    synced, cpu = time.perf_counter() - t0, time.process_time() - c0  # cpu: this process's (ours, not Node-RED's)
    nr_health.Watch.wait = wait  # type: ignore[method-assign]
    if out.failed or out.problems or len(out.done) != args.tabs:
        print(f"sync did not import every tab: {dict(list(out.failed.items())[:3])} {out.problems[:3]}", file=sys.stderr)
        return None
    if not health:
        return {"sync_without_gate": synced, "sync_without_gate_cpu": cpu, "sync_without_gate_post": sum(posted)}
    t0 = time.perf_counter()
    again = Engine(config).sync("production")
    idle = time.perf_counter() - t0
    assert not again.plan.changes, "a second sync found changes"
    got = {"export": exported, "sync": synced, "sync_cpu": cpu, "gate": sum(gate), "idle": idle,
           "gate_until_started": sum(took), "sync_post": sum(posted)}
    if node_red is not None:  # the baseline: Node-RED's own full deploy of what our sync left
        got["post_flows"], got["post_flows_started"] = baseline(node_red)
        got["start_after_answer"] = got["post_flows_started"] - got["post_flows"]
    return got


def baseline(node_red: Any) -> tuple[float, float]:
    """Node-RED's own full deploy of the flows it holds, into itself emptied: seconds until ``POST /flows``
    answered, and until /comms reported that deploy's flows started (``runtime-deploy`` with its rev)."""
    from reconciler.drivers.node_red.comms import Comms

    _, nodes = node_red.flows()
    node_red.deploy([])
    comms = Comms(node_red.url, node_red.token, timeout=120)
    try:
        comms.subscribe("notification/runtime-deploy")
        comms.messages(time.monotonic() + 5)  # the retained one: what comes next is new
        t0 = time.perf_counter()
        rev = node_red.deploy(nodes)
        answered = time.perf_counter() - t0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = comms.messages(deadline) or []
            if any(t == "notification/runtime-deploy" and (d or {}).get("revision") == rev for t, d in got):
                break
        return answered, time.perf_counter() - t0
    finally:
        comms.close()


def figure(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f} s"
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tabs", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=1, help="repeat, and print the median of each figure")
    ap.add_argument("--node-red", choices=("nr4", "nr5"), default="nr4",
                    help="the major version to start (tests/nodered.py finds the installs; without --url)")
    ap.add_argument("--url", help="an empty Node-RED to sync into (default: start one)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="the folder for the JSON")
    ap.add_argument("--token-env", default="BENCH_NODE_RED_TOKEN", help="variable holding its token (with --url)")
    args = ap.parse_args()
    setup_logging("warning", "console")

    node_red = None
    with tempfile.TemporaryDirectory(prefix="bench-node-red-") as tmp:
        root = Path(tmp)
        try:
            if args.url:
                url = args.url.rstrip("/")
            else:
                from tests.nodered import NodeRed, find_install

                install = find_install(args.node_red)
                if isinstance(install, str):
                    print(f"{install}; or pass --url", file=sys.stderr)
                    return 1
                node_red = NodeRed(install, root / "node-red")
                url = node_red.url
                os.environ[args.token_env] = node_red.token
            runs: list[dict[str, float]] = []
            for r in range(args.runs):
                if node_red is not None:
                    node_red.deploy([])
                got = one_run(root / f"run-{r}", url, args, node_red)
                if got is None:
                    return 1
                if node_red is not None:  # the same sync without the gate (health_check = false), side by side
                    node_red.deploy([])
                    bare = one_run(root / f"run-{r}-without-gate", url, args, None, health=False)
                    if bare is None:
                        return 1
                    got.update(bare)
                runs.append(got)
            nodes = sum(len(tab_flow(i)["nodes"]) for i in range(args.tabs))
            version = f" {node_red.install.version}" if node_red is not None else ""
            print(f"export of {args.tabs} flows from the folder into git: {figure([r['export'] for r in runs])}")
            print(f"sync of {args.tabs} tabs ({nodes} nodes) into an empty Node-RED{version}: "
                  f"{figure([r['sync'] for r in runs])}")
            print(f"  of which our POST /flows, until Node-RED answered: {figure([r['sync_post'] for r in runs])}")
            print(f"  of which the health gate (until Node-RED reports the deploy started, then the settle window or its barrier): "
                  f"{figure([r['gate'] for r in runs])}")
            print(f"  of which from Node-RED's answer until it reported the deploy started: "
                  f"{figure([r['gate_until_started'] for r in runs])}")
            print(f"sync when nothing changed (a drift check): {figure([r['idle'] for r in runs])}")
            if node_red is not None:
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                ours, bare = med["sync"], med["sync_without_gate"]
                base, started = med["post_flows"], med["post_flows_started"]
                print(f"  CPU of this process (ours) in that sync: {figure([r['sync_cpu'] for r in runs])}")
                print(f"sync without the health gate (health_check = false): {figure([r['sync_without_gate'] for r in runs])}"
                      f", CPU {figure([r['sync_without_gate_cpu'] for r in runs])}, of which our POST "
                      f"{figure([r['sync_without_gate_post'] for r in runs])}")
                print(f"Node-RED's own full POST /flows of the same configuration: answered "
                      f"{figure([r['post_flows'] for r in runs])}; its flows started (runtime-deploy) "
                      f"{figure([r['post_flows_started'] for r in runs])} (started "
                      f"{figure([r['start_after_answer'] for r in runs])} after it answered)")
                print(f"our sync is {ours / base:.2f}x the answer (target <= 1.5x), {ours / started:.2f}x the start; "
                      f"without the gate {bare / base:.2f}x the answer")
                major = "" if args.node_red == "nr4" else args.node_red[2:]  # nr5: latest-node-red5-N.json
                args.out.mkdir(parents=True, exist_ok=True)
                out = args.out / f"latest-node-red{major}-{args.tabs}.json"
                out.write_text(json.dumps({
                    "tabs": args.tabs, "runs": runs, "median": med, "ratio": ours / base,
                    "ratio_to_started": ours / started, "ratio_without_gate": bare / base,
                    "node_red": node_red.install.version, "target_ratio": 1.5,
                    "load_average": [round(x, 2) for x in os.getloadavg()]}, indent=2))
        finally:
            if node_red is not None:
                node_red.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
