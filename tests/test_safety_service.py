"""The running service tells the truth (issue 11): a rewrite on the git server is followed, a
folder or repository that goes and comes back is noticed, the HTTP server keeps its promises on a
real socket, and read-only commands answer while the service is busy."""

from __future__ import annotations

import json
import shutil
import socket
import time

from tests.conftest import Workspace, flow, flow_files
from tests.servicekit import ServiceProcess, wait_for

TOKEN = "t0ken-api-0123456789"


def _server(ws: Workspace):
    """A real second bare repository as the git server; the service's own repository is its copy."""
    server = ws.root / "server.git"
    ws.git("init", "-q", "--bare", "-b", "main", str(server))
    return server


def _with_remote(ws: Workspace) -> None:
    ws.config.write_text(ws.config.read_text().replace(
        '[repository]\npath = "state/flows.git"',
        '[repository]\npath = "state/flows.git"\nremote = "server.git"\nfetch_interval = 0.5'))


def _clone_server(ws: Workspace, server, branch: str, name: str):
    dest = ws.root / name
    ws.git("clone", "-q", "-b", branch, str(server), str(dest))
    return dest


def test_a_force_push_on_the_server_is_followed_and_never_pushed_over(ws: Workspace) -> None:
    """`git push -f origin HEAD~1:env/production`: production goes back, what it held is on drift/, the
    old tip is not pushed back, the rewrite is logged, counted and shown in the status."""
    server = _server(ws)
    ws.add_env("production", drift="restore", interval=3600)
    work = ws.root / "seed"
    ws.git("init", "-q", "-b", "env/production", str(work))
    (work / "flows" / "orders").mkdir(parents=True)
    (work / "flows" / "orders" / "1.0.json").write_text(json.dumps(flow("orders", note="v1"), indent=2))
    ws.git("add", "-A", cwd=work)
    ws.git("commit", "-q", "-m", "v1", cwd=work)
    ws.git("push", "-q", str(server), "env/production", cwd=work)
    _with_remote(ws)
    with ServiceProcess(ws.config, env={"RECONCILER_API_TOKEN": TOKEN}) as svc:
        wait_for(lambda: "v1" in ws.live("production").get(("orders", "1.0"), {}).get("note", ""), what="v1 synced")
        clone = _clone_server(ws, server, "env/production", "user")
        path = clone / "flows/orders/1.0.json"
        path.write_text(path.read_text().replace('"v1"', '"v2"'))
        ws.git("commit", "-q", "-am", "v2", cwd=clone)
        ws.git("push", "-q", "origin", "env/production", cwd=clone)
        wait_for(lambda: ws.live("production")[("orders", "1.0")].get("note") == "v2", what="v2 synced")
        # The rollback on the server, by force-push.
        ws.git("push", "-q", "-f", "origin", "HEAD~1:env/production", cwd=clone)
        wait_for(lambda: ws.live("production")[("orders", "1.0")].get("note") == "v1", what="the rewrite followed")
        wait_for(lambda: svc.find("branch rewritten on the server; following it"), what="the rewrite logged")
        wait_for(lambda: svc.status("production")["rewritten"], what="the status to say so")
        assert svc.metric("reconciler_branch_rewrites_total", environment="production") == 1
        time.sleep(1.5)  # a few fetch rounds: nothing pushes the old tip back
    v1 = ws.git("rev-parse", "HEAD~1", cwd=clone).strip()
    assert ws.git("rev-parse", "env/production", cwd=server).strip() == v1
    assert '"v2"' in ws.git("show", "drift/production:flows/orders/1.0.json", cwd=server)


def test_unpublished_adopts_are_reapplied_on_a_rewritten_branch(ws: Workspace) -> None:
    """A rewrite that crosses the reconciler's own commit: the commit is re-applied on the new tip."""
    from reconciler.config import load_config
    from reconciler.gitstore import GitStore
    from reconciler.remote import Remote

    server = _server(ws)
    ws.add_env("acceptance", drift="adopt", interval=3600)
    ws.put("acceptance", "o.json", flow("orders"))
    ws.put("acceptance", "b.json", flow("billing"))
    ws.cli("export", "acceptance", check=True)
    ws.git("push", "-q", str(server), "env/acceptance", cwd=ws.repo)
    config = load_config(ws.config)
    store = GitStore.from_config(config.repository)
    remote = Remote(store, str(server))
    remote.fetch()
    assert remote.integrate("acceptance", "env/acceptance").action == "none"
    # On the server: someone rewrites history (a new root commit with billing changed).
    clone = _clone_server(ws, server, "env/acceptance", "user")
    path = clone / "flows/billing/1.0.json"
    path.write_text(path.read_text().replace('"/billing"', '"/billing/v9"'))
    ws.git("commit", "-q", "--amend", "-am", "rewritten", cwd=clone)
    ws.git("push", "-q", "-f", "origin", "env/acceptance", cwd=clone)
    # Locally, an adopt the server never got.
    ws.put("acceptance", "o.json", flow("orders", owner="ui"))
    ws.cli("sync", "acceptance", check=True)
    remote.fetch()
    got = remote.integrate("acceptance", "env/acceptance")
    assert got.action == "rewritten" and got.previous is not None
    assert '"owner": "ui"' in ws.git("show", "env/acceptance:flows/orders/1.0.json", cwd=ws.repo)
    assert "/billing/v9" in ws.git("show", "env/acceptance:flows/billing/1.0.json", cwd=ws.repo)
    server_tip = ws.git("rev-parse", "env/acceptance", cwd=server).strip()
    assert ws.git("merge-base", "--is-ancestor", server_tip, "env/acceptance", cwd=ws.repo, check=False) == ""
    assert ws.git("rev-parse", "refs/reconciler/rewritten/acceptance", cwd=ws.repo).strip() == got.previous


