"""Running the real service as a subprocess, and waiting on it without fixed sleeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class ServiceProcess:
    """``reconciler run`` on 127.0.0.1 with an OS-chosen port."""

    def __init__(self, config: Path, *extra: str, env: dict[str, str] | None = None):
        self.config = config
        cmd = [sys.executable, "-m", "reconciler", "--config", str(config), "run", "--listen", "127.0.0.1:0",
               "--log-format", "json", *extra]
        full_env = dict(os.environ)
        full_env.pop("RECONCILER_SHARD", None)
        full_env.pop("RECONCILER_SHARDS", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                                     cwd=config.parent)
        self.logs: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        listening = wait_for(lambda: self.find("listening") or self.proc.poll() is not None, 20, what="the service to listen")
        if self.proc.poll() is not None:
            raise AssertionError(f"service exited {self.proc.returncode}:\n" + "\n".join(self.raw))
        self.url = listening[0]["url"]

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.raw.append(line.rstrip("\n"))
                try:
                    self.logs.append(json.loads(line))
                except json.JSONDecodeError:
                    pass

    def find(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.logs if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())]

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                data, status, ctype = resp.read(), resp.status, resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            data, status, ctype = exc.read(), exc.code, exc.headers.get("Content-Type", "")
        return status, (json.loads(data) if "json" in ctype else data.decode())

    def status(self, env: str) -> dict[str, Any]:
        code, body = self.request("GET", "/api/v1/status")
        assert code == 200
        return next(e for e in body["environments"] if e["name"] == env)

    def runs(self, env: str) -> int:
        return self.status(env)["runs"]

    def metric(self, name: str, **labels: str) -> float:
        _, text = self.request("GET", "/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                if all(f'{k}="{v}"' in line for k, v in labels.items()):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def __enter__(self) -> "ServiceProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
