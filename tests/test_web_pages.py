"""What each page of the status page shows, read from the real server in-process (a Service over real git
and directory environments; runs made in the test's thread, so every page is read after a known run)."""

from __future__ import annotations

import re

import pytest

from reconciler.web.views import flow_url
from tests.conftest import Workspace, flow
from tests.webkit import ACC_SECRET, PROD_SECRET, Web, drift, main_of, site, text_of


@pytest.fixture
def web(ws: Workspace):
    site(ws)
    w = Web(ws)
    w.reconcile()
    yield w
    w.close()


def test_the_overview_lists_every_environment_with_its_tip_applied_marker_counts_and_last_result(web: Web) -> None:
    page = web.get("/")
    assert page.status == 200 and page.header("Content-Type").startswith("text/html")
    text = text_of(main_of(page.text))
    store = web.service.store
    for env, branch in (("acceptance", "env/acceptance"), ("production", "env/production")):
        row = text_of(re.search(rf'<tr id="env-{env}".*?</tr>', page.text, re.S).group(0))
        tip = store.tip(branch)
        assert tip[:10] in row and store.subject(tip) in row and "flow-reconciler" in row  # id, subject, author
        assert store.marker(env)[:10] in row and "= tip" in row
        assert "in sync 2" in row and "ok" in row and "ago" in row
    assert "Nothing needs a person: 2 environments in order." in text


def test_the_overview_says_which_environment_needs_a_person_and_why(web: Web, ws: Workspace) -> None:
    drift(ws, "production", "billing", "2", lambda d: d["steps"][0]["config"].update(url="/edited"))
    web.reconcile("production")
    page = web.get("/")
    attention = text_of(re.search(r'<section class="attention".*?</section>', page.text, re.S).group(0))
    assert attention == "Needs a person production: 1 drifted"
    assert '<tr id="env-production" class="needs">' in page.text
    assert "drifted 1" in text_of(re.search(r'<tr id="env-production".*?</tr>', page.text, re.S).group(0))


def test_an_environment_page_lists_its_flows_with_state_applied_version_and_links(web: Web, ws: Workspace) -> None:
    drift(ws, "production", "billing", "2", lambda d: d["steps"][0]["config"].update(url="/edited"))
    web.reconcile("production")
    page = web.get("/environments/production")
    flows = re.search(r'<table class="flows".*?</table>', page.text, re.S).group(0)
    rows = {text_of(r.split("</td>")[0]): text_of(r) for r in re.findall(r"<tr class=\"st-.*?</tr>", flows, re.S)}
    assert rows["billing"].startswith("billing 2 drifted")
    assert "changed in the environment; drift policy is report" in rows["billing"]
    assert rows["orders"] == "orders 1.0 in sync git's version"
    assert f'href="{flow_url("production", "billing", "2")}"' in flows


def test_an_environment_page_filters_flows_by_state(web: Web, ws: Workspace) -> None:
    drift(ws, "production", "billing", "2", lambda d: d["steps"][0]["config"].update(url="/edited"))
    web.reconcile("production")
    flows = re.search(r'<table class="flows".*?</table>', web.get("/environments/production?state=drifted").text, re.S)
    assert ">billing<" in flows.group(0) and ">orders<" not in flows.group(0)
    filters = text_of(re.search(r'<p class="filters".*?</p>', web.get("/environments/production").text, re.S).group(0))
    assert filters.startswith("all · in sync 1 · pending 0 · drifted 1 · conflict 0 · invalid 0")
    nothing = web.get("/environments/production?state=conflict").text
    assert "No flows in state conflict." in text_of(nothing)


def test_an_environment_page_shows_the_branch_history(web: Web, ws: Workspace) -> None:
    page = text_of(re.search(r'<table class="history" id="history".*?</table>',
                             web.get("/environments/acceptance").text, re.S).group(0))
    info = web.service.store.commit_info(web.service.store.tip("env/acceptance"))
    assert info.id[:10] in page and info.author in page and info.message.splitlines()[0] in page


def test_an_environment_page_shows_what_was_saved_to_its_drift_branch(ws: Workspace) -> None:
    site(ws, production_drift="restore")
    web = Web(ws)
    try:
        web.reconcile()
        drift(ws, "production", "billing", "2", lambda d: d["steps"][0]["config"].update(url="/overwritten"))
        web.reconcile("production")
        saved = text_of(re.search(r'<table class="history" id="drift".*?</table>',
                                  web.get("/environments/production").text, re.S).group(0))
        assert "drift(production): save live flows before overwriting them" in saved
        assert "billing@2 (changed in the environment; restoring git's version)" in saved
        assert "ago" in saved
    finally:
        web.close()


def test_a_flow_page_shows_the_flow_as_git_holds_it_with_placeholders_and_no_secret(web: Web) -> None:
    page = web.get(flow_url("production", "orders", "1.0"))
    assert page.status == 200
    document = text_of(re.search(r'<pre class="json">(.*?)</pre>', page.text, re.S).group(1))
    assert '"password": "***"' in document and '"url": "/orders"' in document
    assert ACC_SECRET not in page.text and PROD_SECRET not in page.text and "${secret:db}" not in page.text


