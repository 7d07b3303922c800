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
        # Step 3 as printed, from a folder holding another reconciler.toml, without the venv on PATH.
        (tmp_path / "reconciler.toml").write_text("this is not the demo's config\n")
        bare = dict(env, PATH=os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                               if p != os.path.dirname(sys.executable)))
        run = subprocess.run(["bash", "-ec", steps(text, 3)], cwd=tmp_path, env=bare, capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 0, f"step 3 failed:\n{steps(text, 3)}\n{run.stdout}\n{run.stderr}"
        assert "production" in run.stdout and "in sync" in run.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_demo_runs_a_second_time_on_its_own_folder_and_leaves_nothing_untracked(tmp_path: Path) -> None:
    """`reconciler demo --no-run` twice, then the printed start command: it reuses ./demo, which git ignores."""
    env = git_env(tmp_path)
    subprocess.run(["git", "init", "-q", str(tmp_path)], env=env, check=True)
    (tmp_path / ".gitignore").write_text((Path(__file__).resolve().parent.parent / ".gitignore").read_text())
    for _ in range(2):
        out = subprocess.run([sys.executable, "-m", "reconciler", "demo", "--no-run"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
    command = out.stdout.split("start it with: ", 1)[1].strip()
    proc = subprocess.Popen(["bash", "-c", f"exec {command} --listen 127.0.0.1:0 --log-format json"], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "demo/envs/production/orders@1.0.json").exists() or proc.poll() is not None,
                 30, what="the second start to sync production")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    untracked = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, check=True).stdout.split("\n")
    assert [line for line in untracked if line and ".gitignore" not in line] == []
