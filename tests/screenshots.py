"""The README's screenshots of the status page, made from ``reconciler demo`` in a headless chromium.

Runs the demo in a temporary folder, does what its printed instructions say (a push to production, an
edit made directly in production, which is saved to drift/production and restored), then takes the
overview, production's page and the orders flow's page (its last change as a semantic diff).

    .venv/bin/python -m tests.screenshots        # writes tests/screenshots/{overview,environment,flow}.png
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tests.browserkit import Demo, browser, missing, push, wait_until
from tests.conftest import git_env

OUT = Path(__file__).resolve().parent / "screenshots"
WIDTH = 1280


def _shoot(driver, url: str, path: Path) -> None:
    driver.get(url)
    wait_until(lambda: driver.execute_script("return document.documentElement.dataset.live") == "on", 10,
               what="the page to go live")
    height, chrome_ui = driver.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]")
    driver.set_window_size(WIDTH, min(max(height, 600), 2400) + chrome_ui)
    driver.save_screenshot(str(path))
    print(f"wrote {path}")


def main() -> int:
    why = missing()
    if why:
        print(f"tests/screenshots.py: {why}", file=sys.stderr)
        return 1
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reconciler-shots-") as tmp:
        folder = Path(tmp)
        env = git_env(folder)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
        demo = Demo(folder, env)
        try:
            def edit(work: Path) -> None:
                f = work / "flows/orders/1.0.json"
                f.write_text(f.read_text().replace('"topic": "orders"', '"topic": "orders-v2"'))

            push(folder, env, "env/production", edit, "orders: new topic")
            prod = folder / "demo/envs/production/orders@1.0.json"
            wait_until(lambda: "orders-v2" in prod.read_text(), 10, what="the push to land")
            prod.write_text(prod.read_text().replace("1.21", "9.99"))  # an edit made in production by hand
            drift = folder / "demo/state/flows.git/refs/heads/drift/production"
            wait_until(lambda: drift.exists() and "1.21" in prod.read_text(), 10, what="the edit to be restored")
            with browser(WIDTH, 900) as driver:
                _shoot(driver, demo.url + "/", OUT / "overview.png")
                _shoot(driver, demo.url + "/environments/production", OUT / "environment.png")
                _shoot(driver, demo.url + "/environments/production/flows/orders/1.0", OUT / "flow.png")
        finally:
            demo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
