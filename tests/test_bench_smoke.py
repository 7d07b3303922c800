"""The benchmark command works (a smoke run at small N; timings are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_python_m_bench_runs_at_small_n_and_writes_its_json(tmp_path: Path) -> None:
    """python -m bench --flows 30 prints the table and writes results with every scenario."""
    proc = subprocess.run([sys.executable, "-m", "bench", "--flows", "30", "--runs", "1", "--pushes", "3",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1. initial export" in proc.stdout and "commit-to-applied latency" in proc.stdout
    assert "C4. plan ENV, nothing changed" in proc.stdout
    doc = json.loads((tmp_path / "latest-30.json").read_text())
    assert len(doc["results"]) == 7 + 9  # in-process 1-6, whole processes C0-C8
    floor = doc["results"]["C0. the floor: import pygit2"]["ours"]["median"]
    c8 = doc["results"]["C8. sync of a 1% change pushed to git (+ sync)"]
    assert c8["floor_ratio"] == floor / c8["baseline"]["median"]  # the fixed floor against the same baseline
    assert doc["results"]["5. commit-to-applied latency"]["pushes"] == 3
    assert all(r["ours"]["runs"] >= 1 for k, r in doc["results"].items() if k.startswith("C"))


def test_python_m_bench_sidecars_runs_at_small_n_and_writes_its_json(tmp_path: Path) -> None:
    """python -m bench.sidecars --flows 20: both forms exported and planned; the split one holds 8 files a flow."""
    proc = subprocess.run([sys.executable, "-m", "bench.sidecars", "--flows", "20", "--runs", "1", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "latest-sidecars-20.json").read_text())
    r = doc["results"]
    assert r["single-file"]["files_in_git"] == 20 and r["split"]["files_in_git"] == 160
    assert set(r["ratio"]) == {"export", "export_cpu", "plan_cold", "plan_cold_cpu", "plan_warm"}