def test_a_branch_deleted_on_the_server_stops_the_environment_and_is_not_pushed_back(ws: Workspace) -> None:
    server = _server(ws)
    ws.add_env("production", drift="restore", prune=True, interval=3600)
    ws.put("production", "o.json", flow("orders"))
    ws.cli("export", "production", check=True)
    _with_remote(ws)
    with ServiceProcess(ws.config) as svc:
        wait_for(lambda: "env/production" in ws.git("branch", "--list", cwd=server), what="the branch published")
        ws.git("push", "-q", str(server), ":env/production", cwd=ws.repo)
        wait_for(lambda: "deleted on the server" in (svc.status("production")["error"] or ""), what="the error")
        time.sleep(1.5)
        assert "env/production" not in ws.git("branch", "--list", cwd=server)
    assert len(flow_files(ws.env_dir("production"))) == 1


def test_a_folder_deleted_and_restored_is_watched_again(ws: Workspace) -> None:
    """The folder goes (error, logged), comes back from a 'backup' (logged with the gap); then a UI edit
    is restored within seconds again, long before the hourly drift check."""
    ws.add_env("production", drift="restore", interval=3600)
    ws.put("production", "o.json", flow("orders"))
    ws.cli("export", "production", check=True)
    folder = ws.env_dir("production")
    with ServiceProcess(ws.config) as svc:
        wait_for(lambda: svc.runs("production") >= 1, what="the first run")
        backup = ws.root / "backup"
        shutil.copytree(folder, backup)
        shutil.rmtree(folder)
        wait_for(lambda: svc.find("environment folder disappeared; not watched until it is back"), what="the gap")
        wait_for(lambda: "does not exist" in (svc.status("production")["error"] or ""), what="the folder error")
        backup.rename(folder)
        wait_for(lambda: svc.find("environment folder came back; watching it again"), what="the watch to resume")
        wait_for(lambda: svc.status("production")["result"] == "ok", what="the environment to recover")
        (folder / "o.json").write_text(json.dumps(flow("orders", note="ui-edit")))
        wait_for(lambda: "note" not in json.loads((folder / "o.json").read_text()), timeout=10,
                 what="the edit to be restored by the watch")


def test_a_repository_moved_away_turns_readyz_503_and_back(ws: Workspace) -> None:
    """The reason names the path; no 'internal error'; moved back, the environment syncs again."""
    ws.add_env("production", drift="restore", interval=3600)
    ws.put("production", "o.json", flow("orders"))
    ws.cli("export", "production", check=True)
    with ServiceProcess(ws.config, env={"RECONCILER_API_TOKEN": TOKEN}) as svc:
        wait_for(lambda: svc.request("GET", "/readyz")[0] == 200, what="ready")
        moved = ws.root / "moved.git"
        ws.repo.rename(moved)
        code, body = svc.request("GET", "/readyz")
        assert code == 503 and any(str(ws.repo) in r for r in body["reasons"]), body
        svc.request("POST", "/api/v1/environments/production/sync", b"", {"Authorization": f"Bearer {TOKEN}"})
        wait_for(lambda: "the git repository is gone" in (svc.status("production")["error"] or ""),
                 what="the environment's error to name the repository")
        assert str(ws.repo) in svc.status("production")["error"]
        moved.rename(ws.repo)
        wait_for(lambda: svc.request("GET", "/readyz")[0] == 200, what="ready again")
        (ws.env_dir("production") / "o.json").write_text(json.dumps(flow("orders", note="x")))
        svc.request("POST", "/api/v1/environments/production/sync", b"", {"Authorization": f"Bearer {TOKEN}"})
        wait_for(lambda: svc.status("production")["result"] == "ok" and svc.status("production")["runs"] >= 3,
                 what="a run after the repository came back")
        assert not any("internal error" in line for line in svc.raw)


# -- the HTTP server on a real socket --------------------------------------------------------------


def _raw(url: str, data: bytes, *, read: bool = True, timeout: float = 10) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        if not read:
            return b""
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def _json_error(answer: bytes, status: int) -> dict:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()) or head.startswith(f"HTTP/1.0 {status} ".encode()), answer[:200]
    assert b"content-type: application/json" in head.lower()
    doc = json.loads(body)
    assert doc["status"] == status
    return doc


