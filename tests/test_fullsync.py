"""A full sync into an empty folder: the shortcuts it takes give what the full path gives, and a
process killed at any step of the batch leaves whole files and a next run that finishes the job.

- the write takes git's bytes unparsed when they are what the read derived (canonical, nothing
  rendered), and renders the rest as before;
- the read-after-write hashes a file that holds exactly the bytes the batch wrote, and reads any
  other file in full;
- new files are renamed into place without ever replacing a file (``renameat2(RENAME_NOREPLACE)``,
  else a hard link), after the batch's data was synced.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.canonical import Rules, blob_id, canonical_bytes
from reconciler.drivers import Change
from reconciler.drivers.directory import DirectoryDriver, FileSystem
from reconciler.drivers.directory import fs as fs_module
from reconciler.flows import FlowKey
from tests.conftest import Workspace, flow, flow_files

RULES = Rules.of(["/exportedAt"])
API = "https://api.prod.example.com"


def canon(doc) -> bytes:
    return canonical_bytes(json.dumps(doc).encode(), RULES)


def prod_from_acceptance(ws: Workspace, n: int, *, extra: bool = False) -> dict[FlowKey, bytes]:
    """acceptance exported with ``n`` flows, production's branch made from it (and, with ``extra``,
    two flows pushed that the write cannot take unparsed: one not canonical in git, one with a
    placeholder), production's folder empty. Returns what production's folder must end up holding."""
    ws.add_env("acceptance", drift="adopt")
    for i in range(n):
        ws.put("acceptance", f"f{i:03}.json", flow(f"f{i:03}", "1.0", note="ünïcode ✓", n=i))
    assert ws.cli("export", "acceptance").returncode == 0
    ws.branch("env/production", "env/acceptance")
    ws.add_env("production", drift="restore", prune=True)
    ws.write_config(f'\n[environment.params]\nAPI = "{API}"\n')
    want = {FlowKey(f"f{i:03}", "1.0"): canon(flow(f"f{i:03}", "1.0", note="ünïcode ✓", n=i)) for i in range(n)}
    if extra:
        clone = ws.clone("env/production")
        loose = flow("loose", "1.0", zeta=1, alpha=[3, 1])
        (clone / "flows" / "loose").mkdir()
        (clone / "flows" / "loose" / "1.0.json").write_text(json.dumps(loose, indent=4))  # not canonical
        templ = flow("templ", "1.0", url="${param:API}/orders")
        (clone / "flows" / "templ").mkdir()
        (clone / "flows" / "templ" / "1.0.json").write_bytes(canon(templ))
        ws.git("add", "-A", cwd=clone)
        ws.git("commit", "-q", "-m", "two more", cwd=clone)
        ws.git("push", "-q", "origin", "env/production", cwd=clone)
        want[FlowKey("loose", "1.0")] = canon(loose)
        want[FlowKey("templ", "1.0")] = canon(flow("templ", "1.0", url=f"{API}/orders"))
    return want


def holds(folder: Path) -> dict[FlowKey, bytes]:
    out = {}
    for p in flow_files(folder):
        doc = json.loads(p.read_bytes())
        out[FlowKey(doc["name"], doc["version"])] = p.read_bytes()
    return out


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- the write takes git's bytes when they are what the read derived ----------------------------------


def test_a_full_sync_writes_what_rendering_every_flow_would(ws: Workspace, monkeypatch) -> None:
    """Canonical blobs are written as git holds them, without being parsed again; a blob that is not
    canonical and one with a placeholder are rendered as before; every file is what was meant. (With
    nothing kept from the read: what is kept, tests/test_rendered.py.)"""
    from reconciler import apply, rendered as rendered_module
    from reconciler.config import load_config
    from reconciler.engine import Engine

    monkeypatch.setattr(rendered_module, "BUDGET", 0)
    want = prod_from_acceptance(ws, 20, extra=True)
    rendered: list[str] = []
    full = apply.read_git_flow

    def spy(store, entry, env, **kw):
        rendered.append(kw["where"])
        return full(store, entry, env, **kw)

    monkeypatch.setattr(apply, "read_git_flow", spy)
    engine = Engine(load_config(ws.config))
    out = engine.sync("production")
    assert not out.failed
    assert holds(ws.env_dir("production")) == want
    assert sorted(rendered) == ["loose@1.0", "templ@1.0"]  # only these were parsed again for the write
    assert ws.git("rev-parse", "refs/reconciler/applied/production", cwd=ws.repo).strip() == \
        ws.git("rev-parse", "env/production", cwd=ws.repo).strip()
    assert engine.sync("production").plan.changes == ()


def test_a_blob_that_cannot_be_read_fails_that_flow_only(ws: Workspace, monkeypatch) -> None:
    """The unparsed write reads the blob (nothing kept from the read, which otherwise gives the write
    the bytes it rendered); a blob missing from the repository is that flow's failure (as when it was
    rendered), never another flow's bytes and never the whole run."""
    from reconciler import rendered as rendered_module
    from reconciler.config import load_config
    from reconciler.engine import Engine

    monkeypatch.setattr(rendered_module, "BUDGET", 0)
    want = prod_from_acceptance(ws, 3)
    engine = Engine(load_config(ws.config))
    store = engine.store
    gone = ws.git("rev-parse", "env/production:flows/f001/1.0.json", cwd=ws.repo).strip()
    real = store.read_blob
    reads = {"n": 0}

    def read_blob(oid: str) -> bytes:
        if oid == gone:
            reads["n"] += 1
            if reads["n"] > 1:  # the plan's read saw it; it is gone by the time of the write
                from reconciler.errors import RetryableError
                raise RetryableError(f"cannot read object {oid}: object not found")
        return real(oid)

    store.read_blob = read_blob  # type: ignore[method-assign]
    out = engine.sync("production")
    assert set(out.failed) == {FlowKey("f001", "1.0")}
    got = holds(ws.env_dir("production"))
    assert got == {k: v for k, v in want.items() if k != FlowKey("f001", "1.0")}


