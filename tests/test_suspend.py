"""Suspend and resume, and sync windows, with the real service and the real command line.

The service runs as a subprocess on loopback; a person plays git with the `git` CLI. A
suspension is kept at refs/reconciler/suspend/<env>: every process, a restarted service and a
second replica (through the remote) see it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Workspace, flow
from tests.servicekit import ServiceProcess, wait_for
from tests.test_service import ENV, TOKEN, orders_url, push_url

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@pytest.fixture
def ws2(ws: Workspace) -> Workspace:
    ws.add_env("acceptance", drift="adopt", interval=3600)
    ws.add_env("production", drift="restore", prune=True, interval=3600)
    ws.put("acceptance", "orders.json", flow("orders", "1.0"))
    ws.cli("export", "acceptance", check=True)
    ws.git("branch", "env/production", "env/acceptance", cwd=ws.repo)
    return ws


def _post(svc: ServiceProcess, path: str, body: dict | None = None, headers: dict | None = None):
    return svc.request("POST", path, json.dumps(body or {}).encode(), AUTH if headers is None else headers)


def _settled(svc: ServiceProcess, env: str, after: int) -> dict:
    """The status once a run after ``after`` runs has finished."""
    return wait_for(lambda: (st := svc.status(env))["runs"] > after and not st["running"] and st, what="a run")


def test_suspended_through_the_api_a_push_is_recorded_not_applied_and_resume_applies_it(ws2: Workspace) -> None:
    with ServiceProcess(ws2.config, env=ENV) as svc:
        wait_for(lambda: orders_url(ws2) == "/orders", what="the startup sync")
        code, body = _post(svc, "/api/v1/environments/production/suspend", {"reason": "incident 42", "by": "ops"})
        assert code == 200 and body["changed"] and body["suspension"]["environment"]["reason"] == "incident 42"
        runs = svc.runs("production")
        clone = ws2.clone("env/production")
        push_url(ws2, clone, "/orders/v2")
        tip = ws2.git("rev-parse", "env/production", cwd=ws2.repo).strip()
        st = wait_for(lambda: (s := svc.status("production"))["branch_tip"] == tip and not s["running"]
                      and s["runs"] > runs and s, what="the push to be seen")
        assert orders_url(ws2) == "/orders"  # recorded, not applied
        assert st["suspended"].startswith("suspended since ") and "by ops: incident 42" in st["suspended"]
        assert st["counts"]["suspended"] == 1 and st["applied"] != tip
        # The command line sees it too: plan shows it held, sync holds it (exit 4), status says why.
        plan = ws2.cli("plan", "production")
        assert plan.returncode == 2 and "held" in plan.stdout and "incident 42" in plan.stdout
        status = ws2.cli("status", "production")
        assert "suspended since" in status.stdout and "incident 42" in status.stdout
        code, body = _post(svc, "/api/v1/environments/production/resume")
        assert code == 200 and body["suspension"] is None
        wait_for(lambda: orders_url(ws2) == "/orders/v2", what="the resume to apply what was pending")
        st = wait_for(lambda: (s := svc.status("production"))["applied"] == tip and s, what="the marker")
        assert st["suspended"] is None


def test_suspend_and_resume_from_the_command_line_reach_the_running_service(ws2: Workspace) -> None:
    with ServiceProcess(ws2.config, env=ENV) as svc:
        wait_for(lambda: orders_url(ws2) == "/orders", what="the startup sync")
        runs = svc.runs("production")
        out = ws2.cli("suspend", "production", "--reason", "freeze", check=True)
        assert "suspended since" in out.stdout and "freeze" in out.stdout
        wait_for(lambda: svc.status("production")["suspended"], what="the service to see the suspension")
        assert svc.runs("production") > runs
        push_url(ws2, ws2.clone("env/production"), "/orders/v3")
        tip = ws2.git("rev-parse", "env/production", cwd=ws2.repo).strip()
        wait_for(lambda: svc.status("production")["branch_tip"] == tip, what="the push to be seen")
        assert orders_url(ws2) == "/orders"
        sync = ws2.cli("sync", "production")
        assert sync.returncode == 4 and "held back, nothing changed: suspended since" in sync.stdout
        assert orders_url(ws2) == "/orders"
        ws2.cli("resume", "production", check=True)
        wait_for(lambda: orders_url(ws2) == "/orders/v3", what="the resume to be applied by the service")


def test_a_restarted_service_keeps_the_suspension(ws2: Workspace) -> None:
    ws2.cli("sync", "production", check=True)
    ws2.cli("suspend", "production", "--reason", "until the audit", "--by", "auditor", check=True)
    push_url(ws2, ws2.clone("env/production"), "/orders/v4")
    for _ in range(2):  # a first service, then a restart
        with ServiceProcess(ws2.config, env=ENV) as svc:
            st = _settled(svc, "production", 0)
            assert "by auditor: until the audit" in (st["suspended"] or "")
            assert orders_url(ws2) == "/orders"
            assert svc.terminate() == 0
    ws2.cli("resume", "production", check=True)
    assert ws2.cli("sync", "production").returncode == 0 and orders_url(ws2) == "/orders/v4"


def test_suspending_one_flow_holds_only_that_flow(ws2: Workspace) -> None:
    ws2.put("acceptance", "billing.json", flow("billing", "1"))
    ws2.cli("export", "acceptance", check=True)
    ws2.git("branch", "-f", "env/production", "env/acceptance", cwd=ws2.repo)
    ws2.cli("suspend", "production", "--flow", "billing", "--reason", "vendor outage", check=True)
    out = ws2.cli("sync", "production")
    assert out.returncode == 0, out.stdout + out.stderr
    assert ("orders", "1.0") in ws2.live("production") and ("billing", "1") not in ws2.live("production")
    assert "vendor outage" in out.stdout
    ws2.cli("resume", "production", "--flow", "billing", check=True)
    ws2.cli("sync", "production", check=True)
    assert ("billing", "1") in ws2.live("production")


def test_a_second_replica_sees_the_suspension_through_the_remote(ws: Workspace) -> None:
    """Replica A's command line suspends production (pushed to the server); replica B, with its own
    local repository and folder, fetches it and holds a push back."""
    server = ws.root / "server.git"
    ws.git("init", "-q", "--bare", "-b", "main", str(server))
    seed = ws.root / "seed"
    ws.git("init", "-q", "-b", "env/production", str(seed))
    (seed / "flows/orders").mkdir(parents=True)
    (seed / "flows/orders/1.0.json").write_text(json.dumps(flow("orders", "1.0"), indent=2) + "\n")
    ws.git("add", "-A", cwd=seed)
    ws.git("commit", "-qm", "orders", cwd=seed)
    ws.git("push", "-q", str(server), "env/production", cwd=seed)

    def replica(name: str) -> Path:
        root = ws.root / name
        (root / "envs/production").mkdir(parents=True)
        (root / "reconciler.toml").write_text(
            f'[repository]\npath = "state.git"\nremote = "{server}"\nfetch_interval = 3600\n\n'
            '[[environment]]\nname = "production"\ndriver = "directory"\npath = "envs/production"\n'
            'drift = "restore"\ninterval = 3600\nignore = ["/exportedAt"]\n')
        return root / "reconciler.toml"

    a, b = replica("a"), replica("b")
    cli_a = ws.cli("--config", str(a), "suspend", "production", "--reason", "change freeze", "--by", "alice")
    assert cli_a.returncode == 0 and "pushed to" in cli_a.stdout, cli_a.stdout + cli_a.stderr
    assert ws.git("rev-parse", "refs/reconciler/suspend/production", cwd=server, check=False).strip()
    with ServiceProcess(b, env=ENV) as svc:
        st = _settled(svc, "production", 0)
        assert "by alice: change freeze" in (st["suspended"] or "")
        assert not list((b.parent / "envs/production").glob("*.json"))  # nothing imported
        code, _ = _post(svc, "/api/v1/environments/production/resume")
        assert code == 200
        wait_for(lambda: list((b.parent / "envs/production").glob("*.json")), what="B to apply after the resume")
    # The resume went to the server: replica A's next suspension builds on it.
    resumed = ws.cli("--config", str(a), "status", "production")
    assert "suspended" not in resumed.stdout.split("\n", 1)[-1]


@pytest.mark.parametrize("path,body,headers,status", [
    ("/api/v1/environments/production/suspend", {}, {}, 401),
    ("/api/v1/environments/production/suspend", {}, {"Authorization": "Bearer wrong-token-0123456789"}, 401),
    ("/api/v1/environments/nope/suspend", {}, None, 404),
    ("/api/v1/environments/production/suspend", {"flows": "orders"}, None, 400),
    ("/api/v1/environments/production/suspend", {"flows": ["bad@"]}, None, 400),
    ("/api/v1/environments/production/suspend", {"reason": 5}, None, 400),
    ("/api/v1/environments/production/suspend", {"until": "never"}, None, 400),
    ("/api/v1/environments/production/suspend", [1, 2], None, 400),
])
def test_the_suspension_endpoints_refuse_what_they_cannot_take(ws2: Workspace, path, body, headers, status) -> None:
    with ServiceProcess(ws2.config, env=ENV) as svc:
        code, answer = _post(svc, path, body, headers)
        assert code == status and answer["error"]
        assert ws2.git("for-each-ref", "refs/reconciler/suspend", cwd=ws2.repo).strip() == ""


def test_a_non_json_suspension_body_is_a_400(ws2: Workspace) -> None:
    with ServiceProcess(ws2.config, env=ENV) as svc:
        code, answer = svc.request("POST", "/api/v1/environments/production/suspend", b"{not json", AUTH)
        assert code == 400 and "not JSON" in answer["error"]


# -- sync windows, end to end -------------------------------------------------------------------

def _windows(ws: Workspace, *windows: str) -> None:
    ws.write_config()
    text = ws.config.read_text()
    block = "".join(f"\n[[environment.window]]\n{w}\n" for w in windows)
    marker = 'name = "production"'
    head, tail = text.split(marker, 1)
    env_block, sep, rest = tail.partition("\n[[environment]]")
    ws.config.write_text(head + marker + env_block + block + (sep + rest if sep else ""))


def test_outside_its_window_a_cli_sync_refuses_and_says_how_to_force(ws2: Workspace) -> None:
    # A deny window that is always active (every minute, for a day), manual syncs allowed.
    _windows(ws2, 'kind = "deny"\nschedule = "* * * * *"\nduration = "1d"\nmanual = true')
    out = ws2.cli("sync", "production")
    assert out.returncode == 4 and ("orders", "1.0") not in ws2.live("production")
    assert "inside the deny window" in out.stderr and "reconciler sync production --force" in out.stderr
    assert "sync window closed" in ws2.cli("status", "production").stdout
    assert ws2.cli("plan", "production").returncode == 2  # planning is never refused
    forced = ws2.cli("sync", "production", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert ("orders", "1.0") in ws2.live("production")


def test_a_window_without_manual_refuses_even_force(ws2: Workspace) -> None:
    _windows(ws2, 'kind = "allow"\nschedule = "0 0 30 12 *"\nduration = "1m"\ntimezone = "Pacific/Kiritimati"')
    out = ws2.cli("sync", "production", "--force")
    assert out.returncode == 4 and "no manual sync is allowed" in out.stderr and "they open 20" in out.stderr
    assert ("orders", "1.0") not in ws2.live("production")


def test_the_service_plans_outside_its_window_and_reports_when_it_opens(ws2: Workspace) -> None:
    _windows(ws2, 'kind = "deny"\nschedule = "* * * * *"\nduration = "1d"\nname = "freeze"')
    with ServiceProcess(ws2.config, env=ENV) as svc:
        st = _settled(svc, "production", 0)
        assert st["window"]["open"] is False and "freeze" in st["window"]["why"] and st["window"]["opens"] is None
        assert ("orders", "1.0") not in ws2.live("production") and st["counts"]["pending"] == 1
        # An API sync is a manual one: refused here too (manual = false).
        runs = st["runs"]
        assert _post(svc, "/api/v1/environments/production/sync")[0] == 202
        _settled(svc, "production", runs)
        assert ("orders", "1.0") not in ws2.live("production")


@pytest.mark.parametrize("window,message", [
    ('kind = "sometimes"\nschedule = "* * * * *"\nduration = "1h"', "kind"),
    ('kind = "allow"\nschedule = "every day"\nduration = "1h"', "five-field"),
    ('kind = "allow"\nschedule = "0 0 30 2 *"\nduration = "1h"', "never fires"),
    ('kind = "allow"\nschedule = "0 9 * * *"\nduration = "soon"', "duration"),
    ('kind = "allow"\nschedule = "0 9 * * *"\nduration = "1h"\ntimezone = "Mars/Base"', "IANA"),
    ('kind = "allow"\nschedule = "0 9 * * *"\nduration = "1h"\nmanaul = true', "manaul"),
])
def test_a_bad_window_is_a_config_error_naming_it(ws2: Workspace, window: str, message: str) -> None:
    _windows(ws2, window)
    out = ws2.cli("sync", "production")
    assert out.returncode == 1 and "invalid configuration" in out.stderr and message in out.stderr, out.stderr
    assert "window" in out.stderr
