"""The README's walk-through works word for word, from an empty folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import git_env

README = Path(__file__).resolve().parent.parent / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def shell_blocks(md: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", md, flags=re.S)


def test_the_walk_through_runs_word_for_word(tmp_path: Path) -> None:
    """Every sh block of the walk-through runs in order with bash -e, as a new user would type it."""
    script = "set -euo pipefail\n" + "\n".join(shell_blocks(section("Walk-through")))
    env = git_env(tmp_path)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env.pop("RECONCILER_CONFIG", None)
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    assert "plan exit code: 2" in out
    assert "sync exit code: 3" in out
    assert "sync exit code: 1" in out
    assert "env/production:flows/orders/1.0.json" in proc.stderr
    demo = tmp_path / "flows-demo"
    log = subprocess.run(["git", "log", "--format=%s", "env/acceptance"], cwd=demo / "state/flows.git",
                         env=env, capture_output=True, text=True, check=True).stdout
    assert log.count("acceptance:") == 3


def test_the_promotion_section_runs_word_for_word(tmp_path: Path) -> None:
    """Params and secrets per environment, promote, validate, plan --against, merge, sync, rollback."""
    script = "set -euo pipefail\n" + "\n".join(shell_blocks(section("Promotion")))
    env = git_env(tmp_path)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env.pop("RECONCILER_CONFIG", None)
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "plan exit code: 2" in proc.stdout
    demo = tmp_path / "promo-demo"
    prod = (demo / "envs/production/orders@1.0.json").read_text()
    assert "api.prod.example.com" in prod and "pr0d-pa55w0rd" in prod
    everything = subprocess.run(["git", "log", "--all", "-p"], cwd=demo / "state/flows.git", env=env,
                                capture_output=True, text=True, check=True).stdout
    for secret in ("acc-pa55w0rd", "pr0d-pa55w0rd", "api.prod.example.com", "api.acc.example.com"):
        assert secret not in everything


def test_the_event_processing_section_runs_word_for_word(tmp_path: Path) -> None:
    """Write, validate, render, sync (drift restored), promote: each environment its own Kafka and
    password in its scripts, git holding neither."""
    script = "set -euo pipefail\n" + "\n".join(shell_blocks(section("Event-processing flows")))
    env = git_env(tmp_path)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env.pop("RECONCILER_CONFIG", None)
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "validate exit code: 1" in proc.stdout and "field 'prize'" in proc.stdout + proc.stderr
    assert "plan exit code: 2" in proc.stdout and "not in git" in proc.stdout
    demo = tmp_path / "ep-demo"
    acc = (demo / "envs/acceptance/big-orders@1.sql").read_text()
    prod = (demo / "envs/production/big-orders@1.sql").read_text()
    assert "kafka-0.acc.internal" in acc and "acc-kafka-pw" in acc and "price > 1000" in acc
    assert "kafka-0.prod.internal" in prod and "prod-kafka-pw" in prod and "acc-kafka-pw" not in prod
    assert (demo / "big-orders@1.sql").read_text().count("acc-kafka-pw") == 1


def test_the_split_form_section_runs_word_for_word_and_shows_its_real_diffs(tmp_path: Path) -> None:
    """Export a Node-RED tab split and single-file, change one line of a function, export again: the
    two diffs the README shows are the ones git prints; migrate moves the single-file branch."""
    md = section("Code as files: the split form")
    script = "set -euo pipefail\n" + "\n".join(shell_blocks(md))
    env = git_env(tmp_path)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env.pop("RECONCILER_CONFIG", None)
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    split_diff, single_diff = re.findall(r"```diff\n(.*?)```", md, flags=re.S)
    assert split_diff in proc.stdout and single_diff in proc.stdout, proc.stdout
    assert split_diff.count("\n-") == split_diff.count("\n+") == 1 + 1  # one line out, one in (and the --- / +++ header)
    assert "work/flows/orders/1/ship.func.js" in proc.stdout and "moved 1 flow of env/legacy" in proc.stdout
    demo = tmp_path / "split-demo"
    same = subprocess.run(["git", "diff", "env/acceptance", "env/legacy", "--", "flows"], cwd=demo / "state/flows.git",
                          env=env, capture_output=True, text=True, check=True).stdout
    assert same == ""  # migrated, the single-file branch holds exactly the files the split one does
