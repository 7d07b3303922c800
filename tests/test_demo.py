"""`reconciler demo` (the README's run command) starts a working service and its printed steps work."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import git_env
from tests.servicekit import wait_for


def steps(help_text: str, number: int) -> str:
    block = re.search(rf"# {number}\..*?\n(.*?)(?:\n\s*\n|\Z)", help_text, flags=re.S)
    assert block, f"step {number} not found in:\n{help_text}"
    return "\n".join(line.strip() for line in block.group(1).splitlines())


def test_the_demo_runs_and_its_printed_instructions_work(tmp_path: Path) -> None:
    """The demo syncs production at start; a push lands; a production edit is saved and restored."""
    env = git_env(tmp_path)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "demo", "--listen", "127.0.0.1:0", "--log-format", "json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        wait_for(lambda: any("Ctrl-C" in line for line in out) or proc.poll() is not None, 30, what="the demo to start")
        wait_for(lambda: any("reconciler_flows" in line for line in out), 5, what="the whole help text")
        text = "".join(out)
        assert proc.poll() is None, text
        wait_for(lambda: (tmp_path / "demo/envs/production/orders@1.0.json").exists(), 15, what="the startup sync")
        for n in (1, 2):
            run = subprocess.run(["bash", "-ec", steps(text, n)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, f"step {n} failed:\n{steps(text, n)}\n{run.stdout}\n{run.stderr}"
        assert "1.21" in (tmp_path / "demo/envs/production/orders@1.0.json").read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
