"""The HTTP driver against a real HTTP server implementing DPM semantics (tests/dpm_server.py).

The server runs in the test process on 127.0.0.1; the CLI and the service are
real subprocesses talking to it over loopback. Engine, CLI and service tests use
the shipped example (manifests/examples/http/reconciler.toml) with only the URL
and the timings changed, so the example is the mapping under test.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reconciler.config import load_config
from reconciler.drivers import Change
from reconciler.drivers.http import HttpDriver, HttpEnvironment
from reconciler.drivers.http.credentials import Credential, unresolved
from reconciler.drivers.http.mapping import HttpMapping
from reconciler.drivers.http.shape import Shape, merged_away
from reconciler.engine import Engine
from reconciler.errors import ConfigError, RetryableError, StallError
from reconciler.flows import CanonicalFlow, FlowInvalid, FlowKey, flow_from_doc
from reconciler.plan import Action
from tests.conftest import REPO_ROOT, Workspace, flow
from tests.dpm_server import DpmServer
from tests.servicekit import ServiceProcess, wait_for

TOKEN = "dpm-t0ken-7f3a"
EXAMPLE = REPO_ROOT / "manifests/examples/http/reconciler.toml"
ORDERS, BILLING = FlowKey("orders", "1.0"), FlowKey("billing", "1")


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def dpm() -> Iterator[DpmServer]:
    with DpmServer(TOKEN) as server:
        yield server


def mapping(url: str, **over: Any) -> HttpEnvironment:
    raw: dict[str, Any] = {
        "name": "production", "driver": "http", "url": url, "prune": True,
        "ignore": ["/exportedAt", "/revision"], "timeout": 2, "attempts": 3, "backoff": 0.01,
        "auth": {"env": "DPM_TOKEN"},
        "list": {"path": "/flows", "items": "/items", "next": "/next"},
        "export": {"path": "/flows/{name}/versions/{version}/export"},
        "import": {"path": "/flows/import", "flow": "/flow", "name": "/name", "version": "/version",
                   "override": {"query": "override"}},
        "delete": {"path": "/flows/{name}/versions/{version}"},
    }
    raw.update(over)
    return HttpEnvironment.model_validate(raw)


def driver(server: DpmServer, environ: dict[str, str] | None = None, **over: Any) -> HttpDriver:
    return HttpDriver(mapping(server.url, **over), environ={"DPM_TOKEN": TOKEN} if environ is None else environ)


def canon(d: HttpDriver, doc: dict) -> CanonicalFlow:
    got = flow_from_doc(json.loads(json.dumps(doc)), d.identity, d.rules, where="test")
    assert isinstance(got, CanonicalFlow), got
    return got


def use_example(ws: Workspace, server: DpmServer, drift: str = "restore", **tune: Any) -> None:
    """The shipped example pointed at the test server, with test timings."""
    text = EXAMPLE.read_text().replace("https://dpm.example.com/api/v1", server.url)
    text = text.replace('drift = "restore"', f'drift = "{drift}"')
    for key, value in {"timeout": 2, "attempts": 3, "backoff": 0.01, **tune}.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {json.dumps(value)}", text, count=1, flags=re.M)
        assert n == 1, key
    ws.config.write_text(text)
    ws.env_dir("acceptance").mkdir(parents=True, exist_ok=True)


def engine(ws: Workspace) -> Engine:
    return Engine(load_config(ws.config), create_repository=True)


def push(ws: Workspace, rel: str, mutate: Callable[[dict], None] | None) -> None:
    """A user edits env/production in a clone and pushes (mutate None deletes the file)."""
    clone = ws.root / "user"
    if clone.exists():
        ws.git("pull", "-q", cwd=clone)
    else:
        ws.clone("env/production", name="user")
    path = clone / rel
    if mutate is None:
        path.unlink()
    else:
        doc = json.loads(path.read_text()) if path.exists() else {}
        mutate(doc)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2))
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-q", "-m", f"edit {rel}", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)


def branch_file(ws: Workspace, ref: str, rel: str) -> dict:
    return json.loads(ws.git("show", f"{ref}:{rel}", cwd=ws.repo))


@pytest.fixture
def prod(ws: Workspace, dpm: DpmServer, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """acceptance (a folder) exported; env/production made from it and synced into the DPM."""
    monkeypatch.setenv("DPM_TOKEN", TOKEN)
    use_example(ws, dpm)
    ws.put("acceptance", "orders.json", flow("orders", "1.0"))
    ws.put("acceptance", "billing.json", flow("billing", "1"))
    engine(ws).export("acceptance")
    ws.git("branch", "env/production", "env/acceptance", cwd=ws.repo)
    out = engine(ws).sync("production")
    assert not out.failed and not out.problems
    assert dpm.keys() == {("orders", "1.0"), ("billing", "1")}
    return ws


# -- the mapping on its own (no server) -------------------------------------------------


def test_a_next_page_is_followed_on_the_same_origin_only() -> None:
    """The token must never travel to another host: a `next` link elsewhere stops the run."""
    m, url = HttpMapping(mapping("https://dpm.example.com/api/v1")), "https://dpm.example.com/api/v1/flows"
    page = m.page({"items": [{"name": "a"}], "next": "flows?page=2"}, url, "https://dpm.example.com")
    assert page.items == (({"name": "a"}, f"{url}#/items/0"),) and page.next == "/api/v1/flows?page=2"
    with pytest.raises(StallError, match=r"the next page is on another host \(evil\.example\); refused"):
        m.page({"items": [], "next": "https://evil.example/api/v1/flows?page=2"}, url, "https://dpm.example.com")


def test_the_import_puts_flow_name_and_override_at_their_pointers() -> None:
    """Nested pointers create the objects on the way; the name is one encoded segment of the path."""
    env = mapping("https://dpm.example.com/api/v1", **{"import": {
        "method": "PUT", "path": "/flows/{name}/{version}", "flow": "/spec/flow", "name": "/meta/name",
        "override": {"field": "/options/override"}}})
    req = HttpMapping(env).import_request(FlowKey("a/b", ".."), b'{"name":"a/b","version":".."}', True)
    assert (req.method, req.path) == ("PUT", "/flows/a%2Fb/%2E%2E")
    assert json.loads(req.body or b"") == {
        "spec": {"flow": {"name": "a/b", "version": ".."}}, "meta": {"name": "a/b"}, "options": {"override": True}}


# -- the driver on its own --------------------------------------------------------------


def test_export_fetches_each_listed_flow_in_canonical_form(dpm: DpmServer) -> None:
    """Summaries are listed, each flow exported; volatile fields set by the platform are dropped."""
    dpm.put(flow("orders", "1.0"))
    dpm.put(flow("billing", "1"))
    d = driver(dpm)
    live = d.export()
    assert set(live.flows) == {ORDERS, BILLING} and live.complete
    data = live.flows[ORDERS].data
    assert b"revision" not in data and b"exportedAt" not in data
    assert live.flows[ORDERS].oid == canon(d, flow("orders", "1.0")).oid
    assert dpm.count("GET", "/export") == 2


def test_a_new_flow_is_imported_with_override_off(dpm: DpmServer) -> None:
    """No pre-read for a new flow: the platform itself refuses a name+version that exists."""
    d = driver(dpm)
    assert d.apply([Change(ORDERS, canon(d, flow("orders", "1.0")).data, None)]) == {}
    assert dpm.get("orders", "1.0")["steps"][0]["id"] == "s1"
    (sent,) = [s for s in dpm.seen if s.method == "POST"]
    assert sent.query == {"override": ["false"]}
    assert (sent.body["name"], sent.body["version"], sent.body["flow"]["name"]) == ("orders", "1.0", "orders")
    assert sent.authorization == f"Bearer {TOKEN}"
    assert len(dpm.seen) == 1


def test_integers_beyond_64_bits_reach_the_platform_exactly(dpm: DpmServer) -> None:
    """The import body is written without losing digits (orjson would refuse such integers)."""
    d = driver(dpm)
    assert d.apply([Change(ORDERS, canon(d, flow("orders", "1.0", limit=2**70 + 1)).data, None)]) == {}
    assert dpm.get("orders", "1.0")["limit"] == 2**70 + 1
    assert d.export().flows[ORDERS].oid == canon(d, flow("orders", "1.0", limit=2**70 + 1)).oid


def test_a_changed_flow_replaces_the_same_name_and_version_with_override_on(dpm: DpmServer) -> None:
    """The live flow is re-read and compared with what the plan saw, then imported with override."""
    dpm.put(flow("orders", "1.0"))
    d = driver(dpm)
    seen = d.export().flows[ORDERS].oid
    assert d.apply([Change(ORDERS, canon(d, flow("orders", "1.0", retries=3)).data, seen)]) == {}
    assert dpm.get("orders", "1.0")["retries"] == 3
    assert dpm.seen[-1].query == {"override": ["true"]}


def test_a_flow_is_deleted_only_if_it_is_what_the_plan_saw(dpm: DpmServer) -> None:
    """Delete re-reads first; the flow is gone afterwards."""
    dpm.put(flow("orders", "1.0"))
    d = driver(dpm)
    seen = d.export().flows[ORDERS].oid
    assert d.apply([Change(ORDERS, None, seen)]) == {}
    assert dpm.keys() == set()


def test_the_read_after_write_check_reads_only_the_written_flows(dpm: DpmServer) -> None:
    """reread() costs one GET per flow, no listing; a missing flow is None."""
    dpm.put(flow("orders", "1.0"))
    dpm.put(flow("billing", "1"))
    d = driver(dpm)
    got = d.reread([ORDERS, FlowKey("gone", "1")])
    assert got == {ORDERS: canon(d, flow("orders", "1.0")).oid, FlowKey("gone", "1"): None}
    assert sorted(s.path.rsplit("/", 4)[1] for s in dpm.seen) == ["gone", "orders"]


def test_one_flow_is_loaded_with_one_export_request(dpm: DpmServer) -> None:
    """load() reads just that flow, in canonical form; a flow the platform does not hold is None."""
    dpm.put(flow("orders", "1.0"))
    d = driver(dpm)
    want, got = canon(d, flow("orders", "1.0")), d.load(ORDERS)
    assert got is not None and (got.oid, got.data) == (want.oid, want.data)
    assert d.load(FlowKey("gone", "1")) is None
    assert [s.path.rsplit("/", 4)[1] for s in dpm.seen] == ["orders", "gone"]


def test_without_an_export_route_a_flow_is_loaded_from_the_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    """list.full: load() reads the listing's pages and picks that flow out of them."""
    with DpmServer(TOKEN, list_full=True, page_size=2) as server:
        for i in range(3):
            server.put(flow(f"f{i}", "1"))
        d = driver(server, export=None, list={"path": "/flows", "items": "/items", "full": True, "next": "/next"})
        got = d.load(FlowKey("f2", "1"))
        assert got is not None and got.oid == canon(d, flow("f2", "1")).oid
        assert d.load(FlowKey("f9", "1")) is None
        assert server.count("GET", "/export") == 0