# -- the read-after-write ------------------------------------------------------------------------------


def test_the_read_after_write_of_our_bytes_is_what_a_full_read_says(tmp_path: Path) -> None:
    folder = tmp_path / "env"
    folder.mkdir()
    keys = [FlowKey(f"f{i}", "1") for i in range(20)]
    docs = {k: flow(k.name, "1", exportedAt="x", tags=["b", "a"], text="é\u2028") for k in keys}
    d = DirectoryDriver(folder, rules=RULES)
    d.export()
    assert d.apply([Change(k, canon(docs[k]), None) for k in keys]) == {}
    quick = d.reread(keys)
    assert quick == {k: blob_id(canon(docs[k])) for k in keys}
    files = d._scan.files
    assert quick == {k: d._write.current(files[k]) for k in keys}  # the full read agrees


def test_a_file_changed_after_the_write_is_read_in_full(tmp_path: Path) -> None:
    """Other bytes than ours (the same flow formatted otherwise, another flow, nothing) are read in
    full: the id is what the file holds, never what was written."""
    folder = tmp_path / "env"
    folder.mkdir()
    a, b, c = FlowKey("a", "1"), FlowKey("b", "1"), FlowKey("c", "1")
    d = DirectoryDriver(folder, rules=RULES)
    d.export()
    assert d.apply([Change(k, canon(flow(k.name, "1")), None) for k in (a, b, c)]) == {}
    files = d._scan.files
    Path(files[a]).write_text(json.dumps(flow("a", "1"), indent=1))  # same flow, other bytes
    Path(files[b]).write_text(json.dumps(flow("b", "1", retries=2)))  # an edit
    os.unlink(files[c])
    got = d.reread([a, b, c])
    assert got == {a: blob_id(canon(flow("a", "1"))), b: blob_id(canon(flow("b", "1", retries=2))), c: None}


