"""The shortcuts of a fresh ``reconciler sync`` of a change pushed to git, attacked (issue 15, C8).

- a folder whose listing is exactly what the stat index recorded (names, mode, inode, size, mtime,
  ctime of every file, each older than the index by more than the racy second) is answered from the
  index's columns without an entry per file: every other folder (an edit in the same second with the
  same size and mtime, a file replaced by another with the same size and mtime, a file added or
  removed, a clock that went back, an index cut short or corrupt, other rules, two processes at once)
  gives the answer of a driver that keeps nothing;
- the drift save of a live flow whose canonical bytes are the applied commit's blob commits that blob
  to drift/<env> as it is (not read from the folder again); a drifted file in the otherwise unchanged
  folder is still saved, as it was in the folder, before it is overwritten.

Real folders, real git (the git CLI), the real command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from reconciler.canonical import Rules, blob_id, canonical_bytes
from reconciler.drivers.directory.driver import DirectoryDriver
from reconciler.flows import Identity
from tests.conftest import Workspace, flow

RULES = Rules.of(["/exportedAt"])
N = 6


def _folder(tmp: Path) -> Path:
    folder = tmp / "env"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(N):
        (folder / f"f{i}@1.0.json").write_text(json.dumps(flow(f"f{i}", mark="aaaa"), indent=2) + "\n")
    time.sleep(1.1)  # older than the racy second: the index records them
    return folder


def _driver(folder: Path, index: Path | None, rules: Rules = RULES, clock=None) -> DirectoryDriver:
    driver = DirectoryDriver(folder, Identity(), rules, clock=clock)
    if index is not None:
        driver.keep_index(index)
    return driver


def _answer(live) -> tuple:
    """What an export answers (the order of its flows aside: a patched snapshot lists what it read again
    last, as between two exports of one process)."""
    return ({k: f.oid for k, f in live.flows.items()}, sorted(live.flows), dict(live.where),
            sorted(p.message for p in live.problems), dict(live.invalid))


def _truth(folder: Path, rules: Rules = RULES) -> tuple:
    return _answer(_driver(folder, None, rules).export())


def _recorded(folder: Path, index: Path) -> None:
    """A first process reads the folder and writes its index."""
    _driver(folder, index).export()
    assert index.exists()


def _fresh(folder: Path, index: Path, rules: Rules = RULES, clock=None) -> tuple[tuple, bool]:
    """A fresh process's answer, and whether it used the index's columns as read (no entry per file built)."""
    driver = _driver(folder, index, rules, clock)
    live = driver.export()
    return _answer(live), driver._scan._columns is not None


def _again(folder: Path, index: Path) -> None:
    """The index the last process wrote (over the one it read) serves the next one: the answer without an
    index, with every entry of a fresh index of the folder."""
    got, _ = _fresh(folder, index)
    assert got == _truth(folder)
    time.sleep(1.1)
    fresh = tmp = index.with_name("fresh")
    _driver(folder, tmp).export()
    from reconciler.drivers.directory.index import StatIndex

    def entries(path: Path) -> dict:
        return StatIndex(path, folder, Identity(), RULES).load()

    _driver(folder, index).export()  # written again now that nothing is racy
    assert {n: (e[0], e[1].oid) for n, e in entries(index).items()} == \
        {n: (e[0], e[1].oid) for n, e in entries(fresh).items()}
    assert len(entries(index)) == len(list(folder.glob("*.json")))


def test_an_unchanged_folder_is_answered_from_the_index_as_a_driver_without_one_answers(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    index = tmp_path / "index"
    _recorded(folder, index)
    got, short = _fresh(folder, index)
    assert short, "every file as recorded: the columns answer"
    assert got == _truth(folder)
    assert len(got[0]) == N and list(_driver(folder, index).export().flows) == got[1], "in key order, as a rebuild"
    # the shortcut's snapshot is patched like any other: a write's touched file is read again
    driver = _driver(folder, index)
    driver.export()
    path = folder / "f2@1.0.json"
    path.write_text(json.dumps(flow("f2", mark="bbbb"), indent=2) + "\n")
    driver._scan.touched.add(path.name)
    assert _answer(driver.export()) == _truth(folder)


def test_an_edit_in_the_same_second_with_the_same_size_and_mtime_is_read(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    index = tmp_path / "index"
    _recorded(folder, index)
    path = folder / "f1@1.0.json"
    st = path.stat()
    path.write_text(path.read_text().replace("aaaa", "bbbb"))  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: only the ctime tells
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    time.sleep(1.1)  # no longer racy either: only the signature tells
    _read_again(folder, index, path, "f1")


def test_a_file_replaced_by_another_with_the_same_size_and_mtime_is_read(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    index = tmp_path / "index"
    _recorded(folder, index)
    path = folder / "f3@1.0.json"
    st = path.stat()
    other = folder / ".other"
    other.write_text(path.read_text().replace("aaaa", "cccc"))
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, path)  # another inode, same name, size and mtime
    assert path.stat().st_ino != st.st_ino and path.stat().st_size == st.st_size
    time.sleep(1.1)
    _read_again(folder, index, path, "f3")


def test_a_file_added_or_removed_is_seen(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    index = tmp_path / "index"
    _recorded(folder, index)
    (folder / "new@1.0.json").write_text(json.dumps(flow("new"), indent=2))
    time.sleep(1.1)
    got, short = _fresh(folder, index)
    assert got == _truth(folder) and len(got[0]) == N + 1
    _recorded(folder, index)
    (folder / "f0@1.0.json").unlink()
    time.sleep(1.1)
    got, short = _fresh(folder, index)
    assert got == _truth(folder) and len(got[0]) == N
    # one added and one removed: the same count, another listing
    (folder / "f0@1.0.json").write_text(json.dumps(flow("f0"), indent=2))
    _recorded(folder, index)
    time.sleep(1.1)
    os.rename(folder / "f1@1.0.json", folder / "renamed@1.0.json")
    got, short = _fresh(folder, index)
    assert got == _truth(folder) and len(got[0]) == N + 1
    assert str(folder / "renamed@1.0.json") in got[2].values()


def test_a_file_as_new_as_the_index_is_never_vouched_for(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    index = tmp_path / "index"
    path = folder / "f4@1.0.json"
    path.write_text(path.read_text().replace("aaaa", "dddd"))  # within the second before the index is written
    _recorded(folder, index)
    st = path.stat()
    path.write_text(path.read_text().replace("dddd", "eeee"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    time.sleep(1.1)
    _read_again(folder, index, path, "f4")


def test_a_clock_that_went_back_reads_every_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    index = tmp_path / "index"
    _recorded(folder, index)
    got, short = _fresh(folder, index, clock=lambda: time.time_ns() - 3600 * 10**9)
    assert not short and got == _truth(folder)


def test_an_index_cut_short_corrupt_or_foreign_reads_every_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    index = tmp_path / "index"
    _recorded(folder, index)
    raw = index.read_bytes()
    head, _, body = raw.partition(b"\n")
    for bad in (raw[: len(raw) // 2], raw[:-1], head + b"\n" + body.replace(b"f1@", b"f9@"), b"", b"junk\n{}"):
        index.write_bytes(bad)
        got, short = _fresh(folder, index)
        assert not short and got == _truth(folder)
    # a well-formed index whose columns disagree (its checksum made to match): not used either
    import hashlib

    doc = json.loads(body)
    doc["sigs"] = doc["sigs"][:-1]
    data = json.dumps(doc).encode()
    parts = head.split(b" ")
    index.write_bytes(b" ".join((*parts[:3], hashlib.sha256(data).hexdigest().encode())) + b"\n" + data)
    got, short = _fresh(folder, index)
    assert not short and got == _truth(folder)


def test_other_rules_do_not_use_the_index(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    index = tmp_path / "index"
    _recorded(folder, index)
    other = Rules.of(["/exportedAt", "/mark"])
    got, short = _fresh(folder, index, rules=other)
    assert not short and got == _truth(folder, other)
    assert got[0] != _truth(folder)[0]


def test_two_keys_in_one_unchanged_folder_are_reported_as_without_an_index(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "copy@1.0.json").write_text((folder / "f0@1.0.json").read_text())  # the same key twice
    time.sleep(1.1)
    index = tmp_path / "index"
    _recorded(folder, index)
    got, _ = _fresh(folder, index)
    assert got == _truth(folder)
    assert got[3], "the duplicate is reported"


# -- the whole command ---------------------------------------------------------------------------------


def _read_again(folder: Path, index: Path, path: Path, name: str) -> None:
    """A fresh process gives a full read's answer, the index it writes does too, and flow ``name`` is
    what ``path`` holds now (it was read again, not vouched for by its old signature)."""
    got, _ = _fresh(folder, index)
    assert got == _truth(folder)
    _again(folder, index)
    oid = got[0][next(k for k in got[0] if k.name == name)]
    assert oid == blob_id(canonical_bytes(path.read_bytes(), RULES))


def _canonical(doc: dict) -> str:
    return canonical_bytes(json.dumps(doc).encode(), Rules.of(["/exportedAt"])).decode()


def _setup(ws: Workspace) -> Path:
    ws.add_env("production", drift="restore", prune=True)
    ws.init_repo()
    clone = ws.clone()
    ws.git("checkout", "-q", "-b", "env/production", cwd=clone)
    for i in range(N):
        _put(clone, i, "v1")
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-qm", "flows", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    ws.cli("sync", "production", check=True)
    time.sleep(1.1)
    ws.cli("plan", "production")  # the folder's index written with every file in it
    return clone


def _put(clone: Path, i: int, mark: str) -> None:
    folder = clone / "flows" / f"f{i}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "1.0.json").write_text(_canonical(flow(f"f{i}", mark=mark)))  # git holds canonical bytes


def _push(ws: Workspace, clone: Path, which: range, mark: str) -> None:
    for i in which:
        _put(clone, i, mark)
    ws.git("commit", "-qam", mark, cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)


def _rev(ws: Workspace, what: str) -> str:
    return ws.git("rev-parse", what, cwd=ws.repo).strip()


def test_a_push_to_an_unchanged_folder_saves_the_applied_blobs_and_a_drifted_file_as_it_was(ws: Workspace) -> None:
    clone = _setup(ws)
    marker = _rev(ws, "refs/reconciler/applied/production")
    conflict = next(ws.env_dir("production").glob("f2@*.json"))
    conflict.write_text(json.dumps(flow("f2", mark="edited live"), indent=4))  # and changed in git: a conflict
    drifted = next(ws.env_dir("production").glob("f5@*.json"))
    drifted.write_text(json.dumps(flow("f5", mark="by hand"), indent=4))  # not canonical: parsed to be saved
    _push(ws, clone, range(4), "v2")
    out = json.loads(ws.cli("sync", "production", "--json").stdout)  # exit 3: the conflict is reported
    assert out["drift_commit"] == _rev(ws, "drift/production")
    # f0, f1, f3: their live bytes are the applied commit's blobs, committed to drift/production as they are
    for i in (0, 1, 3):
        assert _rev(ws, f"drift/production:flows/f{i}/1.0.json") == _rev(ws, f"{marker}:flows/f{i}/1.0.json")
    saved = json.loads(ws.git("show", "drift/production:flows/f5/1.0.json", cwd=ws.repo))
    assert saved["mark"] == "by hand", "the drifted file is saved as it was before being overwritten"
    assert ws.git("ls-tree", "drift/production", "flows/f2/1.0.json", cwd=ws.repo) == "", "not overwritten: not saved"
    marks = {k: d["mark"] for k, d in ws.live("production").items()}
    assert marks == {("f0", "1.0"): "v2", ("f1", "1.0"): "v2", ("f2", "1.0"): "edited live", ("f3", "1.0"): "v2",
                     ("f4", "1.0"): "v1", ("f5", "1.0"): "v1"}
    steps = {(s["name"], s["version"]): s for s in json.loads(ws.cli("plan", "production", "--json").stdout)["steps"]}
    assert steps[("f2", "1.0")]["state"] == "conflict"
    assert all(s["state"] == "in_sync" for k, s in steps.items() if k != ("f2", "1.0"))


def test_a_restored_drift_in_an_unchanged_folder_is_saved_before_it_is_overwritten(ws: Workspace) -> None:
    clone = _setup(ws)
    drifted = next(ws.env_dir("production").glob("f5@*.json"))
    drifted.write_text(json.dumps(flow("f5", mark="by hand"), indent=3))
    _push(ws, clone, range(2), "v3")
    ws.cli("sync", "production", check=True)
    saved = json.loads(ws.git("show", "drift/production:flows/f5/1.0.json", cwd=ws.repo))
    assert saved["mark"] == "by hand"
    marks = {k: d["mark"] for k, d in ws.live("production").items()}
    assert marks == {(f"f{i}", "1.0"): ("v3" if i < 2 else "v1") for i in range(N)}
    # the next push to the folder as the sync left it: the answer of a process that keeps nothing
    time.sleep(1.1)
    ws.cli("plan", "production")
    _push(ws, clone, range(2, 4), "v4")
    ws.cli("sync", "production", check=True)
    marks = {k: d["mark"] for k, d in ws.live("production").items()}
    assert marks == {(f"f{i}", "1.0"): ("v3" if i < 2 else "v4" if i < 4 else "v1") for i in range(N)}


def test_two_processes_at_once_see_an_edit_of_the_unchanged_folder(ws: Workspace) -> None:
    _setup(ws)
    path = next(ws.env_dir("production").glob("f1@*.json"))
    st = path.stat()
    path.write_text(path.read_text().replace('"v1"', '"v9"'))  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    time.sleep(1.1)
    env = dict(os.environ, RECONCILER_CONFIG=str(ws.config))
    procs = [subprocess.Popen([sys.executable, "-m", "reconciler", "plan", "production", "--json"], env=env, cwd=ws.root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for out, _err in outs:
        steps = {(s["name"], s["version"]): s for s in json.loads(out)["steps"]}
        assert steps[("f1", "1.0")]["state"] == "drifted", out
        assert sum(1 for s in steps.values() if s["state"] != "in_sync") == 1


def test_a_file_dated_in_the_future_is_never_vouched_for(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    index = tmp_path / "index"
    path = folder / "f0@1.0.json"
    later = time.time_ns() + 3600 * 10**9
    os.utime(path, ns=(later, later))  # an mtime an hour ahead: as new as any index written before then
    _recorded(folder, index)
    st = path.stat()
    path.write_text(path.read_text().replace("aaaa", "zzzz"))  # same size, the same future mtime
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    time.sleep(1.1)
    got, short = _fresh(folder, index)
    assert got == _truth(folder)
    oid = got[0][next(k for k in got[0] if k.name == "f0")]
    assert oid == blob_id(canonical_bytes(path.read_bytes(), RULES))


def test_the_index_snapshot_reads_only_the_changed_files_and_writes_an_index_as_a_rebuild_would(tmp_path: Path) -> None:
    from reconciler.drivers.directory.fs import FileSystem
    from reconciler.drivers.directory.index import StatIndex

    folder = _folder(tmp_path)
    index = tmp_path / "index"
    _recorded(folder, index)
    (folder / "f2@1.0.json").write_text(json.dumps(flow("f2", mark="new"), indent=2))
    (folder / "f4@1.0.json").unlink()
    (folder / "g@1.0.json").write_text(json.dumps(flow("g"), indent=2))
    time.sleep(1.1)
    reads: list[str] = []

    class Counting(FileSystem):
        def read(self, path):  # type: ignore[override]
            reads.append(os.path.basename(path))
            return super().read(path)

    driver = DirectoryDriver(folder, Identity(), RULES, fs=Counting())
    driver.keep_index(index)
    assert _answer(driver.export()) == _truth(folder)
    assert sorted(reads) == ["f2@1.0.json", "g@1.0.json"]
    assert driver._scan._columns is not None, "no entry per file was built"
    rebuilt = tmp_path / "rebuilt"
    _driver(folder, rebuilt).export()

    def entries(path: Path) -> dict:
        return {n: (e[0], e[1].key, e[1].oid) for n, e in StatIndex(path, folder, Identity(), RULES).load().items()}

    assert entries(index) == entries(rebuilt) and len(entries(index)) == N
