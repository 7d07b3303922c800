"""A real headless browser for the status page's tests and screenshots: Debian's chromium and
chromium-driver driven by selenium 4 (no network call: the driver is named by its path, so selenium's
manager never runs), and ``reconciler demo`` run as a subprocess.

Without chromium the browser tests skip, saying why, unless ``CI`` is set: there they fail
(``.ci/install-browser`` installs it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.servicekit import wait_for as wait_until

# Debian's paths; the variables exist for the test of what happens when they are missing.
CHROMIUM = Path(os.environ.get("RECONCILER_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("RECONCILER_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
OPTIONS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run")


def missing() -> str | None:
    """Why no browser test can run here (None when they can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing (Debian packages chromium and chromium-driver; .ci/install-browser)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the test extra: pip install -e '.[test]')"
    return None


@contextmanager
def browser(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A fresh headless chromium (its own empty profile), quit afterwards whatever happens."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="reconciler-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*OPTIONS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        subprocess.run(["rm", "-rf", profile], check=False)


class Demo:
    """``reconciler demo`` in ``folder`` (a subprocess on 127.0.0.1 with an OS-chosen port)."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.folder = folder
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "demo", "--listen", "127.0.0.1:0", "--log-format", "json"],
            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.out: list[str] = []
        threading.Thread(target=lambda: self.out.extend(self.proc.stdout), daemon=True).start()  # type: ignore[arg-type]
        wait_until(lambda: any("reconciler_flows" in line for line in self.out) or self.proc.poll() is not None, 60,
                   what="the demo to start")
        if self.proc.poll() is not None:
            raise AssertionError("the demo exited:\n" + "".join(self.out))
        self.text = "".join(self.out)
        self.url = re.search(r"running at (http://127\.0\.0\.1:\d+)", self.text).group(1)
        self.token = (folder / "demo" / "api-token").read_text().strip()
        wait_until(lambda: (folder / "demo/envs/production/orders@1.0.json").exists(), 30, what="the startup sync")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def push(folder: Path, env: dict[str, str], branch: str, edit, message: str, clone: str = "work") -> None:
    """Clone ``branch`` of the demo's repository (once), edit it, commit and push with the git CLI."""
    work = folder / clone
    repo = folder / "demo" / "state" / "flows.git"
    if not work.exists():
        subprocess.run(["git", "clone", "-q", "-b", branch, str(repo), str(work)], env=env, check=True)
    else:
        subprocess.run(["git", "-C", str(work), "pull", "-q"], env=env, check=True)
    edit(work)
    subprocess.run(["git", "-C", str(work), "commit", "-qam", message], env=env, check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q"], env=env, check=True)


def ci() -> bool:
    return bool(os.environ.get("CI"))