def test_a_flow_the_last_batch_did_not_write_is_read_in_full(tmp_path: Path) -> None:
    folder = tmp_path / "env"
    folder.mkdir()
    (folder / "old.json").write_text(json.dumps(flow("old", "1")))
    new = FlowKey("new", "1")
    d = DirectoryDriver(folder, rules=RULES)
    d.export()
    assert d.apply([Change(new, canon(flow("new", "1")), None)]) == {}
    assert d._write.wrote.keys() == {new}
    assert d.reread([FlowKey("old", "1")]) == {FlowKey("old", "1"): blob_id(canon(flow("old", "1")))}


# -- new files never replace one ------------------------------------------------------------------------


class NoRenameFlags(FileSystem):
    """A file system whose rename cannot take flags (renameat2 says EINVAL, as some do)."""

    calls = 0


@pytest.fixture
def no_flags(monkeypatch) -> NoRenameFlags:
    """renameat2 answering EINVAL to RENAME_NOREPLACE (swaps keep working)."""
    real = fs_module._renameat2()

    def renameat2(a, src, b, dst, flags):
        if flags == fs_module._RENAME_NOREPLACE:
            NoRenameFlags.calls += 1
            ctypes.set_errno(errno.EINVAL)
            return -1
        return real(a, src, b, dst, flags)

    monkeypatch.setattr(fs_module, "_renameat2", lambda: renameat2)
    NoRenameFlags.calls = 0
    return NoRenameFlags()


@pytest.mark.parametrize("flags", ["noreplace", "link"])
def test_a_new_flow_is_renamed_into_place_and_never_replaces_a_file(tmp_path: Path, flags: str, request) -> None:
    """A file that took the name since the export stays; the new flow gets the next free name (the
    duplicate is reported by the next export), and no temporary file is left."""
    fs = request.getfixturevalue("no_flags") if flags == "link" else FileSystem()
    folder = tmp_path / "env"
    folder.mkdir()
    k = FlowKey("orders", "1.0")
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    d.export()
    (folder / "orders@1.0.json").write_text("a save made meanwhile")
    assert d.apply([Change(k, canon(flow("orders")), None), Change(FlowKey("x", "1"), canon(flow("x", "1")), None)]) == {}
    assert sorted(p.name for p in folder.iterdir()) == ["orders@1.0-2.json", "orders@1.0.json", "x@1.json"]
    assert (folder / "orders@1.0.json").read_text() == "a save made meanwhile"
    assert (folder / "orders@1.0-2.json").read_bytes() == canon(flow("orders"))
    if flags == "link":
        assert NoRenameFlags.calls == 1  # asked once, then hard links for the rest of the process


# -- a crash at each step of the batch --------------------------------------------------------------------

CRASH = r"""
import os, sys
from reconciler.config import load_config
from reconciler.drivers.directory import DirectoryDriver, FileSystem
from reconciler.engine import Engine

step, nth = sys.argv[2], int(sys.argv[3])
seen = {"n": 0}


def die_at(name):
    if name == step:
        seen["n"] += 1
        if seen["n"] == nth:
            os._exit(137)  # as kill -9: no clean-up runs


class Dying(FileSystem):
    def write_new(self, path, data, *, sync):
        if step == "write_new" and seen["n"] + 1 == nth:  # killed half-way through writing a file
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, data[: len(data) // 2])
            os._exit(137)
        die_at("write_new")
        super().write_new(path, data, sync=sync)

    def syncfs(self, path):
        die_at("syncfs")
        super().syncfs(path)

    def rename_new(self, src, dst):
        die_at("rename_new")
        super().rename_new(src, dst)
        die_at("rename_new_after")

    def fsync_dir(self, path):
        die_at("fsync_dir")
        super().fsync_dir(path)


config = load_config(sys.argv[1])
env = config.env("production")
engine = Engine(config, drivers={"production": DirectoryDriver(env.path, env.flow_identity, env.rules, fs=Dying())})
real = engine.store.set_marker


def set_marker(name, commit):
    die_at("set_marker")
    real(name, commit)


engine.store.set_marker = set_marker
engine.sync("production")
sys.exit(3)  # not killed: the step was never reached
"""


