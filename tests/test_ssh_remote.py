"""An ssh git server with a key file and a known_hosts file (no agent): a real OpenSSH sshd on
127.0.0.1, started by the test, serving a bare repository with git's own upload/receive-pack."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.errors import RetryableError
from reconciler.gitstore import GitStore
from reconciler.remote import Remote
from tests.conftest import Workspace, flow

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
pytestmark = pytest.mark.skipif(SSHD is None and not os.environ.get("CI"),
                                reason="OpenSSH's sshd is not installed (apt-get install openssh-server)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path: Path):
    assert SSHD is not None, "sshd is needed in CI: .ci/run installs openssh-server"
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host", "client", "stranger"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PidFile {d / 'sshd.pid'}\nPermitRootLogin prohibit-password\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"sshd did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.05)
    known = subprocess.run(["ssh-keyscan", "-p", str(port), "-t", "ed25519", "127.0.0.1"], capture_output=True,
                           text=True, check=True).stdout
    (d / "known_hosts").write_text(known)
    (d / "other_hosts").write_text(known.replace(known.split()[-1], (d / "stranger.pub").read_text().split()[1]))
    server = tmp_path / "server.git"
    subprocess.run(["git", "init", "-q", "--bare", str(server)], check=True)
    try:
        yield {"dir": d, "port": port, "server": server,
               "url": f"ssh://{getpass.getuser()}@127.0.0.1:{port}{server}"}
    finally:
        proc.terminate()
        proc.wait(10)


def _workspace(ws: Workspace, sshd, key: str = "client", hosts: str = "known_hosts") -> GitStore:
    ws.add_env("acceptance", drift="adopt")
    ws.put("acceptance", "o.json", flow("orders"))
    ws.cli("export", "acceptance", check=True)
    d = sshd["dir"]
    ws.config.write_text(ws.config.read_text().replace(
        '[repository]\npath = "state/flows.git"',
        f'[repository]\npath = "state/flows.git"\nremote = "{sshd["url"]}"\n'
        f'ssh_key = "{d / key}"\nssh_known_hosts = "{d / hosts}"'))
    return GitStore.from_config(load_config(ws.config).repository)


def test_a_key_file_and_known_hosts_push_and_fetch_over_ssh(ws: Workspace, sshd) -> None:
    """Without an agent (SSH_AUTH_SOCK unset): publish pushes the branch and the marker, fetch reads them."""
    os.environ.pop("SSH_AUTH_SOCK", None)
    store = _workspace(ws, sshd)
    remote = Remote.from_config(store, load_config(ws.config).repository)
    assert remote is not None
    remote.fetch()
    remote.integrate("acceptance", "env/acceptance")
    assert remote.publish("acceptance", "env/acceptance") == []
    heads = subprocess.run(["git", "for-each-ref", "--format=%(refname)"], cwd=sshd["server"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert "refs/heads/env/acceptance" in heads and "refs/reconciler/applied/acceptance" in heads
    remote.fetch()
    assert store.tip("refs/remotes/origin/env/acceptance") == store.tip("env/acceptance")


def test_an_unknown_host_key_is_refused(ws: Workspace, sshd) -> None:
    """A known_hosts file without the server's key: no connection, a message saying how to add it."""
    store = _workspace(ws, sshd, hosts="other_hosts")
    remote = Remote.from_config(store, load_config(ws.config).repository)
    with pytest.raises(RetryableError, match=r"host key of 127\.0\.0\.1 is not trusted.*ssh-keyscan"):
        remote.fetch()


def test_a_key_the_server_does_not_know_is_refused(ws: Workspace, sshd) -> None:
    store = _workspace(ws, sshd, key="stranger")
    remote = Remote.from_config(store, load_config(ws.config).repository)
    with pytest.raises(RetryableError, match="cannot fetch from ssh://"):
        remote.fetch()
