"""The real service, started as a subprocess on a loopback port.

Tests wait on the service's own signals (its status API, its log lines, files
appearing) with deadlines; no fixed sleeps. Drift-check intervals are an hour,
so anything that happens fast was caused by a watch, a webhook or the API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import statistics
import time
from pathlib import Path

import pytest

from tests.conftest import Workspace, flow, flow_files
from tests.servicekit import ServiceProcess, wait_for

SECRET, TOKEN = "s3cret-webhook-0123456789", "t0ken-api-0123456789"
ENV = {"RECONCILER_WEBHOOK_SECRET": SECRET, "RECONCILER_API_TOKEN": TOKEN}


@pytest.fixture
def ws2(ws: Workspace) -> Workspace:
    """acceptance (adopt) and production (restore, prune), production's branch made from acceptance's."""
    ws.add_env("acceptance", drift="adopt", interval=3600)
    ws.add_env("production", drift="restore", prune=True, interval=3600)
    ws.put("acceptance", "orders.json", flow("orders", "1.0"))
    ws.put("acceptance", "billing.json", flow("billing", "1"))
    ws.cli("export", "acceptance", check=True)
    ws.git("branch", "env/production", "env/acceptance", cwd=ws.repo)
    return ws


@pytest.fixture
def svc(ws2: Workspace):
    with ServiceProcess(ws2.config, env=ENV) as s:
        wait_for(lambda: s.runs("production") >= 1 and s.runs("acceptance") >= 1, what="the startup reconcile")
        yield s


def orders_url(ws: Workspace, env: str = "production") -> str | None:
    docs = ws.live(env)
    doc = docs.get(("orders", "1.0"))
    return doc["steps"][0]["config"]["url"] if doc else None


def push_url(ws: Workspace, clone: Path, url: str) -> float:
    path = clone / "flows/orders/1.0.json"
    doc = json.loads(path.read_text())
    doc["steps"][0]["config"]["url"] = url
    path.write_text(json.dumps(doc, indent=2) + "\n")
    ws.git("commit", "-q", "-am", f"orders: {url}", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    return time.monotonic()


def test_the_startup_reconcile_makes_the_service_ready(ws2: Workspace, svc: ServiceProcess) -> None:
    """/healthz answers at once; /readyz once every environment was reconciled; production got the flows."""
    assert svc.request("GET", "/healthz") == (200, {"status": "ok"})
    assert svc.request("GET", "/readyz")[0] == 200
    assert set(ws2.live("production")) == {("orders", "1.0"), ("billing", "1")}


def test_a_git_push_lands_in_the_environment_well_under_a_second(ws2: Workspace, svc: ServiceProcess) -> None:
    """A push made with the git CLI reaches the production folder through the ref watch."""
    clone = ws2.clone("env/production")
    latencies = []
    for i in range(5):
        pushed = push_url(ws2, clone, f"/orders/v{i}")
        wait_for(lambda: orders_url(ws2) == f"/orders/v{i}", timeout=10, interval=0.005, what="the push to land")
        latencies.append(time.monotonic() - pushed)
    median = statistics.median(latencies)
    print(f"push-to-folder latency: median {median * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    assert median < 1.0
    # The file appears before the run finishes recording; wait for the record.
    wait_for(lambda: svc.metric("reconciler_commit_to_applied_seconds_count", environment="production") >= 5,
             what="every push's latency to be recorded")


def test_an_edit_in_the_watched_folder_is_restored_without_waiting_for_the_interval(ws2: Workspace, svc: ServiceProcess) -> None:
    """Drift in production is restored by the folder watch (interval is an hour) and counted in /metrics."""
    path = ws2.env_dir("production") / "orders@1.0.json"
    doc = json.loads(path.read_text())
    doc["steps"][0]["config"]["url"] = "/edited-in-the-ui"
    path.write_text(json.dumps(doc))
    wait_for(lambda: orders_url(ws2) == "/orders", what="the drift to be restored")
    assert "/edited-in-the-ui" in ws2.git("show", "drift/production:flows/orders/1.0.json", cwd=ws2.repo)
    wait_for(lambda: svc.metric("reconciler_drift_events_total", environment="production", action="restored") >= 1,
             what="the restore to be counted")


def test_an_edit_in_an_adopting_environment_becomes_a_commit(ws2: Workspace, svc: ServiceProcess) -> None:
    """Drift in acceptance (adopt) is committed to env/acceptance by the folder watch."""
    ws2.put("acceptance", "orders.json", flow("orders", "1.0", owner="ui"))
    wait_for(lambda: '"owner": "ui"' in ws2.git("show", "env/acceptance:flows/orders/1.0.json", cwd=ws2.repo),
             what="the adopt commit")
    wait_for(lambda: svc.metric("reconciler_drift_events_total", environment="acceptance", action="adopted") >= 1,
             what="the adopt to be counted")


def _github(body: bytes, secret: str = SECRET) -> dict[str, str]:
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": sig, "X-GitHub-Event": "push", "Content-Type": "application/json"}


def test_a_webhook_with_a_bad_signature_is_refused_and_does_nothing(svc: ServiceProcess) -> None:
    """Wrong or missing signatures get 401 and trigger no reconcile."""
    body = json.dumps({"ref": "refs/heads/env/production"}).encode()
    # the startup sync wrote production's flows: the folder watch's request for that comes first
    wait_for(lambda: svc.metric("reconciler_triggers_total", environment="production", source="folder") >= 1,
             what="the folder event of the startup sync")
    before = svc.metric("reconciler_triggers_total", environment="production")
    assert svc.request("POST", "/hooks/git", body, _github(body, "wrong"))[0] == 401
    assert svc.request("POST", "/hooks/git", body, {"Content-Type": "application/json"})[0] == 401
    assert svc.request("POST", "/hooks/git", body, {"X-Gitlab-Token": "nope"})[0] == 401
    assert svc.metric("reconciler_triggers_total", environment="production") == before


def test_a_signed_webhook_triggers_a_reconcile_of_the_branch(svc: ServiceProcess) -> None:
    """GitHub and GitLab push events with the right secret reconcile the environments on that branch."""
    runs = svc.runs("production")
    body = json.dumps({"ref": "refs/heads/env/production", "after": "0" * 40}).encode()
    code, answer = svc.request("POST", "/hooks/git", body, _github(body))
    assert (code, answer) == (202, {"environments": ["production"]})
    wait_for(lambda: svc.runs("production") > runs, what="the webhook's reconcile")
    code, answer = svc.request("POST", "/hooks/git", body, {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Push Hook"})
    assert (code, answer) == (202, {"environments": ["production"]})


def test_the_sync_endpoint_needs_the_bearer_token(svc: ServiceProcess) -> None:
    """Without or with a wrong token: 401 and nothing queued; with it: 202 and a reconcile."""
    path = "/api/v1/environments/production/sync"
    runs = svc.runs("production")
    assert svc.request("POST", path)[0] == 401
    assert svc.request("POST", path, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert svc.metric("reconciler_triggers_total", environment="production", source="api") == 0
    code, _ = svc.request("POST", path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert code == 202
    wait_for(lambda: svc.runs("production") > runs, what="the API's reconcile")
    assert svc.request("POST", "/api/v1/environments/staging/sync", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 404


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("GET", "/nope", {}, None, 404),
        ("DELETE", "/api/v1/status", {}, None, 405),
        ("POST", "/healthz", {}, b"", 405),
        ("GET", "/hooks/git", {}, None, 405),
        ("POST", "/hooks/git", {"Content-Length": "abc"}, None, 400),
        ("POST", "/hooks/git", {}, b"x" * 2_000_000, 413),
        ("POST", "/hooks/git", {"X-Gitlab-Token": SECRET}, b"{not json", 400),
        ("POST", "/hooks/git", {"X-Gitlab-Token": SECRET}, b'{"ref": 5}', 400),
        ("GET", "/api/v1/environments/../../etc/passwd/sync", {}, None, 404),
    ],
    ids=["unknown-path", "bad-method", "post-to-get-endpoint", "get-to-post-endpoint", "bad-content-length",
         "oversized-body", "webhook-not-json", "webhook-ref-not-string", "traversal-path"],
)
def test_malformed_requests_get_a_json_error_not_a_crash(svc: ServiceProcess, method, path, headers, body, status) -> None:
    """Bad paths, methods, lengths and payloads get 4xx with a JSON error; the service stays up."""
    code, answer = svc.request(method, path, body, headers)
    assert code == status
    assert isinstance(answer, dict) and answer["status"] == status
    assert svc.request("GET", "/healthz")[0] == 200


def test_sigterm_stops_the_service_with_exit_code_0(ws2: Workspace) -> None:
    """SIGTERM lets the current step finish and exits 0 within the grace period."""
    s = ServiceProcess(ws2.config, env=ENV)
    try:
        wait_for(lambda: s.runs("production") >= 1, what="the startup reconcile")
        started = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(30) == 0
        assert time.monotonic() - started < 30
        assert s.find("service stopped", clean=True)
    finally:
        s.kill()


def test_two_shards_split_the_environments_exactly(ws: Workspace) -> None:
    """With --shard 0/2 and 1/2 on one config, every environment is handled by exactly one replica."""
    names = [f"team{i}" for i in range(8)]
    for n in names:
        ws.add_env(n, interval=3600)
    ws.init_repo()
    owned = []
    for shard in ("0/2", "1/2"):
        with ServiceProcess(ws.config, "--shard", shard) as s:
            code, body = s.request("GET", "/api/v1/status")
            assert body["shard"] == shard
            owned.append({e["name"] for e in body["environments"]})
    assert owned[0].isdisjoint(owned[1])
    assert owned[0] | owned[1] == set(names)
    assert owned[0] and owned[1]


def test_the_shard_can_come_from_a_statefulset_hostname(ws: Workspace) -> None:
    """RECONCILER_SHARD=I/N is honoured like --shard."""
    for n in ("a", "b", "c", "d"):
        ws.add_env(n, interval=3600)
    ws.init_repo()
    with ServiceProcess(ws.config, env={"RECONCILER_SHARD": "1/2"}) as s:
        assert s.request("GET", "/api/v1/status")[1]["shard"] == "1/2"


def test_kill_9_during_a_big_sync_then_restart_converges_with_nothing_lost_or_imported_twice(ws: Workspace) -> None:
    """A crash mid-sync is repaired by the next start: every flow once, none imported again."""
    n = 1500
    ws.add_env("acceptance", drift="adopt", interval=3600)
    ws.add_env("production", drift="restore", prune=True, interval=3600)
    for i in range(n):
        ws.put("acceptance", f"f{i}.json", flow(f"flow-{i:04d}", "1", payload="x" * 2000))
    ws.cli("export", "acceptance", check=True)
    ws.git("branch", "env/production", "env/acceptance", cwd=ws.repo)
    prod = ws.env_dir("production")
    first = ServiceProcess(ws.config)
    try:
        # Kill once the batch is being written: temporary files or renamed flows exist.
        wait_for(lambda: any(prod.iterdir()), timeout=60, interval=0.001, what="the sync to start writing")
        first.proc.kill()
        first.proc.wait(10)
    finally:
        first.kill()
    survived = {p.name for p in flow_files(prod)}
    assert len(survived) < n, "the sync finished before the kill; the test proves nothing"
    with ServiceProcess(ws.config) as second:
        wait_for(lambda: second.status("production")["counts"].get("in_sync") == n, timeout=90, what="convergence")
        imported = {e["flow"] for e in second.find("flow reconciled", environment="production", action="import")}
        advanced = {e["flow"] for e in second.find("flow reconciled", environment="production", action="advance")}
    files = sorted(prod.iterdir())
    assert [p for p in files if not p.name.endswith(".json")] == []  # no temp files left behind
    assert len(files) == n
    assert {json.loads(p.read_text())["name"] for p in files} == {f"flow-{i:04d}" for i in range(n)}
    assert len(imported) == n - len(survived)
    assert len(advanced) == len(survived)


def test_a_platform_that_is_down_is_retried_with_backoff_and_delays_only_its_environment(ws: Workspace) -> None:
    """An unreachable environment backs off (status says so); the other keeps syncing; it converges when back."""
    ws.add_env("acceptance", drift="adopt", interval=3600)
    ws.add_env("broken", interval=3600)
    ws.write_config('\n[server]\nretry_base = 0.2\nretry_max = 0.8\n')
    ws.put("acceptance", "b.json", flow("billing"))
    ws.cli("export", "acceptance", check=True)
    ws.branch("env/broken", "env/acceptance")
    folder = ws.env_dir("broken")
    folder.rmdir()
    folder.write_text("this is a file, not a folder")  # the 'platform' is unusable
    with ServiceProcess(ws.config) as s:
        wait_for(lambda: s.status("broken")["failures"] >= 3, what="several retries")
        st = s.status("broken")
        assert st["result"] == "retry" and "is not a folder" in st["error"]
        assert 0 < st["retry_in"] <= 0.8
        ws.put("acceptance", "o.json", flow("orders"))
        wait_for(lambda: "flows/orders/1.0.json" in ws.git("ls-tree", "-r", "--name-only", "env/acceptance", cwd=ws.repo, check=False),
                 what="the healthy environment to sync meanwhile")
        folder.unlink()
        folder.mkdir()
        wait_for(lambda: s.status("broken")["result"] == "ok", what="the environment to recover")
        assert s.status("broken")["failures"] == 0


def test_an_invalid_flow_stalls_without_a_retry_storm_while_the_rest_syncs(ws2: Workspace, svc: ServiceProcess) -> None:
    """A broken file pushed to git is refused and logged once; other flows in the same push still land."""
    clone = ws2.clone("env/production")
    (clone / "flows/orders/1.0.json").write_text("{broken")
    billing = clone / "flows/billing/1.json"
    billing.write_text(billing.read_text().replace('"/billing"', '"/billing/v2"'))
    ws2.git("commit", "-q", "-am", "break orders, change billing", cwd=clone)
    ws2.git("push", "-q", "origin", "env/production", cwd=clone)
    wait_for(lambda: ws2.live("production")[("billing", "1")]["steps"][0]["config"]["url"] == "/billing/v2",
             what="the valid flow to land")
    wait_for(lambda: svc.status("production")["result"] == "error", what="the invalid flow to be reported")
    runs = svc.runs("production")
    assert svc.status("production")["retry_in"] is None  # not retried on its own
    for _ in range(3):
        svc.request("POST", "/api/v1/environments/production/sync", headers={"Authorization": f"Bearer {TOKEN}"})
    wait_for(lambda: svc.runs("production") >= runs + 1, what="the requested checks")
    problems = svc.find("flow problem", environment="production")
    assert len([p for p in problems if "orders/1.0.json" in p["problem"]]) == 1
    assert orders_url(ws2) == "/orders"


def test_metrics_cover_runs_flows_drift_imports_and_latency(svc: ServiceProcess) -> None:
    """Every documented metric family is exported."""
    _, text = svc.request("GET", "/metrics")
    for name in ("reconciler_reconcile_runs_total", "reconciler_reconcile_duration_seconds_bucket", "reconciler_flows",
                 "reconciler_flow_imports_total", "reconciler_last_success_timestamp_seconds",
                 "reconciler_commit_to_applied_seconds_bucket", "reconciler_triggers_total", "reconciler_build_info",
                 "reconciler_git_fetch_failures_total", "reconciler_drift_events"):
        assert name in text, name
    assert svc.metric("reconciler_flows", environment="production", state="in_sync") == 2