def test_names_with_spaces_slashes_and_unicode_are_percent_encoded(dpm: DpmServer) -> None:
    """Each name and version is exactly one URL segment; they round-trip through import, export and delete."""
    names = [("orders v2", "1.0"), ("team/a/b", "1/2"), ("Ünïcødé ✓", "β"), ("..", "."), ("100%?&=#", "1")]
    d = driver(dpm)
    changes = [Change(FlowKey(n, v), canon(d, flow(n, v)).data, None) for n, v in names]
    assert d.apply(changes) == {}
    assert dpm.keys() == set(names)
    live = d.export()
    assert set(live.flows) == {FlowKey(n, v) for n, v in names} and live.complete
    paths = {s.path for s in dpm.seen}
    assert "/api/v1/flows/team%2Fa%2Fb/versions/1%2F2/export" in paths
    assert "/api/v1/flows/orders%20v2/versions/1.0/export" in paths
    assert "/api/v1/flows/%C3%9Cn%C3%AFc%C3%B8d%C3%A9%20%E2%9C%93/versions/%CE%B2/export" in paths
    assert "/api/v1/flows/%2E%2E/versions/%2E/export" in paths
    assert "/api/v1/flows/100%25%3F%26%3D%23/versions/1/export" in paths
    assert d.apply([Change(k, None, f.oid) for k, f in live.flows.items()]) == {}
    assert dpm.keys() == set()