def test_malformed_requests_get_json_errors_with_a_status_line(ws: Workspace) -> None:
    ws.add_env("production", interval=3600)
    ws.init_repo()
    with ServiceProcess(ws.config) as svc:
        for method in (b"TRACE", b"CONNECT", b"FOO"):
            doc = _json_error(_raw(svc.url, method + b" /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), 405)
            assert "not allowed" in doc["error"]
        _json_error(_raw(svc.url, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"), 431)
        _json_error(_raw(svc.url, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"), 400)
        _json_error(_raw(svc.url, b"GET /healthz\r\n\r\n"), 400)  # HTTP/0.9
        doc = _json_error(_raw(svc.url, "POST /hooks/git HTTP/1.1\r\nContent-Length: ²\r\n\r\n".encode()), 400)
        assert "Content-Length" in doc["error"]
        _json_error(_raw(svc.url, b"POST /hooks/git HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx"), 400)
        assert svc.request("GET", "/healthz")[0] == 200  # still up
        assert not any("Traceback" in line for line in svc.raw)


def test_a_client_trickling_a_request_is_cut_off_at_the_deadline(ws: Workspace) -> None:
    """A header byte every 0.3 s does not keep the connection past request_timeout (here 1.5 s)."""
    ws.add_env("production", interval=3600)
    ws.init_repo()
    ws.write_config("\n[server]\nrequest_timeout = 1.5\n")
    with ServiceProcess(ws.config) as svc:
        host, port = svc.url.removeprefix("http://").split(":")
        started = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            answer = b""
            try:
                for _ in range(100):
                    s.sendall(b"X")
                    time.sleep(0.3)
                    s.setblocking(False)
                    try:
                        got = s.recv(65536)
                        if got == b"":
                            break
                        answer += got
                    except BlockingIOError:
                        pass
                    finally:
                        s.setblocking(True)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed
    assert answer.startswith(b"HTTP/1.1 408") or answer == b"", answer[:100]


def test_the_api_says_an_environment_is_unknown_and_times_are_rfc3339(ws: Workspace) -> None:
    ws.add_env("production", interval=3600)
    ws.put("production", "o.json", flow("orders"))
    ws.cli("export", "production", check=True)
    with ServiceProcess(ws.config, env={"RECONCILER_API_TOKEN": TOKEN}) as svc:
        code, body = svc.request("POST", "/api/v1/environments/prodution/sync", b"",
                                 {"Authorization": f"Bearer {TOKEN}"})
        assert code == 404 and "no environment named 'prodution'" in body["error"] and "production" in body["error"]
        wait_for(lambda: svc.status("production")["last_run"], what="a run")
        st = svc.status("production")
        for key in ("last_run", "last_success", "next_check"):
            assert st[key].endswith("Z") and "T" in st[key], (key, st[key])


def test_read_only_commands_answer_during_a_long_sync(ws: Workspace) -> None:
    """status, plan and history while the service holds production for a 5,000-flow sync: no waiting,
    exit 0/2, and a word that the answer may be stale."""
    ws.add_env("acceptance", drift="adopt", interval=3600)
    ws.add_env("production", drift="restore", interval=3600)
    for i in range(5000):
        (ws.env_dir("acceptance") / f"f{i:05d}.json").write_text(json.dumps(flow(f"flow-{i:05d}")))
    ws.cli("export", "acceptance", check=True)
    ws.branch("env/production", "env/acceptance")
    answers = []
    with ServiceProcess(ws.config) as svc:
        wait_for(lambda: svc.status("production")["running"], timeout=60, what="the big sync to start")
        while svc.status("production")["running"] and len(answers) < 6:
            for command in (("status", "production"), ("plan", "production"), ("history", "production", "-n", "1")):
                answers.append((command, ws.cli(*command)))
        wait_for(lambda: svc.status("production")["counts"].get("in_sync") == 5000, timeout=120,
                 what="the sync to finish")
    for command, out in answers:
        assert out.returncode in (0, 2), (command, out.stdout, out.stderr)
        assert "being reconciled by another process" not in out.stderr
    assert any("may already be out of date" in out.stdout for _, out in answers), [o.stdout for _, o in answers]


def test_read_only_commands_never_wait_for_a_held_lock(ws: Workspace) -> None:
    """Another process holds the environment's lock: status and plan answer at once and say so; sync refuses."""
    import fcntl
    import os

    ws.add_env("production", interval=3600)
    ws.put("production", "o.json", flow("orders"))
    ws.cli("export", "production", check=True)
    lock = ws.repo / "reconciler-locks" / "production.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        out = ws.cli("status", "production")
        assert out.returncode == 0 and "may already be out of date" in out.stdout
        out = ws.cli("plan", "production", "--json")
        assert out.returncode == 0 and json.loads(out.stdout)["stale"] is True
        out = ws.cli("sync", "production")
        assert out.returncode == 1 and "being reconciled by another process" in out.stderr
    finally:
        os.close(fd)
