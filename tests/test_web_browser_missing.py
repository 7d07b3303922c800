"""Without chromium the browser tests skip, saying why, unless CI is set: there they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["RECONCILER_TEST_CHROMIUM"] = "/nonexistent/chromium"
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "tests/test_web_browser.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_without_chromium_the_browser_tests_skip_and_say_why() -> None:
    got = _run(ci=False)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "skipped" in got.stdout and "/nonexistent/chromium is missing" in got.stdout


def test_without_chromium_in_ci_the_browser_tests_fail() -> None:
    got = _run(ci=True)
    assert got.returncode != 0
    assert "CI is set but the browser tests cannot run: /nonexistent/chromium is missing" in got.stdout + got.stderr