def test_full_listings_across_pages_and_an_override_field_in_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """list.full reads flows from the listing itself, following `next` links; override can be a body field."""
    with DpmServer(TOKEN, list_full=True, override_in="body", page_size=2) as server:
        for i in range(5):
            server.put(flow(f"f{i}", "1"))
        d = driver(server, export=None, list={"path": "/flows", "items": "/items", "full": True, "next": "/next"},
                   **{"import": {"path": "/flows/import", "flow": "/flow", "override": {"field": "/override"}}})
        live = d.export()
        assert len(live.flows) == 5 and server.count("GET", "/flows") == 3
        key = FlowKey("f0", "1")
        assert d.apply([Change(key, canon(d, flow("f0", "1", retries=1)).data, live.flows[key].oid)]) == {}
        assert server.get("f0", "1")["retries"] == 1
        assert server.seen[-1].body["override"] is True


# -- faults: retries, refusals, credentials ----------------------------------------------


def test_5xx_answers_are_retried_with_backoff_then_succeed(dpm: DpmServer) -> None:
    """Two 500s, then the listing works: three requests, no error."""
    dpm.put(flow("orders", "1.0"))
    dpm.fail_next(2)
    assert set(driver(dpm).export().flows) == {ORDERS}
    assert dpm.count("GET", "/api/v1/flows") - dpm.count("GET", "/export") == 3


