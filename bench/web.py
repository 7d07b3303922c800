"""What the status page costs: the overview of many environments, and event streams beside reconciles.

``python -m bench.web [--envs 100] [--streams 50] [--runs 30]``

1. **overview**: ``GET /`` over HTTP from the real server in-process, with ``--envs`` directory
   environments (3 flows each, every one reconciled once), median of ``--runs`` requests; the
   target is ≤ 100 ms at 100 environments;
2. **reconcile with open streams**: one environment of 100 flows with drift ``restore``; each run edits
   one flow in its folder and reconciles (the edit is saved to drift/<env> and undone), timed around
   the worker's ``reconcile`` (which also publishes the event). Medians of ``--runs`` runs with no
   stream open and as many with ``--streams`` open (each read by its own client thread, as a browser
   tab would), in alternating rounds so that a busy moment of the machine falls on both; every stream
   must get every event.

Results go to ``bench/results/latest-web.json``.
"""

from __future__ import annotations

import argparse
from http.client import HTTPConnection
import json
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reconciler.config import load_config  # noqa: E402
from reconciler.engine import Engine  # noqa: E402
from reconciler.logsetup import setup_logging  # noqa: E402
from reconciler.server import HttpServer  # noqa: E402
from reconciler.service import Service  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ROUNDS = 6


def _flow(name: str, i: int) -> dict[str, Any]:
    return {"name": name, "version": "1", "steps": [{"id": "s1", "type": "http-in", "config": {"url": f"/{name}/{i}"}},
                                                   {"id": "s2", "type": "transform", "config": {"expr": "x * 2"}}]}


def _workspace(root: Path, envs: dict[str, tuple[int, str]]) -> Path:
    """A config of directory environments (name -> (flows, drift policy)), each exported to its branch."""
    lines = ['[repository]', 'path = "state/flows.git"', ""]
    for name, (flows, policy) in envs.items():
        folder = root / "envs" / name
        folder.mkdir(parents=True)
        for i in range(flows):
            (folder / f"f{i}.json").write_text(json.dumps(_flow(f"flow-{i}", i)))
        lines += ["[[environment]]", f'name = "{name}"', 'driver = "directory"', f'path = "envs/{name}"',
                  f'drift = "{policy}"', "prune = true", ""]
    config = root / "reconciler.toml"
    config.write_text("\n".join(lines))
    engine = Engine(load_config(config), create_repository=True)
    for name in envs:
        engine.export(name)
    engine.close()
    return config


def _serve(config: Path) -> tuple[Service, HttpServer]:
    service = Service(load_config(config))
    http = HttpServer(service, "127.0.0.1", 0, heartbeat=1.0)  # closed streams are noticed at a heartbeat
    http.start()
    for w in service.workers.values():
        w.reconcile({"bench"})
    return service, http


def _close(service: Service, http: HttpServer) -> None:
    http.stop()
    for w in service.workers.values():
        w.engine.close()


def overview(envs: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        config = _workspace(Path(tmp), {f"env-{i:03d}": (3, "report") for i in range(envs)})
        service, http = _serve(config)
        try:
            times, size = [], 0
            for _ in range(runs + 2):
                conn = http_conn(http)
                started = time.perf_counter()
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
                times.append(time.perf_counter() - started)
                conn.close()
                assert resp.status == 200 and body.count(b'<tr id="env-') == envs
                size = len(body)
            times = times[2:]  # the first requests open the repository and load the templates
        finally:
            _close(service, http)
    return {"environments": envs, "runs": runs, "median_ms": round(statistics.median(times) * 1000, 1),
            "min_ms": round(min(times) * 1000, 1), "max_ms": round(max(times) * 1000, 1), "bytes": size}


def http_conn(server: HttpServer) -> HTTPConnection:
    host, port = server.address
    return HTTPConnection(host, port, timeout=10)


class _Reader(threading.Thread):
    """One open event stream, read to the end like a browser tab reads it; counts run events."""

    def __init__(self, address: tuple[str, int]):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(address, timeout=30)
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.runs = 0
        self.hello = threading.Event()

    def run(self) -> None:
        buffer = b""
        try:
            while chunk := self.sock.recv(65536):
                buffer += chunk
                if b"event: hello" in buffer:
                    self.hello.set()
                self.runs += buffer.count(b"event: run\n")
                buffer = buffer[buffer.rfind(b"\n\n") + 2:] if b"\n\n" in buffer else buffer
        except OSError:
            pass


def reconciles(streams: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        root = Path(tmp)
        config = _workspace(root, {"target": (100, "restore")})
        service, http = _serve(config)
        worker = service.workers["target"]
        edited = root / "envs" / "target" / "f7.json"

        def timed(n: int) -> list[float]:
            out = []
            for i in range(n):
                doc = json.loads(edited.read_text())
                doc["steps"][0]["config"]["url"] = f"/edited/{time.monotonic_ns()}/{i}"
                edited.write_text(json.dumps(doc))
                started = time.perf_counter()
                worker.reconcile({"bench"})
                out.append(time.perf_counter() - started)
                assert worker.status.result == "ok", worker.status.error
            return out

        try:
            timed(10)  # warm
            without, with_, delivered = [], [], True
            per = max(1, runs // ROUNDS)
            for _ in range(ROUNDS):  # alternating blocks, so a slow moment of the machine hits both sides
                without += timed(per)
                readers = [_Reader(http.address) for _ in range(streams)]
                for r in readers:
                    r.start()
                for r in readers:
                    assert r.hello.wait(10), "a stream did not open"
                with_ += timed(per)
                deadline = time.monotonic() + 10
                while any(r.runs < per for r in readers) and time.monotonic() < deadline:
                    time.sleep(0.02)
                delivered = delivered and all(r.runs == per for r in readers)
                for r in readers:
                    r.sock.close()
                while len(http.web.events) and time.monotonic() < deadline:
                    time.sleep(0.02)  # the server threads notice the closed sockets
        finally:
            _close(service, http)

    def ms(xs: list[float]) -> float:
        return round(statistics.median(xs) * 1000, 2)

    return {"runs": len(without), "rounds": ROUNDS, "streams": streams, "flows": 100,
            "median_ms_no_streams": ms(without), "median_ms_with_streams": ms(with_),
            "p90_ms_no_streams": round(statistics.quantiles(without, n=10)[-1] * 1000, 2),
            "p90_ms_with_streams": round(statistics.quantiles(with_, n=10)[-1] * 1000, 2),
            "events_delivered_to_every_stream": delivered}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", type=int, default=100)
    p.add_argument("--streams", type=int, default=50)
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    setup_logging("warning", "console")
    results = {"1. overview": overview(args.envs, args.runs), "2. reconcile with open streams":
               reconciles(args.streams, args.runs)}
    one, two = results["1. overview"], results["2. reconcile with open streams"]
    print(f"1. GET / with {one['environments']} environments: median {one['median_ms']} ms "
          f"(min {one['min_ms']}, max {one['max_ms']}; {one['bytes']} bytes)")
    print(f"2. a reconcile (100 flows, one restored): median {two['median_ms_no_streams']} ms with no stream, "
          f"{two['median_ms_with_streams']} ms with {two['streams']} open streams (p90 {two['p90_ms_no_streams']} / "
          f"{two['p90_ms_with_streams']} ms; {two['runs']} runs each in {two['rounds']} alternating rounds); every "
          f"stream got every event: {two['events_delivered_to_every_stream']}")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}, "results": results}
    (args.out / "latest-web.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