def test_a_flow_page_shows_the_semantic_diff_of_its_last_change_by_json_pointer(web: Web, ws: Workspace) -> None:
    drift(ws, "acceptance", "orders", "1.0", lambda d: d["steps"][1]["config"].update(expr="payload.total * 2"))
    web.reconcile("acceptance")  # adopted: a new commit on env/acceptance
    page = web.get(flow_url("acceptance", "orders", "1.0"))
    diff = text_of(re.search(r'<section id="diff">.*?</section>', page.text, re.S).group(0))
    assert "steps: 1 changed (s2)" in diff
    assert '/steps/1/config/expr "payload.total * 1.2" → "payload.total * 2"' in diff


def test_a_flow_page_diffs_any_two_of_its_commits(web: Web, ws: Workspace) -> None:
    for expr in ("a", "b"):
        drift(ws, "acceptance", "orders", "1.0", lambda d, e=expr: d["steps"][1]["config"].update(expr=e))
        web.reconcile("acceptance")
    history = web.service.store.history("env/acceptance", "flows/orders/1.0.json")
    assert len(history) == 3
    page = web.get(flow_url("acceptance", "orders", "1.0") + f"?from={history[2].id}&to={history[0].id}")
    diff = text_of(re.search(r'<section id="diff">.*?</section>', page.text, re.S).group(0))
    assert '/steps/1/config/expr "payload.total * 1.2" → "b"' in diff
    assert f'<option value="{history[2].id}" selected>' in page.text
    first = web.get(flow_url("acceptance", "orders", "1.0") + f"?from=&to={history[2].id}")
    assert "steps: 2 added (s1, s2)" in text_of(first.text)


def test_layout_only_changes_are_folded_apart_from_the_real_ones(ws: Workspace) -> None:
    nodes = {"name": "canvas", "version": "1", "tab": {"id": "t1", "type": "tab"},  # a Node-RED flow: its layout is x, y, w, h
             "nodes": [{"id": "n1", "type": "inject", "x": 10, "y": 20, "topic": "a"}]}
    site(ws, extra_flows=(nodes,))
    web = Web(ws)
    try:
        web.reconcile()
        drift(ws, "acceptance", "canvas", "1", lambda d: d["nodes"][0].update(x=300, y=400, topic="b"))
        web.reconcile("acceptance")
        page = web.get(flow_url("acceptance", "canvas", "1"))
        diff = re.search(r'<section id="diff">.*?</section>', page.text, re.S).group(0)
        assert "2 layout-only changes (x, y): folded" in text_of(diff)
        layout = re.search(r'<details id="cmp-layout" class="group layout">.*?</details>', diff, re.S).group(0)
        assert "/nodes/0/x" in layout and "/nodes/0/y" in layout and "topic" not in layout
        real = re.search(r'<details open id="cmp-g1".*?</details>', diff, re.S).group(0)
        assert "/nodes/0/topic" in real and "/nodes/0/x" not in real
    finally:
        web.close()


def test_a_drifted_flow_page_shows_what_differs_now_without_the_secret(web: Web, ws: Workspace) -> None:
    def edit(doc):
        doc["steps"][0]["config"]["url"] = "/edited-in-production"
        doc["steps"][1]["config"]["note"] = f"copied {PROD_SECRET} here"

    drift(ws, "production", "orders", "1.0", edit)
    web.reconcile("production")
    page = web.get(flow_url("production", "orders", "1.0"))
    now = text_of(re.search(r'<section class="now".*?</section>', page.text, re.S).group(0))
    assert '/steps/0/config/url "/orders" → "/edited-in-production"' in now
    assert '/steps/1/config/note + "copied *** here"' in now
    assert "password" not in now  # the same secret on both sides: no difference
    assert PROD_SECRET not in page.text and ACC_SECRET not in page.text


def test_an_unknown_environment_or_flow_is_a_404_page(web: Web) -> None:
    assert web.get("/environments/staging").status == 404
    assert web.get("/environments/production/flows/nope/1").status == 200  # a flow git never had: an empty page
    bad = web.get("/environments/production/flows/~BAD/1")
    assert bad.status == 404 and "not a flow" in text_of(bad.text)
    assert web.get("/environments/production/flows/%ff/1").status == 404


def test_a_name_that_looks_like_a_path_stays_one_segment_of_its_address(ws: Workspace) -> None:
    site(ws, extra_flows=(flow("..", "a/b"),))
    web = Web(ws)
    try:
        web.reconcile()
        url = flow_url("production", "..", "a/b")
        assert url == "/environments/production/flows/~../~a%252Fb"
        page = web.get(url)
        assert page.status == 200 and "version a/b in production" in text_of(page.text)
    finally:
        web.close()


def test_the_api_endpoints_answer_as_before(web: Web) -> None:
    assert web.get("/healthz").text.strip().startswith("{")
    assert web.get("/nope").status == 404 and '"error"' in web.get("/nope").text
    assert web.get("/api/v1/status").status == 200


def test_a_page_that_fails_answers_500_and_the_server_stays_up(web: Web, monkeypatch) -> None:
    import reconciler.web.app as app

    def broken(*_a, **_k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(app, "overview", broken)
    got = web.get("/")
    assert got.status == 500 and "This page failed" in got.text and "a bug" not in got.text
    assert web.get("/environments/production").status == 200
