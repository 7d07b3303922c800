"""The status page in a real headless browser (chromium + selenium 4), against the real service:
``reconciler demo``, or ``reconciler run`` on a workspace. Skipped without chromium unless CI is set."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from reconciler.web.views import flow_url
from tests import browserkit
from tests.browserkit import Demo, browser, push, wait_until
from tests.conftest import Workspace, flow, git_env
from tests.servicekit import ServiceProcess
from tests.webkit import HOSTILE, TOKEN, site

_why = browserkit.missing()
if _why and browserkit.ci():
    pytest.fail(f"CI is set but the browser tests cannot run: {_why}", pytrace=False)
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")


@pytest.fixture(scope="module")
def chrome():
    with browser() as driver:
        yield driver


@pytest.fixture
def demo(tmp_path: Path):
    env = git_env(tmp_path)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    d = Demo(tmp_path, env)
    d.env = env  # type: ignore[attr-defined]
    yield d
    d.stop()


def text(chrome, css: str) -> str:
    """The visible text of what ``css`` selects, read in one go (a live update may swap the page meanwhile)."""
    return chrome.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText).join(' ')", css)


def test_the_overview_lists_the_demos_environments(chrome, demo: Demo) -> None:
    assert f"status page:  {demo.url}/" in demo.text  # the demo's printed instructions point to it
    chrome.get(demo.url + "/")
    assert chrome.title == "Environments · flow-reconciler"
    rows = text(chrome, "#envs tbody tr")
    assert "acceptance" in rows and "production" in rows and "env/production" in rows
    assert "in sync 3" in text(chrome, "#env-production")
    wait_until(lambda: chrome.execute_script("return document.documentElement.dataset.live") == "on", 5,
               what="the event stream to open")


def test_a_push_changes_the_page_within_a_second_without_a_reload(chrome, demo: Demo) -> None:
    chrome.get(demo.url + "/")
    wait_until(lambda: chrome.execute_script("return document.documentElement.dataset.live") == "on", 5,
               what="the event stream to open")
    chrome.execute_script("window.__marker = 'same page'")

    def edit(work: Path) -> None:
        f = work / "flows/orders/1.0.json"
        f.write_text(f.read_text().replace('"topic": "orders"', '"topic": "orders-v2"'))

    push(demo.folder, demo.env, "env/production", edit, "orders: new topic")  # type: ignore[attr-defined]
    pushed = time.monotonic()
    wait_until(lambda: "orders: new topic" in text(chrome, "#env-production .tip"), 5, 0.01, what="the new tip")
    elapsed = time.monotonic() - pushed
    assert elapsed <= 1.0, f"the page changed {elapsed:.2f} s after the push"
    assert chrome.execute_script("return window.__marker") == "same page"  # not reloaded


def test_a_drifted_flows_page_shows_the_field_that_differs(chrome, ws: Workspace) -> None:
    site(ws)
    with ServiceProcess(ws.config, env={"RECONCILER_API_TOKEN": TOKEN}) as svc:
        wait_for_runs(svc)
        path = next(p for p in ws.env_dir("production").glob("billing*.json"))
        doc = json.loads(path.read_text())
        doc["steps"][0]["config"]["url"] = "/edited-by-hand"
        path.write_text(json.dumps(doc))
        wait_until(lambda: svc.status("production")["counts"].get("drifted") == 1, 10, what="the drift")
        chrome.get(svc.url + flow_url("production", "billing", "2"))
        assert "drifted" in text(chrome, "#state")
        now = text(chrome, "#live-diff")
        assert "/steps/0/config/url" in now and '"/billing"' in now and '"/edited-by-hand"' in now


def test_a_hostile_flow_name_is_rendered_as_text(chrome, ws: Workspace) -> None:
    from selenium.webdriver.common.by import By

    site(ws, extra_flows=(flow(HOSTILE),))
    with ServiceProcess(ws.config) as svc:
        wait_for_runs(svc)
        for url in (svc.url + "/environments/production", svc.url + flow_url("production", HOSTILE, "1.0")):
            chrome.get(url)
            assert HOSTILE in chrome.find_element(By.TAG_NAME, "main").text
            assert chrome.find_elements(By.CSS_SELECTOR, "main img") == []
            time.sleep(0.2)
            assert chrome.execute_script("return window.__pwned") is None


def test_the_sync_button_without_the_token_is_refused(chrome, demo: Demo) -> None:
    from selenium.webdriver.common.by import By

    chrome.delete_all_cookies()
    chrome.get(demo.url + "/environments/production")
    chrome.find_element(By.CSS_SELECTOR, "button[data-action=sync]").click()
    wait_until(lambda: chrome.title.startswith("Refused"), 5, what="the refusal")
    assert "log in first" in chrome.find_element(By.ID, "message").text
    assert web_triggers(demo) == 0
    # With the token, the same button queues a sync.
    chrome.get(demo.url + "/login?next=/environments/production")
    chrome.find_element(By.NAME, "token").send_keys(demo.token)
    chrome.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait_until(lambda: chrome.title.startswith("production"), 5, what="the environment page")
    chrome.find_element(By.CSS_SELECTOR, "button[data-action=sync]").click()
    wait_until(lambda: "queued" in text(chrome, "#queued"), 5, what="the sync to be queued")
    assert web_triggers(demo) == 1


def wait_for_runs(svc: ServiceProcess) -> None:
    wait_until(lambda: all(svc.runs(e) > 0 for e in ("acceptance", "production")), 20, what="the first runs")


def web_triggers(demo: Demo) -> float:
    import urllib.request

    text = urllib.request.urlopen(demo.url + "/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("reconciler_triggers_total{") and 'source="web"' in line)
