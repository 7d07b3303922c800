"""The status page's benchmark runs (a smoke run at small N; timings are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_python_m_bench_web_runs_at_small_n_and_writes_its_json(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.web", "--envs", "5", "--streams", "3", "--runs", "6",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "latest-web.json").read_text())["results"]
    assert results["1. overview"]["environments"] == 5
    assert results["2. reconcile with open streams"]["events_delivered_to_every_stream"] is True