def test_a_platform_that_keeps_failing_gives_a_retryable_error_naming_the_url(dpm: DpmServer) -> None:
    """After `attempts` tries the run stops with RetryableError (the service backs off): no storm."""
    dpm.fail_next(100, 503)
    with pytest.raises(RetryableError) as exc:
        driver(dpm).export()
    assert f"GET {dpm.url}/flows" in str(exc.value) and "503" in str(exc.value)
    assert "database is restarting" in str(exc.value)
    assert len(dpm.seen) == 3


def test_timeouts_are_retried_then_give_a_retryable_error(dpm: DpmServer) -> None:
    """A platform slower than `timeout` costs `attempts` bounded waits, then RetryableError."""
    dpm.slow_next(5, 3.0)
    started = time.monotonic()
    with pytest.raises(RetryableError, match=r"no answer within 0.25 s \(2 attempts\)"):
        driver(dpm, timeout=0.25, attempts=2).export()
    assert time.monotonic() - started < 2.0
    assert len(dpm.seen) == 2


def test_an_import_whose_answer_timed_out_but_landed_is_not_a_conflict(dpm: DpmServer) -> None:
    """The retry meets 409; the driver re-reads, finds exactly its flow, and counts it as done."""
    d = driver(dpm, timeout=0.3)
    dpm.slow_next(1, 2.0)  # the import is stored, its answer lost
    assert d.apply([Change(ORDERS, canon(d, flow("orders", "1.0")).data, None)]) == {}
    assert dpm.count("POST", "/import") == 2


def test_a_platform_down_during_apply_stops_the_batch(dpm: DpmServer) -> None:
    """A persistent 5xx on a write is not a per-flow failure repeated for every flow: the run stops."""
    d = driver(dpm)
    dpm.fail_next(100)
    changes = [Change(FlowKey(f"f{i}", "1"), canon(d, flow(f"f{i}", "1")).data, None) for i in range(10)]
    with pytest.raises(RetryableError, match=re.escape(f"POST {dpm.url}/flows/import?override=false")):
        d.apply(changes)
    assert len(dpm.seen) == 3


def test_a_missing_token_is_an_error_naming_the_variable(dpm: DpmServer) -> None:
    """Nothing is sent without the token; the message names $DPM_TOKEN."""
    with pytest.raises(StallError, match=r"\$DPM_TOKEN is not set"):
        driver(dpm, environ={}).export()
    assert dpm.seen == []


def test_a_wrong_token_is_an_error_naming_the_variable_never_the_token(dpm: DpmServer) -> None:
    """401 stops the run (no retries) with the platform's message and the variable's name."""
    with pytest.raises(StallError) as exc:
        driver(dpm, environ={"DPM_TOKEN": "not-the-right-one"}).export()
    msg = str(exc.value)
    assert "401" in msg and "invalid or missing token" in msg and "$DPM_TOKEN" in msg
    assert "not-the-right-one" not in msg
    assert len(dpm.seen) == 1


