"""Suspend and resume from the status page (login + CSRF, or the bearer token), what the pages then say,
and the login cookie's Secure flag (the real server in-process, a real repository and folders)."""

from __future__ import annotations

import pytest

from reconciler.config import load_config
from reconciler.engine import Engine
from tests.conftest import Workspace, flow
from tests.webkit import TOKEN, Web, site


@pytest.fixture
def web(ws: Workspace):
    site(ws)
    w = Web(ws)
    w.reconcile()
    yield w
    w.close()


def push_change(ws: Workspace, url: str) -> None:
    """A new version of flow billing@2 exported from acceptance, and env/production moved to it (a promotion)."""
    ws.put("acceptance", "flow1.json", {**flow("billing", "2"), "url": url})
    engine = Engine(load_config(ws.config))
    try:
        engine.export("acceptance")
    finally:
        engine.close()
    ws.git("branch", "-f", "env/production", "env/acceptance", cwd=ws.repo)


def suspended(web: Web, env: str = "production") -> str | None:
    return next(e for e in web.service.status()["environments"] if e["name"] == env)["suspended"]


def billing_url(ws: Workspace) -> str | None:
    doc = ws.live("production").get(("billing", "2"))
    return None if doc is None else doc.get("url")


def test_suspend_from_the_page_holds_the_environment_and_resume_applies_what_is_pending(ws: Workspace, web: Web) -> None:
    cookie, csrf = web.login()
    assert web.post_form("/environments/production/suspend", {"reason": "freeze"}, {"Cookie": cookie}).status == 403
    assert not suspended(web)
    got = web.post_form("/environments/production/suspend", {"csrf": csrf, "reason": "incident\n 42"},
                        {"Cookie": cookie})
    assert got.status == 303 and got.header("Location") == "/environments/production?queued=suspend"
    web.reconcile("production")
    held = suspended(web)
    assert "by status page: incident 42" in held
    page = web.get(got.header("Location"), Cookie=cookie).text
    assert "production is suspended" in page and 'id="held"' in page and "incident 42" in page
    assert "held: suspended since" in web.get("/").text

    push_change(ws, "/billing/v2")
    web.reconcile("production")
    assert billing_url(ws) != "/billing/v2"  # held back while suspended

    got = web.post_form("/environments/production/resume", {"csrf": csrf}, {"Cookie": cookie})
    assert got.status == 303 and got.header("Location") == "/environments/production?queued=resume"
    web.reconcile("production")
    assert billing_url(ws) == "/billing/v2"
    assert not suspended(web)
    page = web.get(got.header("Location"), Cookie=cookie).text
    assert "production is resumed" in page and 'id="held"' not in page


def test_one_flow_can_be_suspended_and_a_selector_naming_nothing_is_a_clear_400(ws: Workspace, web: Web) -> None:
    cookie, csrf = web.login()
    got = web.post_form("/environments/production/suspend", {"csrf": csrf, "flow": "billing@2", "reason": "vendor"},
                        {"Cookie": cookie})
    assert got.status == 303
    push_change(ws, "/billing/v3")
    web.reconcile("production")
    assert billing_url(ws) != "/billing/v3"
    assert not suspended(web)  # the environment itself is not
    bad = web.post_form("/environments/production/suspend", {"csrf": csrf, "flow": "../etc@@"}, {"Cookie": cookie})
    assert bad.status == 400 and "Refused" in bad.text
    assert web.post_form("/environments/nope/suspend", {"csrf": csrf}, {"Cookie": cookie}).status == 404


def test_the_bearer_token_suspends_without_a_session_and_a_wrong_one_is_refused(web: Web) -> None:
    wrong = web.post_form("/environments/production/suspend", {}, {"Authorization": "Bearer nope"})
    assert wrong.status == 403 and not suspended(web)
    got = web.post_form("/environments/production/suspend", {"reason": "api"}, {"Authorization": f"Bearer {TOKEN}"})
    assert got.status == 303
    web.reconcile("production")
    assert "api" in suspended(web)
    assert web.get("/environments/production/suspend").status == 405  # never on GET


@pytest.mark.parametrize(("server", "secure"), [
    ("", False),
    ('public_url = "https://reconciler.example.com"\n', True),
    ('public_url = "https://reconciler.example.com"\nsecure_cookie = false\n', False),
    ('public_url = "http://reconciler.example.com"\nsecure_cookie = true\n', True),
])
def test_the_login_cookie_is_secure_behind_https_or_when_asked(ws: Workspace, server: str, secure: bool) -> None:
    site(ws)
    ws.write_config("\n[server]\n" + server)
    w = Web(ws)
    try:
        got = w.post_form("/login", {"token": TOKEN, "next": "/"})
        cookie = got.header("Set-Cookie")
        assert got.status == 303 and cookie.startswith("reconciler_session=") and "HttpOnly" in cookie
        assert ("; Secure" in cookie) is secure
        out = w.post_form("/logout", {}, {"Cookie": cookie.split(";", 1)[0]})
        assert ("; Secure" in out.header("Set-Cookie")) is secure
    finally:
        w.close()


def test_a_secure_cookie_setting_that_is_not_a_boolean_is_refused(ws: Workspace) -> None:
    site(ws)
    ws.write_config('\n[server]\nsecure_cookie = "yes"\n')
    out = ws.cli("validate")
    assert out.returncode == 1 and "server.secure_cookie = 'yes': Input should be a valid boolean" in out.stderr
