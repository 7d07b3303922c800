"""A git server in front of the local repository: fetch, integrate, push (real repositories)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from reconciler.errors import StallError
from reconciler.flows import FlowKey
from reconciler.gitstore import GitStore
from reconciler.remote import Remote
from tests.conftest import Workspace, flow, git_env
from tests.servicekit import ServiceProcess, wait_for

SECRET = "hook-secret-0123456789"


def _server(ws: Workspace) -> Path:
    server = ws.root / "server.git"
    ws.git("init", "-q", "--bare", str(server))
    return server


def test_integrate_fast_forwards_to_the_remote(ws: Workspace) -> None:
    """A push to the server reaches the local branch after fetch + integrate."""
    server = _server(ws)
    local = GitStore(ws.repo, author_name="Bot", author_email="bot@x")
    c1 = local.commit_changes("env/p", None, "flows", {FlowKey("a", "1"): b"{}\n"}, "one")
    remote = Remote(local, str(server))
    remote.publish("p", "env/p")
    clone = ws.root / "c"
    ws.git("clone", "-q", "-b", "env/p", str(server), str(clone))
    (clone / "flows/a/1.json").write_text('{"v": 2}\n')
    ws.git("commit", "-q", "-am", "two", cwd=clone)
    ws.git("push", "-q", "origin", "env/p", cwd=clone)
    remote.fetch()
    got = remote.integrate("p", "env/p")
    assert got.action == "fast-forward" and local.tip("env/p") != c1
    assert local.read_blob(local.flows_at(local.tip("env/p"), "flows").flows[FlowKey("a", "1")]) == b'{"v": 2}\n'


def test_crossed_commits_are_merged_never_forced(ws: Workspace) -> None:
    """An adopt commit and a push to different flows are merged; both survive; the push is not overwritten."""
    server = _server(ws)
    local = GitStore(ws.repo, author_name="Bot", author_email="bot@x")
    base = local.commit_changes("env/p", None, "flows", {FlowKey("a", "1"): b"a1\n", FlowKey("b", "1"): b"b1\n"}, "base")
    remote = Remote(local, str(server))
    remote.publish("p", "env/p")
    local.commit_changes("env/p", base, "flows", {FlowKey("a", "1"): b"a2 (adopted)\n"}, "adopt a")
    clone = ws.root / "c"
    ws.git("clone", "-q", "-b", "env/p", str(server), str(clone))
    (clone / "flows/b/1.json").write_text("b2 (pushed)\n")
    ws.git("commit", "-q", "-am", "push b", cwd=clone)
    ws.git("push", "-q", "origin", "env/p", cwd=clone)
    remote.fetch()
    assert remote.integrate("p", "env/p").action == "merge"
    assert remote.publish("p", "env/p") == []
    ws.git("pull", "-q", "--no-edit", cwd=clone)
    assert (clone / "flows/a/1.json").read_text() == "a2 (adopted)\n"
    assert (clone / "flows/b/1.json").read_text() == "b2 (pushed)\n"


def test_conflicting_crossed_commits_stop_with_a_clear_error(ws: Workspace) -> None:
    """When the adopt and the push changed the same flow, nothing is merged or pushed."""
    server = _server(ws)
    local = GitStore(ws.repo, author_name="Bot", author_email="bot@x")
    base = local.commit_changes("env/p", None, "flows", {FlowKey("a", "1"): b"a1\n"}, "base")
    remote = Remote(local, str(server))
    remote.publish("p", "env/p")
    mine = local.commit_changes("env/p", base, "flows", {FlowKey("a", "1"): b"mine\n"}, "adopt")
    clone = ws.root / "c"
    ws.git("clone", "-q", "-b", "env/p", str(server), str(clone))
    (clone / "flows/a/1.json").write_text("theirs\n")
    ws.git("commit", "-q", "-am", "push", cwd=clone)
    ws.git("push", "-q", "origin", "env/p", cwd=clone)
    remote.fetch()
    with pytest.raises(StallError, match="flows/a/1.json"):
        remote.integrate("p", "env/p")
    assert local.tip("env/p") == mine
    assert ws.git("show", "env/p:flows/a/1.json", cwd=server) == "theirs\n"


def test_the_service_follows_a_remote_through_webhooks_and_pushes_its_commits(ws: Workspace) -> None:
    """Push to the server + webhook -> production updated; drift adopted in acceptance -> pushed to the server."""
    server = _server(ws)
    ws.add_env("acceptance", drift="adopt", interval=3600)
    ws.add_env("production", drift="restore", interval=3600)
    ws.write_config()
    ws.config.write_text(ws.config.read_text().replace(
        '[repository]\npath = "state/flows.git"', '[repository]\npath = "state/flows.git"\nremote = "server.git"\nfetch_interval = 3600'))
    ws.put("acceptance", "o.json", flow("orders", "1.0"))
    ws.cli("export", "acceptance", check=True)  # the first export creates the branch (the service never does)
    with ServiceProcess(ws.config, env={"RECONCILER_WEBHOOK_SECRET": SECRET}) as svc:
        wait_for(lambda: "env/acceptance" in ws.git("branch", "--list", cwd=server), what="the export to be pushed")
        clone = ws.root / "c"
        ws.git("clone", "-q", "-b", "env/acceptance", str(server), str(clone))
        ws.git("checkout", "-q", "-b", "env/production", cwd=clone)
        ws.git("push", "-q", "origin", "env/production", cwd=clone)
        body = json.dumps({"ref": "refs/heads/env/production"}).encode()
        sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert svc.request("POST", "/hooks/git", body, {"X-Hub-Signature-256": sig})[0] == 202
        wait_for(lambda: ("orders", "1.0") in ws.live("production"), what="the pushed branch to be synced")
        ws.put("acceptance", "o.json", flow("orders", "1.0", owner="ui"))
        wait_for(lambda: "owner" in ws.git("show", "env/acceptance:flows/orders/1.0.json", cwd=server),
                 what="the adopt commit to reach the server")
        wait_for(lambda: ws.git("rev-parse", "refs/reconciler/applied/production", cwd=server, check=False).strip(),
                 what="the marker to be published")
    ws.git("fsck", "--strict", cwd=server)


def test_an_unreachable_remote_is_retried_and_counted(ws: Workspace) -> None:
    """A remote that does not exist: the service keeps running, counts fetch failures and says so."""
    ws.add_env("production", interval=3600)
    ws.config.write_text(ws.config.read_text().replace(
        '[repository]\npath = "state/flows.git"', '[repository]\npath = "state/flows.git"\nremote = "nowhere.git"'))
    with ServiceProcess(ws.config) as svc:
        wait_for(lambda: svc.metric("reconciler_git_fetch_failures_total") >= 1, what="a counted fetch failure")
        assert svc.request("GET", "/healthz")[0] == 200
        wait_for(lambda: svc.find("fetch failed"), what="the failure to be logged")
    assert git_env  # the git CLI environment helper is shared with other tests