@pytest.mark.parametrize("n", [20, 3])  # a batch (one syncfs) and a handful (an fsync each)
@pytest.mark.parametrize("step, nth", [
    ("write_new", 1), ("write_new", 3), ("syncfs", 1), ("rename_new", 1), ("rename_new", 2),
    ("rename_new_after", 3), ("fsync_dir", 1), ("set_marker", 1),
])
def test_a_sync_killed_at_any_step_leaves_whole_files_and_the_next_run_finishes(ws: Workspace, n: int, step: str,
                                                                              nth: int) -> None:
    want = prod_from_acceptance(ws, n)
    if step == "syncfs" and n <= 16:
        step, nth = "write_new", n  # no syncfs for a handful: killed while writing the last one
    folder = ws.env_dir("production")
    proc = subprocess.run([sys.executable, "-c", CRASH, str(ws.config), step, str(nth)], cwd=ws.root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr[-2000:]
    # Whatever is under a flow's name is whole: exactly git's bytes for that flow.
    got = holds(folder)
    assert all(want[k] == data for k, data in got.items())
    if step in ("write_new", "syncfs", "rename_new") and nth == 1:
        assert got == {} and hidden(folder)  # nothing renamed yet: temporary files only
    if step in ("fsync_dir", "set_marker"):
        assert got == want
    marker = ws.git("rev-parse", "-q", "--verify", "refs/reconciler/applied/production", cwd=ws.repo, check=False).strip()
    assert marker == ""  # the marker never moved before the batch was done
    # The next run sorts out the hidden files and writes what is missing.
    again = ws.cli("sync", "production")
    assert again.returncode == 0, again.stdout + again.stderr
    assert holds(folder) == want
    assert hidden(folder) == []
    assert ws.git("rev-parse", "refs/reconciler/applied/production", cwd=ws.repo).strip() == \
        ws.git("rev-parse", "env/production", cwd=ws.repo).strip()
    assert ws.cli("plan", "production").returncode == 0  # in sync


@pytest.mark.parametrize("n, sync", [(20, "syncfs"), (3, "fsync")])
def test_what_is_synced_and_when(ws: Workspace, n: int, sync: str) -> None:
    """The order the README promises: every new version written (and fsync'ed each, for a handful),
    one syncfs for a batch, then the renames, then one fsync of the folder, then the marker."""
    from reconciler.config import load_config
    from reconciler.engine import Engine

    prod_from_acceptance(ws, n)
    calls: list[str] = []

    class Recording(FileSystem):
        def write_new(self, path, data, *, sync):
            calls.append("write+fsync" if sync else "write")
            super().write_new(path, data, sync=sync)

        def syncfs(self, path):
            calls.append("syncfs")
            super().syncfs(path)

        def rename_new(self, src, dst):
            calls.append("rename")
            super().rename_new(src, dst)

        def fsync_dir(self, path):
            calls.append("fsync_dir")
            super().fsync_dir(path)

    config = load_config(ws.config)
    env = config.env("production")
    engine = Engine(config, drivers={"production": DirectoryDriver(env.path, env.flow_identity, env.rules, fs=Recording())})
    real = engine.store.set_marker
    engine.store.set_marker = lambda name, commit: (calls.append("marker"), real(name, commit))  # type: ignore[method-assign]
    assert not engine.sync("production").failed
    writes = ["write"] * n + ["syncfs"] if sync == "syncfs" else ["write+fsync"] * n
    assert calls == [*writes, *["rename"] * n, "fsync_dir", "marker"]
