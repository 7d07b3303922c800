"""The status page's security: escaping, the Content-Security-Policy, the login, CSRF, no state change on GET,
no secret on any page, and the loopback name check (all against the real server in-process)."""

from __future__ import annotations

import re

import pytest

from reconciler.web import CSP
from reconciler.web.views import flow_url
from tests.conftest import Workspace, flow
from tests.webkit import ACC_SECRET, HOSTILE, PROD_SECRET, TOKEN, Web, site


@pytest.fixture
def web(ws: Workspace):
    site(ws, extra_flows=(flow(HOSTILE),))
    w = Web(ws)
    w.reconcile()
    yield w
    w.close()


def pages(web: Web) -> list[str]:
    return ["/", "/environments/production", "/environments/acceptance", flow_url("production", "orders", "1.0"),
            flow_url("production", HOSTILE, "1.0"), "/login", "/environments/nope"]


def queued(web: Web, env: str = "production") -> bool:
    return not web.service.workers[env].idle.is_set()  # a trigger clears it; nothing runs the worker here


def test_every_page_is_sent_with_a_strict_content_security_policy(web: Web) -> None:
    assert CSP == ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
                   "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    for path in pages(web):
        got = web.get(path)
        assert got.header("Content-Security-Policy") == CSP, path
        assert got.header("X-Frame-Options") == "DENY" and got.header("X-Content-Type-Options") == "nosniff"
        assert got.header("Cache-Control") == "no-store"


def test_no_page_holds_inline_script_or_style_or_loads_anything_from_elsewhere(web: Web) -> None:
    for path in pages(web):
        html = web.get(path).text
        assert re.findall(r"<script(?![^>]*\bsrc=\"/static/)[^>]*>", html) == [], path
        assert re.findall(r"<style|<[a-z][^>]*\s(?:style|on[a-z]+)\s*=", html, re.I) == [], path
        assert re.findall(r"\s(?:src|href|action)=\"(?!/|\?|#)[^\"]*\"", html) == [], path


def test_the_script_and_style_sheet_are_served_from_the_package(web: Web) -> None:
    js, css = web.get("/static/app.js"), web.get("/static/app.css")
    assert js.status == 200 and js.header("Content-Type").startswith("text/javascript") and "EventSource" in js.text
    assert css.status == 200 and css.header("Content-Type").startswith("text/css")
    assert web.get("/static/../server.py").status == 404 and web.get("/static/nope.js").status == 404


def test_a_hostile_flow_name_is_shown_as_text(web: Web) -> None:
    escaped = "&lt;img src=x onerror=window.__pwned=1&gt;"
    for path in ("/environments/production", flow_url("production", HOSTILE, "1.0")):
        html = web.get(path).text
        assert escaped in html and "<img" not in html, path


def test_no_secret_value_is_on_any_page(web: Web) -> None:
    for path in pages(web):
        html = web.get(path).text
        assert ACC_SECRET not in html and PROD_SECRET not in html, path


def test_sync_without_the_token_is_refused_and_queues_nothing(web: Web) -> None:
    got = web.post_form("/environments/production/sync", {})
    assert got.status == 401 and "log in first" in got.text
    got = web.post_form("/environments/production/sync", {}, {"Authorization": "Bearer wrong-wrong-wrong"})
    assert got.status == 403
    assert not queued(web)


def test_no_action_is_ever_taken_on_get(web: Web) -> None:
    cookie, _ = web.login()
    for method in ("GET", "HEAD"):
        got = web.request(method, "/environments/production/sync", headers={"Cookie": cookie})
        assert got.status == 405
    assert not queued(web)


def test_login_sets_an_httponly_samesite_strict_session_cookie_not_the_token(web: Web) -> None:
    assert web.post_form("/login", {"token": "wrong"}).status == 401
    got = web.post_form("/login", {"token": TOKEN, "next": "/environments/production"})
    assert got.status == 303 and got.header("Location") == "/environments/production"
    cookie = got.header("Set-Cookie")
    assert re.fullmatch(r"reconciler_session=[A-Za-z0-9_-]{40,}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200",
                        cookie)
    assert TOKEN not in cookie


def test_a_logged_in_sync_needs_the_csrf_token_of_its_session(web: Web) -> None:
    cookie, csrf = web.login()
    assert web.post_form("/environments/production/sync", {}, {"Cookie": cookie}).status == 403
    assert web.post_form("/environments/production/sync", {"csrf": "x" * 43}, {"Cookie": cookie}).status == 403
    assert not queued(web)
    got = web.post_form("/environments/production/sync", {"csrf": csrf}, {"Cookie": cookie})
    assert got.status == 303 and got.header("Location") == "/environments/production?queued=sync"
    assert queued(web)
    assert "A sync of production is queued." in web.get(got.header("Location"), Cookie=cookie).text


def test_a_request_from_another_site_is_refused_even_with_the_session(web: Web) -> None:
    cookie, csrf = web.login()
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        got = web.post_form("/environments/production/sync", {"csrf": csrf}, {"Cookie": cookie, **headers})
        assert got.status == 403, headers
    assert not queued(web)


def test_the_bearer_token_works_for_the_page_action_too(web: Web) -> None:
    got = web.post_form("/environments/production/sync", {}, {"Authorization": f"Bearer {TOKEN}"})
    assert got.status == 303 and queued(web)


def test_logging_out_ends_the_session(web: Web) -> None:
    cookie, csrf = web.login()
    got = web.post_form("/logout", {"csrf": csrf}, {"Cookie": cookie})
    assert got.status == 303 and "Max-Age=0" in got.header("Set-Cookie")
    assert web.post_form("/environments/production/sync", {"csrf": csrf}, {"Cookie": cookie}).status == 401


def test_login_redirects_only_to_this_server(web: Web) -> None:
    for target in ("//evil.example/x", "/\\evil.example", "http://evil.example", "javascript:alert(1)"):
        got = web.post_form("/login", {"token": TOKEN, "next": target})
        assert got.header("Location") == "/", target


def test_without_an_api_token_nobody_can_act(ws: Workspace) -> None:
    site(ws)
    web = Web(ws, token=None)
    try:
        assert "No API token is configured" in web.get("/login").text
        assert web.post_form("/login", {"token": ""}).status == 401
        got = web.post_form("/environments/production/sync", {})
        assert got.status == 403 and "No API token is configured" in got.text
    finally:
        web.close()


def test_a_foreign_host_name_is_refused_on_a_loopback_service(web: Web) -> None:
    """A page of another site whose name resolves to 127.0.0.1 (DNS rebinding) cannot read the pages."""
    assert web.get("/", Host="evil.example:9420").status == 403
    assert web.get("/events", Host="evil.example").status == 403
    assert web.get("/", Host="localhost:9420").status == 200
