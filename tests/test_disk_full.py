"""Out of space while writing: the repository and the folder stay intact, and it converges later.

No tmpfs or loop device can be mounted here, so the disk filling up is
simulated with the file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) of the real
`reconciler` process: a write past the limit fails with EFBIG in the middle of
the file, as a full disk fails with ENOSPC. Limit 0 is a disk with no space
left at all; 100 kB lets small files through and fails a large one half-way.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys

import pytest

from tests.conftest import Workspace, flow

BIG = 150_000  # random bytes, hex: a 300 kB flow that no compression shrinks under the limit


def limited_cli(ws: Workspace, limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    def fill_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=ws.root, capture_output=True, text=True,
                          env=dict(os.environ, RECONCILER_CONFIG=str(ws.config)), preexec_fn=fill_disk, timeout=120)


def fsck(ws: Workspace) -> None:
    ws.git("fsck", "--strict", "--no-dangling", cwd=ws.repo)


@pytest.mark.parametrize("limit", [0, 100_000])
def test_an_export_that_runs_out_of_space_commits_nothing_and_succeeds_later(ws: Workspace, limit: int) -> None:
    ws.add_env("acceptance", drift="adopt")
    for i in range(30):
        ws.put("acceptance", f"f{i}.json", flow(f"f{i}"))
    ws.put("acceptance", "big.json", flow("big", blob=os.urandom(BIG).hex()))
    before = sorted(p.name for p in ws.env_dir("acceptance").iterdir())
    out = limited_cli(ws, limit, "export", "acceptance")
    assert out.returncode == 1, out.stderr
    assert "File too large" in out.stderr and str(ws.repo) in out.stderr  # creating it, or writing objects
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in ws.env_dir("acceptance").iterdir()) == before
    if (ws.repo / "HEAD").exists():  # with no space at all, creating the repository stopped half-way
        assert ws.git("for-each-ref", cwd=ws.repo) == ""  # no branch points at half-written objects
        assert not [p for p in (ws.repo / "objects").rglob("*") if p.name.startswith((".tmp", "tmp_"))]
        fsck(ws)
    ws.cli("export", "acceptance", check=True)  # space again: it goes through
    assert len(ws.git("ls-tree", "-r", "--name-only", "env/acceptance", cwd=ws.repo).split()) == 31
    fsck(ws)


@pytest.mark.parametrize("limit", [0, 100_000])
def test_a_sync_that_runs_out_of_space_leaves_no_partial_file_and_converges_later(ws: Workspace, limit: int) -> None:
    ws.add_env("production", drift="restore", prune=True)
    for i in range(5):
        ws.put("production", f"f{i}.json", flow(f"f{i}"))
    ws.cli("export", "production", check=True)
    clone = ws.clone("env/production")
    (clone / "flows" / "big").mkdir()
    (clone / "flows" / "big" / "1.0.json").write_text(json.dumps(flow("big", blob=os.urandom(BIG).hex())))
    f1 = clone / "flows" / "f1" / "1.0.json"
    f1.write_text(f1.read_text().replace('"POST"', '"PUT"'))
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-q", "-m", "big flow, f1 PUT", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    tip = ws.git("rev-parse", "env/production", cwd=ws.repo).strip()
    files = {p.name: p.read_bytes() for p in ws.env_dir("production").iterdir()}

    out = limited_cli(ws, limit, "sync", "production")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "File too large" in out.stdout + out.stderr and "Traceback" not in out.stderr
    now = {p.name: p.read_bytes() for p in ws.env_dir("production").iterdir()}
    assert not [n for n in now if n.startswith(".")], "a temporary file was left in the folder"
    for name, data in now.items():  # every file is whole: the old one or the new one, never a part
        doc = json.loads(data)
        assert name in files or doc["name"] in ("big", "f1")
    assert set(files) <= set(now)
    if limit:  # small files fit: f1 was updated, the big one was not written
        assert ws.live("production")[("f1", "1.0")]["steps"][0]["config"]["method"] == "PUT"
    assert ("big", "1.0") not in ws.live("production")
    marker = ws.git("rev-parse", "refs/reconciler/applied/production", cwd=ws.repo).strip()
    assert marker != tip  # the marker does not claim the big flow
    fsck(ws)
    status = json.loads(ws.cli("status", "production", "--json").stdout)["environments"][0]
    assert status["counts"]["in_sync"] < 7

    ws.cli("sync", "production", check=True)  # space again: it converges
    assert ws.live("production")[("big", "1.0")]["blob"] == json.loads((clone / "flows/big/1.0.json").read_text())["blob"]
    assert ws.git("rev-parse", "refs/reconciler/applied/production", cwd=ws.repo).strip() == tip
    fsck(ws)