def test_mapping_mistakes_are_reported_one_line_each(tmp_path) -> None:
    """No export route, prune without delete, credentials in the URL, an unknown placeholder."""
    (tmp_path / "reconciler.toml").write_text(
        '[[environment]]\nname = "p"\ndriver = "http"\nurl = "https://me:pw@dpm.example.com"\nprune = true\n'
        '[environment.import]\npath = "/flows/{id}"\noverride = { query = "override" }\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "reconciler.toml")
    text = "\n".join(str(p) for p in exc.value.problems)
    assert len(exc.value.problems) == 4
    assert "environment[0].url" in text and "auth.env" in text
    assert "environment[0].export = None: required when list.full is false" in text
    assert "environment[0].delete = None: prune = true needs a delete endpoint" in text
    assert "environment[0].import.path" in text and "only {name} and {version}" in text


# -- through the engine ----------------------------------------------------------------------


def test_a_push_is_imported_and_verified(prod: Workspace, dpm: DpmServer) -> None:
    """A change landed in git replaces the flow in the DPM; the read-after-write check passes."""
    push(prod, "flows/orders/1.0.json", lambda d: d.update(retries=2))
    out = engine(prod).sync("production")
    assert not out.failed and [s.key for s in out.done] == [ORDERS]
    assert dpm.get("orders", "1.0")["retries"] == 2
    assert engine(prod).sync("production", dry_run=True).plan.changes == ()


def test_a_deletion_in_git_deletes_the_flow_when_prune_is_on(prod: Workspace, dpm: DpmServer) -> None:
    """prune = true in the example: git's deletion reaches the platform; the flow is kept on drift/."""
    push(prod, "flows/billing/1.json", None)
    out = engine(prod).sync("production")
    assert not out.failed
    assert dpm.keys() == {("orders", "1.0")}
    assert branch_file(prod, "drift/production", "flows/billing/1.json")["name"] == "billing"


def test_an_edit_in_the_platform_is_restored_and_saved_to_drift(prod: Workspace, dpm: DpmServer) -> None:
    """drift = restore: git's version goes back; the UI's version is kept on drift/production."""
    dpm.edit("orders", "1.0", lambda d: d["steps"][0]["config"].update(url="/from-the-ui"))
    out = engine(prod).sync("production")
    assert not out.failed and out.drift_commit
    assert dpm.get("orders", "1.0")["steps"][0]["config"]["url"] == "/orders"
    saved = branch_file(prod, "drift/production", "flows/orders/1.0.json")
    assert saved["steps"][0]["config"]["url"] == "/from-the-ui"


def test_an_edit_in_the_platform_is_adopted_into_git(prod: Workspace, dpm: DpmServer) -> None:
    """drift = adopt: the UI's version becomes a commit on env/production; nothing is written to the DPM."""
    use_example(prod, dpm, drift="adopt")
    dpm.edit("orders", "1.0", lambda d: d.update(owner="ui"))
    before = dpm.count("POST")
    out = engine(prod).sync("production")
    assert not out.failed and out.commit
    assert branch_file(prod, "env/production", "flows/orders/1.0.json")["owner"] == "ui"
    assert dpm.count("POST") == before


def test_a_flow_created_in_the_platform_meanwhile_is_reported_once_not_stormed(prod: Workspace, dpm: DpmServer) -> None:
    """409 "already exists" on an import without override is that flow's failure; the next run sees a conflict."""
    push(prod, "flows/fresh/1.json", lambda d: d.update(flow("fresh", "1")))
    dpm.create_after_list(flow("fresh", "1", owner="ui"))
    imports = dpm.count("POST", "/import")
    out = engine(prod).sync("production")
    assert "already exists" in out.failed[FlowKey("fresh", "1")]
    assert "turn Override on" in out.failed[FlowKey("fresh", "1")]  # the platform's own words
    assert dpm.get("fresh", "1")["owner"] == "ui"
    again = engine(prod).sync("production")
    assert next(s for s in again.plan.steps if s.key == FlowKey("fresh", "1")).action == Action.CONFLICT
    assert dpm.count("POST", "/import") == imports + 1


def test_a_flow_the_platform_refuses_is_reported_with_its_message(prod: Workspace, dpm: DpmServer) -> None:
    """400 is not retried; the platform's message is the flow's error; the other flows still sync."""
    push(prod, "flows/broken/1.json", lambda d: d.update(name="broken", version="1", steps=[]))
    push(prod, "flows/orders/1.0.json", lambda d: d.update(retries=2))
    out = engine(prod).sync("production")
    assert set(out.failed) == {FlowKey("broken", "1")}
    assert "400" in out.failed[FlowKey("broken", "1")]
    assert "'steps' must be a non-empty list" in out.failed[FlowKey("broken", "1")]
    assert dpm.get("orders", "1.0")["retries"] == 2
    assert dpm.count("POST", "/import") == 2 + 2  # the fixture's two, then one each


def test_a_flow_edited_between_export_and_import_is_not_clobbered(prod: Workspace, dpm: DpmServer) -> None:
    """The pre-write re-read sees the UI's edit: the flow is left as it is, and the next run sees a conflict."""
    push(prod, "flows/orders/1.0.json", lambda d: d.update(retries=2))
    dpm.edit_after_read("orders", "1.0", lambda d: d.update(owner="ui"))
    out = engine(prod).sync("production")
    assert "changed in the platform since it was read" in out.failed[ORDERS]
    now = dpm.get("orders", "1.0")
    assert now["owner"] == "ui" and "retries" not in now
    plan = engine(prod).sync("production", dry_run=True).plan
    assert next(s for s in plan.steps if s.key == ORDERS).action == Action.CONFLICT


def test_a_flow_edited_before_its_deletion_is_not_deleted(prod: Workspace, dpm: DpmServer) -> None:
    """Deletes carry the same precondition: an edit made meanwhile keeps the flow in the platform."""
    push(prod, "flows/billing/1.json", None)
    dpm.edit_after_read("billing", "1", lambda d: d.update(owner="ui"))
    out = engine(prod).sync("production")
    assert "changed in the platform since it was read" in out.failed[BILLING]
    assert dpm.get("billing", "1")["owner"] == "ui"
    assert dpm.count("DELETE") == 0


def test_a_listed_flow_that_cannot_be_exported_is_not_taken_for_a_deletion(prod: Workspace, dpm: DpmServer) -> None:
    """With drift = adopt, a 404 on one export must not remove the flow from git."""
    use_example(prod, dpm, drift="adopt")
    dpm.break_export("billing", "1")
    out = engine(prod).sync("production")
    assert any("404" in p.message and p.flow == "billing@1" for p in out.problems)
    assert next(s for s in out.plan.steps if s.key == BILLING).action == Action.UNKNOWN
    assert branch_file(prod, "env/production", "flows/billing/1.json")["name"] == "billing"


# -- end to end: the CLI and the service as subprocesses ----------------------------------------


def test_the_cli_promotes_acceptance_into_the_platform(ws: Workspace, dpm: DpmServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """export acceptance, branch production from it with git, `reconciler sync production` fills the DPM."""
    monkeypatch.setenv("DPM_TOKEN", TOKEN)
    use_example(ws, dpm)
    ws.put("acceptance", "orders.json", flow("orders", "1.0"))
    ws.put("acceptance", "eu.json", flow("billing/eu run", "2"))
    ws.cli("export", "acceptance", check=True)
    ws.git("branch", "env/production", "env/acceptance", cwd=ws.repo)
    assert ws.cli("plan", "production").returncode == 2
    dpm.fail_next(1)  # one 500 on the way: retried, logged, harmless
    proc = ws.cli("-v", "--log-format", "json", "sync", "production")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dpm.keys() == {("orders", "1.0"), ("billing/eu run", "2")}
    assert "platform request failed, retrying" in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    assert ws.cli("plan", "production").returncode == 0
    monkeypatch.setenv("DPM_TOKEN", "stale-token")
    proc = ws.cli("sync", "production")
    assert proc.returncode == 1 and "$DPM_TOKEN" in proc.stderr and "stale-token" not in proc.stderr


def test_the_service_lands_a_git_push_in_the_platform(ws: Workspace, dpm: DpmServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """`reconciler run`: the startup reconcile fills the DPM, then a push made with git reaches it."""
    monkeypatch.setenv("DPM_TOKEN", TOKEN)
    use_example(ws, dpm)
    text = ws.config.read_text().replace("concurrency = 4", "concurrency = 4\ninterval = 3600", 1)
    ws.config.write_text(text)
    ws.put("acceptance", "orders.json", flow("orders", "1.0"))
    ws.cli("export", "acceptance", check=True)
    ws.git("branch", "env/production", "env/acceptance", cwd=ws.repo)
    with ServiceProcess(ws.config, env={"DPM_TOKEN": TOKEN}) as svc:
        wait_for(lambda: dpm.get("orders", "1.0"), what="the startup reconcile to import orders")
        wait_for(lambda: svc.runs("production") >= 1, what="the startup run to be recorded")
        push(ws, "flows/orders/1.0.json", lambda d: d["steps"][0]["config"].update(url="/orders/v2"))
        wait_for(lambda: (dpm.get("orders", "1.0") or {})["steps"][0]["config"]["url"] == "/orders/v2",
                 what="the push to land in the DPM")
        wait_for(lambda: svc.status("production")["result"] == "ok", what="the run to be recorded as ok")
        assert not any(TOKEN in line for line in svc.raw)


# -- the newer keys: ids, cursors, shape, credentials, a fixed version (pure, or the DPM server) -----------


def n8n_like(url: str, **over: Any) -> HttpEnvironment:
    """A mapping in the shape of the n8n example: ids, create/update routes, a cursor, fields, defaults."""
    raw: dict[str, Any] = {
        "name": "production", "driver": "http", "url": url, "prune": True,
        "identity": {"name": "/name", "fixed_version": "1"},
        "fields": ["/name", "/nodes", "/connections", "/settings"],
        "defaults": {"/settings/callerPolicy": "workflowsFromSameOwner", "/settings/availableInMCP": False},
        "list": {"path": "/workflows?limit=250", "items": "/data", "full": True, "id": "/id",
                 "cursor": {"from": "/nextCursor", "param": "cursor"}, "name_query": "name"},
        "export": {"path": "/workflows/{id}"},
        "create": {"path": "/workflows"},
        "update": {"path": "/workflows/{id}", "merged": ["/settings"]},
        "delete": {"path": "/workflows/{id}"},
    }
    raw.update(over)
    return HttpEnvironment.model_validate(raw)


def config_problems(tmp_path, body: str) -> str:
    (tmp_path / "reconciler.toml").write_text('[[environment]]\nname = "p"\ndriver = "http"\n'
                                              'url = "https://n8n.example.com/api/v1"\n' + body)
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "reconciler.toml")
    return "\n".join(str(p) for p in exc.value.problems)


def test_a_cursor_is_sent_back_on_the_first_request_as_a_query_parameter() -> None:
    """nextCursor becomes ?cursor= on the listing's first path (its limit kept); null ends the listing."""
    m, url = HttpMapping(n8n_like("https://n8n.example.com/api/v1")), "https://n8n.example.com/api/v1/workflows"
    first = "/api/v1/workflows?limit=250"
    page = m.page({"data": [{"id": "a"}], "nextCursor": "eyJvZmZzZXQiOjI1MH0="}, url, "https://n8n.example.com", first)
    assert page.next == "/api/v1/workflows?limit=250&cursor=eyJvZmZzZXQiOjI1MH0%3D"
    assert m.page({"data": [], "nextCursor": None}, url, "https://n8n.example.com", first).next is None
    assert m.listing("orders / EU") == "/workflows?limit=250&name=orders%20%2F%20EU"


def test_updates_and_deletes_address_the_platforms_id_in_place() -> None:
    """{id} fills the update and delete paths; the body is the flow alone, no Override switch anywhere."""
    m = HttpMapping(n8n_like("https://n8n.example.com/api/v1"))
    key, data = FlowKey("orders", "1"), b'{"name": "orders", "nodes": []}'
    update = m.update_request(key, data, "Ab3/x")
    assert (update.method, update.path, json.loads(update.body or b"")) == (
        "PUT", "/workflows/Ab3%2Fx", {"name": "orders", "nodes": []})
    assert (m.create_request(key, data).method, m.create_request(key, data).path) == ("POST", "/workflows")
    delete = m.delete_request(key, "Ab3")
    assert delete is not None and (delete.method, delete.path) == ("DELETE", "/workflows/Ab3")


def test_an_id_in_a_path_needs_list_id(tmp_path) -> None:
    """{id} comes from the listing: without list.id the config says so, at the route naming it."""
    text = config_problems(tmp_path, '[environment.list]\nfull = true\n[environment.export]\npath = "/w/{id}"\n'
                           '[environment.create]\npath = "/w"\n[environment.update]\npath = "/w/{id}"\n')
    assert "environment[0].export = " in text and "environment[0].update = " in text
    assert text.count("its path names {id}: set list.id") == 2


def test_writes_need_an_import_or_both_create_and_update(tmp_path) -> None:
    """A create route alone says nothing about replacing a flow; an import without Override cannot replace one."""
    text = config_problems(tmp_path, '[environment.list]\nfull = true\n[environment.create]\npath = "/w"\n')
    assert "set [environment.import], or both [environment.create] and [environment.update]" in text
    text = config_problems(tmp_path, '[environment.list]\nfull = true\n[environment.import]\npath = "/w"\n')
    assert "import.override is required without [environment.update]" in text


def test_a_fixed_version_names_a_flow_by_its_name_alone(tmp_path) -> None:
    """identity.fixed_version: the document carries no version; set_key keeps it out; both ways at once is refused."""
    ident = n8n_like("https://n8n.example.com/api/v1").flow_identity
    assert ident.key_of({"name": "orders", "version": "7"}) == FlowKey("orders", "1")
    doc: dict[str, Any] = {"name": "old"}
    ident.set_key(doc, FlowKey("new", "1"))
    assert doc == {"name": "new"}
    with pytest.raises(FlowInvalid, match="every flow here has version 1"):
        ident.set_key(doc, FlowKey("new", "2"))
    text = config_problems(tmp_path, 'identity = { name = "/name", version = "/v", fixed_version = "1" }\n')
    assert "set version (a pointer) or fixed_version, not both" in text


def test_fields_and_defaults_shape_what_is_read() -> None:
    """Only the allow-listed fields stay, and a value equal to its default is left out (so is `false`, not `0`)."""
    shape = Shape(("/name", "/settings"), {"/settings/callerPolicy": "workflowsFromSameOwner", "/settings/on": False})
    live = {"name": "a", "id": "X1", "active": True,
            "settings": {"callerPolicy": "workflowsFromSameOwner", "on": 0, "timezone": "UTC"}}
    assert shape.normal(live) == {"name": "a", "settings": {"on": 0, "timezone": "UTC"}}
    assert live["settings"]["callerPolicy"] == "workflowsFromSameOwner"  # the input is left as it was


def test_a_document_the_shape_would_change_is_named_pointer_by_pointer() -> None:
    """A field outside the allow-list or a default written out could never read back as written."""
    shape = Shape(("/name", "/settings/timezone"), {"/settings/timezone": "DEFAULT"})
    got = dict(shape.misfits({"name": "a", "id": 1, "settings": {"timezone": "DEFAULT", "x": 1}}))
    assert set(got) == {"/id", "/settings/x", "/settings/timezone"}
    assert "not one of the environment's fields" in got["/id"] and "leave it out" in got["/settings/timezone"]
    assert merged_away({"settings": {"a": 1, "b": 2}}, {"settings": {"a": 3}}, ("/settings",)) == ["/settings/b"]


def test_credential_references_must_name_exactly_one_credential_of_that_type() -> None:
    """Missing, shared by two, or an id of another type: each named with its node, type and name."""
    route = n8n_like("https://n8n.example.com/api/v1", credentials={"path": "/rest/credentials"}).credentials
    assert route is not None
    held = [Credential("c1", "ERP token", "httpHeaderAuth"), Credential("c2", "Mail", "smtp"),
            Credential("c3", "Mail", "smtp")]

    def uses(**refs: dict) -> dict:
        return {"nodes": [{"name": "Notify ERP", "credentials": refs}, {"name": "Start"}]}

    assert unresolved(uses(httpHeaderAuth={"name": "ERP token"}), held, route, "production") == []
    assert unresolved(uses(httpHeaderAuth={"id": "gone", "name": "ERP token"}), held, route, "production") == []
    (missing,) = unresolved(uses(httpHeaderAuth={"name": "CRM token"}), held, route, "production")
    assert missing.startswith("node 'Notify ERP' uses credential httpHeaderAuth 'CRM token', which production "
                              "does not have")
    (shared,) = unresolved(uses(smtp={"name": "Mail"}), held, route, "production")
    assert "production has 2 smtp credentials of that name (ids c2, c3)" in shared
    (typed,) = unresolved(uses(smtp={"id": "c1", "name": "ERP token"}), held, route, "production")
    assert "id c1 in production is a httpHeaderAuth credential" in typed


class _ShiftingServer(DpmServer):
    """An offset-paged listing whose first flow is deleted right after a first page is served (``times``
    times): the next page then starts one flow later, and a flow is skipped."""

    def __init__(self, *args: Any, times: int, **kw: Any):
        super().__init__(*args, **kw)
        self.times = times

    def _list(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        status, answer = super()._list(query)
        if self.times and query.get("page", ["1"]) == ["1"] and self.flows:
            self.times -= 1
            self.flows.pop(sorted(self.flows)[0])
        return status, answer


def _shifting(times: int, recheck: bool) -> tuple[_ShiftingServer, HttpDriver]:
    server = _ShiftingServer(TOKEN, list_full=True, page_size=2, times=times)
    for i in range(5):
        server.put(flow(f"f{i}", "1"))
    d = driver(server, export=None, list={"path": "/flows", "items": "/items", "full": True, "next": "/next",
                                         "recheck": recheck})
    return server, d


def test_a_flow_deleted_between_two_pages_does_not_hide_the_next_one() -> None:
    """recheck: the listing is read again until two passes agree; the flow the shift skipped is there."""
    server, d = _shifting(times=1, recheck=True)
    with server:
        live = d.export()
    assert set(live.flows) == {FlowKey(f"f{i}", "1") for i in range(1, 5)} and live.complete


def test_a_listing_that_never_settles_makes_the_live_set_incomplete() -> None:
    """Deleted between pages on every pass: what was read is kept, and absence proves nothing."""
    server, d = _shifting(times=100, recheck=True)
    with server:
        live = d.export()
    assert not live.complete
    assert any("the listing changed each of the 4 times it was read" in p.message for p in live.problems)
