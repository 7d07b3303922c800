"""The stat index's columns path and the drift save's shortcut (p18), attacked from fresh processes.

- every hostile change of an environment folder between two processes (an edit with the size and
  mtime restored, a file replaced, renamed over another, swapped, turned into a symlink or a folder,
  deleted and created again, case-only renames, sub-folders, a damaged or foreign index, a clock
  that was ahead, files changed while an export runs, a process exporting twice) gives the plan of a
  process that reads every file, and leaves an index whose every row that matches its file's current
  signature holds that file's flow;
- the drift save commits the applied blob as it is only when that is what git's form of the live
  flow would be: never a blob holding a credential (refused, as without the shortcut), never a flow
  whose code the environment splits out into sidecar files unsplit.

Real folders, real git (the git CLI), the real command line.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from reconciler.canonical import Rules, blob_id, canonical_bytes
from reconciler.drivers.directory.driver import DirectoryDriver
from reconciler.drivers.directory.fs import FileSystem
from reconciler.drivers.directory.index import StatIndex
from reconciler.flows import FlowKey, Identity
from reconciler.localcache import write_cache
from tests.conftest import Workspace, flow

RULES = Rules.of(["/exportedAt"])
ENV = "production"
N = 5


def _canonical(doc: dict) -> bytes:
    return canonical_bytes(json.dumps(doc).encode(), RULES)


def _rev(ws: Workspace, what: str) -> str:
    return ws.git("rev-parse", what, cwd=ws.repo).strip()


# -- the drift save's shortcut ------------------------------------------------------------------------

def _git_env(ws: Workspace, docs: dict[int, dict], **settings) -> Path:
    """An environment whose branch holds ``docs`` as canonical blobs, synced (the folder then holds them)."""
    settings.setdefault("drift", "restore")
    ws.add_env(ENV, prune=True, **settings)
    ws.init_repo()
    clone = ws.clone()
    ws.git("checkout", "-q", "-b", f"env/{ENV}", cwd=clone)
    _commit(ws, clone, docs, "flows")
    ws.cli("sync", ENV, check=True)
    return clone


def _commit(ws: Workspace, clone: Path, docs: dict[int, dict], message: str) -> None:
    for i, doc in docs.items():
        folder = clone / "flows" / f"f{i}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "1.0.json").write_bytes(_canonical(doc))
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-qm", message, cwd=clone)
    ws.git("push", "-q", "origin", f"env/{ENV}", cwd=clone)


def test_an_applied_blob_holding_a_credential_is_never_committed_to_drift(ws: Workspace) -> None:
    """The live flow is byte for byte the applied blob, which holds a plaintext password (pushed by hand):
    its git form is refused by the secret scan, so it is not overwritten and nothing reaches drift/<env>,
    as when the live bytes are not the applied blob's."""
    secret = {"password": "hunter2-plain"}
    clone = _git_env(ws, {0: flow("f0", mark="v1", cfg=secret), 1: flow("f1", mark="v1")})
    live = ws.env_dir(ENV) / "f0@1.0.json"
    before = live.read_bytes()
    assert blob_id(before) == _rev(ws, f"refs/reconciler/applied/{ENV}:flows/f0/1.0.json"), "the shortcut's case"
    _commit(ws, clone, {0: flow("f0", mark="v2", cfg=secret), 1: flow("f1", mark="v2")}, "v2")
    out = json.loads(ws.cli("sync", ENV, "--json").stdout)
    assert out["drift_commit"] == _rev(ws, f"drift/{ENV}")
    assert ws.git("ls-tree", "-r", "--name-only", f"drift/{ENV}", cwd=ws.repo).split() == ["flows/f1/1.0.json"], \
        "the clean flow saved, the one holding a password not (it stays in the folder)"
    assert _rev(ws, f"drift/{ENV}:flows/f1/1.0.json") == blob_id(_canonical(flow("f1", mark="v1")))
    assert live.read_bytes() == before, "not overwritten: its live version could not be saved"
    errors = {(s["name"], s.get("error") or "") for s in out["steps"]}
    assert any(n == "f0" and "cannot be saved to drift" in e and "/cfg/password" in e for n, e in errors), out
    assert json.loads((ws.env_dir(ENV) / "f1@1.0.json").read_text())["mark"] == "v2"


def _coded(name: str, code: str) -> dict:
    return {"name": name, "version": "1.0", "tab": {"id": "t1", "type": "tab"}, "nodes": [
        {"id": "n1", "type": "function", "z": "t1", "name": "calc", "func": code, "initialize": "", "finalize": "",
         "wires": []}]}


def test_an_applied_blob_with_code_inline_is_saved_to_drift_split_as_without_the_shortcut(ws: Workspace) -> None:
    """git holds the flow with its function inline (pushed so by hand); the live flow is that blob. The drift
    save writes git's form of it, the code in its sidecar file (never the blob as it is beside no sidecar)."""
    code = "const rate = 2;\nreturn msg;"
    clone = _git_env(ws, {0: _coded("f0", code)})
    assert blob_id((ws.env_dir(ENV) / "f0@1.0.json").read_bytes()) == _rev(ws, f"env/{ENV}:flows/f0/1.0.json")
    _commit(ws, clone, {0: _coded("f0", "const rate = 3;\nreturn msg;")}, "v2")
    ws.cli("sync", ENV, check=True)
    files = ws.git("ls-tree", "-r", "--name-only", f"drift/{ENV}", cwd=ws.repo).split()
    assert files == ["flows/f0/1.0.json", "flows/f0/1.0/n1.func.js"], files
    assert ws.git("show", f"drift/{ENV}:flows/f0/1.0/n1.func.js", cwd=ws.repo) == code + "\n"
    saved = json.loads(ws.git("show", f"drift/{ENV}:flows/f0/1.0.json", cwd=ws.repo))
    assert "rate = 2" not in json.dumps(saved) and saved["nodes"][0]["name"] == "calc"
    assert json.loads((ws.env_dir(ENV) / "f0@1.0.json").read_text())["nodes"][0]["func"].startswith("const rate = 3")


SECRET = "hunter2-very-secret"


def test_a_templated_environment_never_puts_a_secret_value_into_drift(ws: Workspace) -> None:
    """f0's password is a placeholder (the live flow holds its rendered value: not the applied blob); f1's
    applied blob holds the secret's value as text (pushed by hand; the live flow is that blob). Neither
    value reaches drift/<env>: f0 is saved with its placeholder, f1 is refused and left as it is."""
    (ws.root / "secrets").mkdir()
    (ws.root / "secrets" / "DB_PASSWORD").write_text(SECRET + "\n")
    clone = _git_env(ws, {0: flow("f0", mark="v1", db={"password": "${secret:DB_PASSWORD}"}),
                          1: flow("f1", mark="v1", note=f"call with {SECRET}"), 2: flow("f2", mark="v1")},
                     secrets_dir="secrets", secrets_env_prefix="")
    assert json.loads((ws.env_dir(ENV) / "f0@1.0.json").read_text())["db"]["password"] == SECRET
    f1 = (ws.env_dir(ENV) / "f1@1.0.json").read_bytes()
    assert blob_id(f1) == _rev(ws, f"env/{ENV}:flows/f1/1.0.json"), "the shortcut's case"
    _commit(ws, clone, {i: flow(f"f{i}", mark="v2") for i in range(3)}, "v2")
    out = json.loads(ws.cli("sync", ENV, "--json").stdout)
    files = ws.git("ls-tree", "-r", "--name-only", f"drift/{ENV}", cwd=ws.repo).split()
    assert files == ["flows/f0/1.0.json", "flows/f2/1.0.json"]
    assert SECRET not in ws.git("log", "-p", f"drift/{ENV}", cwd=ws.repo)
    saved = json.loads(ws.git("show", f"drift/{ENV}:flows/f0/1.0.json", cwd=ws.repo))
    assert saved["db"] == {"password": "${secret:DB_PASSWORD}"} and saved["mark"] == "v1"
    assert _rev(ws, f"drift/{ENV}:flows/f2/1.0.json") == blob_id(_canonical(flow("f2", mark="v1")))
    assert (ws.env_dir(ENV) / "f1@1.0.json").read_bytes() == f1, "not overwritten: it could not be saved"
    assert [s["name"] for s in out["steps"] if "cannot be saved to drift" in (s.get("error") or "")] == ["f1"]


# -- the stat index's columns path --------------------------------------------------------------------

def _index(ws: Workspace) -> Path:
    return ws.repo / "reconciler" / "index" / ENV


def _rows(ws: Workspace) -> dict:
    return StatIndex(_index(ws) / "live", ws.env_dir(ENV), Identity(), RULES).load()


def _recorded_env(ws: Workspace) -> Path:
    """A folder of N flows exported to git, then recorded whole in the index by a plan (none racy)."""
    ws.add_env(ENV, drift="report", prune=True)
    ws.init_repo()
    for i in range(N):
        ws.put(ENV, f"f{i}@1.0.json", flow(f"f{i}", mark="aaaa"))
    ws.cli("export", ENV, check=True)
    time.sleep(1.1)
    ws.cli("plan", ENV, check=True)
    assert len(_rows(ws)) == N
    return ws.env_dir(ENV)


def _sig(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_mode, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def _truthful(ws: Workspace) -> int:
    """Every row of the index whose signature is its file's present one holds that file's flow; how many."""
    folder, n = ws.env_dir(ENV), 0
    for name, (sig, got) in _rows(ws).items():
        try:
            st = os.lstat(folder / name)
        except FileNotFoundError:
            continue
        if _sig(st) == sig:
            data = (folder / name).read_bytes()
            want = (FlowKey(json.loads(data)["name"], "1.0"), blob_id(canonical_bytes(data, RULES)))
            assert (got.key, got.oid) == want, name
            n += 1
    return n


def _plan(ws: Workspace) -> dict:
    proc = ws.cli("plan", ENV, "--json")
    assert proc.returncode in (0, 1, 2, 3), proc.stderr
    return json.loads(proc.stdout)


def _checked(ws: Workspace) -> dict:
    """A fresh plan with the index as it is; the same plan reading every file (the index folder deleted); the
    same again from the index the first plan wrote; every index left is truthful. Returns the plan."""
    got = _plan(ws)
    _truthful(ws)
    kept = ws.root / "kept-index"
    shutil.copytree(_index(ws), kept)
    shutil.rmtree(_index(ws))
    truth = _plan(ws)
    assert got == truth
    shutil.rmtree(_index(ws))
    shutil.copytree(kept, _index(ws))
    shutil.rmtree(kept)
    assert _plan(ws) == truth
    _truthful(ws)
    return truth


def _states(out: dict) -> dict:
    return {s["name"]: (s["state"], s["live"]) for s in out["steps"]}


def _problems(out: dict) -> list[tuple[str, str]]:
    return sorted((os.path.basename(p["where"]), p["message"]) for p in out["problems"])


def _oid(path: Path) -> str:
    return blob_id(canonical_bytes(path.read_bytes(), RULES))


def _same_size_edit(path: Path, old: str = "aaaa", new: str = "zzzz") -> None:
    st = path.stat()
    path.write_text(path.read_text().replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def test_an_edit_in_the_same_second_with_the_size_and_mtime_restored_is_read(ws: Workspace) -> None:
    folder = _recorded_env(ws)
    _same_size_edit(folder / "f1@1.0.json")
    time.sleep(1.1)  # not racy: only the signature can tell
    assert _states(_checked(ws)) == {"f1": ("drifted", _oid(folder / "f1@1.0.json"))}
    assert _truthful(ws) == N


def test_a_file_replaced_by_another_with_the_same_size_and_mtime_is_read(ws: Workspace) -> None:
    folder = _recorded_env(ws)
    path, tmp = folder / "f1@1.0.json", ws.root / "new.json"
    st = path.stat()
    tmp.write_text(path.read_text().replace("aaaa", "bbbb"))
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)
    time.sleep(1.1)
    assert _states(_checked(ws)) == {"f1": ("drifted", _oid(path))}


def test_a_file_renamed_over_another_flows_file_is_read_as_it_is(ws: Workspace) -> None:
    folder = _recorded_env(ws)
    os.replace(folder / "f1@1.0.json", folder / "f2@1.0.json")  # f2's file now holds f1; f2 is gone
    time.sleep(1.1)
    assert _states(_checked(ws)) == {"f2": ("drifted", None)}
    assert _rows(ws)["f2@1.0.json"][1].key == FlowKey("f1", "1.0") and "f1@1.0.json" not in _rows(ws)


def test_two_files_swapped_are_read_where_they_are(ws: Workspace) -> None:
    folder = _recorded_env(ws)
    os.replace(folder / "f1@1.0.json", ws.root / "swap")
    os.replace(folder / "f2@1.0.json", folder / "f1@1.0.json")
    os.replace(ws.root / "swap", folder / "f2@1.0.json")
    time.sleep(1.1)
    assert _states(_checked(ws)) == {}
    assert {n: e[1].key.name for n, e in _rows(ws).items() if n in ("f1@1.0.json", "f2@1.0.json")} == \
        {"f1@1.0.json": "f2", "f2@1.0.json": "f1"}
    live = DirectoryDriver(folder, Identity(), RULES).export()
    assert os.path.basename(live.where[FlowKey("f1", "1.0")]) == "f2@1.0.json"


def test_a_file_turned_into_a_symlink_or_a_folder_is_a_problem_never_a_deletion(ws: Workspace) -> None:
    folder = _recorded_env(ws)
    (folder / "f1@1.0.json").unlink()
    os.symlink("f3@1.0.json", folder / "f1@1.0.json")
    (folder / "f2@1.0.json").unlink()
    (folder / "f2@1.0.json").mkdir()
    time.sleep(1.1)
    out = _checked(ws)
    assert _problems(out) == [
        ("f1@1.0.json", "a symlink; skipped and left as it is (flows must be regular files)"),
        ("f2@1.0.json", "not a regular file; skipped and left as it is (flows must be regular files)")]
    assert _states(out) == {"f1": ("pending", None), "f2": ("pending", None)}
    assert {s["action"] for s in out["steps"]} == {"unknown"}, "left alone: never read as deleted"
    assert "f1@1.0.json" not in _rows(ws) and "f2@1.0.json" not in _rows(ws)


def test_a_file_deleted_and_another_created_under_its_name_is_read(ws: Workspace) -> None:
    folder = _recorded_env(ws)
    path = folder / "f3@1.0.json"
    st = path.stat()
    text = path.read_text().replace("aaaa", "cccc")
    path.unlink()
    path.write_text(text)  # the inode may well be reused
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    time.sleep(1.1)
    assert _states(_checked(ws)) == {"f3": ("drifted", _oid(path))}


def test_sub_folders_and_case_only_renames_are_seen_as_a_full_read_sees_them(ws: Workspace) -> None:
    folder = _recorded_env(ws)
    (folder / "sub").mkdir()
    (folder / "sub" / "g@1.0.json").write_text(json.dumps(flow("g")))  # not a flow of the folder
    (folder / "sub" / "f1@1.0.json").write_text(json.dumps(flow("f1", mark="other")))
    os.replace(folder / "f2@1.0.json", folder / "F2@1.0.json")
    os.replace(folder / "f3@1.0.json", folder / "F3@1.0.json")
    _same_size_edit(folder / "F3@1.0.json")
    (folder / "h@1.0.json").write_text(json.dumps(flow("h")))
    time.sleep(1.1)
    assert _states(_checked(ws)) == {"f3": ("drifted", _oid(folder / "F3@1.0.json")),
                                     "h": ("drifted", _oid(folder / "h@1.0.json"))}
    assert sorted(_rows(ws)) == ["F2@1.0.json", "F3@1.0.json", "f0@1.0.json", "f1@1.0.json", "f4@1.0.json",
                                 "h@1.0.json"]


def _rewrite(ws: Workspace, order) -> None:
    """The index file rewritten by the index's own writer with its rows in ``order`` (a list of row numbers)."""
    idx = StatIndex(_index(ws) / "live", ws.env_dir(ENV), Identity(), RULES)
    cols = idx.load_columns()
    assert cols is not None
    write_cache(idx.path, "directory-index", idx.fingerprint, {
        "written_at": cols.written, "names": [cols.names[i] for i in order],
        "sigs": [v for i in order for v in cols.sigs[5 * i:5 * i + 5]],
        "keys": [v for i in order for v in cols.keys[2 * i:2 * i + 2]], "oids": [cols.oids[i] for i in order]})


def test_an_index_out_of_name_order_or_with_a_name_twice_gives_a_full_reads_answer(ws: Workspace) -> None:
    folder = _recorded_env(ws)
    _rewrite(ws, list(reversed(range(N))))
    _same_size_edit(folder / "f0@1.0.json")
    (folder / "f4@1.0.json").unlink()
    time.sleep(1.1)
    assert _states(_checked(ws)) == {"f0": ("drifted", _oid(folder / "f0@1.0.json")), "f4": ("drifted", None)}
    assert _truthful(ws) == N - 1
    _rewrite(ws, [0, 1, 2, 3, 0])  # f0's row twice (one in place of another): not trusted at all
    assert StatIndex(_index(ws) / "live", folder, Identity(), RULES).load() == {}
    _same_size_edit(folder / "f1@1.0.json")
    assert _states(_checked(ws)) == {"f0": ("drifted", _oid(folder / "f0@1.0.json")), "f4": ("drifted", None),
                                     "f1": ("drifted", _oid(folder / "f1@1.0.json"))}


def test_a_damaged_or_foreign_index_gives_a_full_reads_answer(ws: Workspace) -> None:
    folder = _recorded_env(ws)
    other = ws.add_env("other", drift="report")
    for name in os.listdir(folder):
        shutil.copy2(folder / name, other / name)
    (other / "f2@1.0.json").write_text(json.dumps(flow("f2", mark="elsewhere")))
    time.sleep(1.1)
    ws.cli("export", "other", check=True)  # records the other folder (same file names)
    live = _index(ws) / "live"
    shutil.copy2(ws.repo / "reconciler" / "index" / "other" / "live", live)
    _same_size_edit(folder / "f1@1.0.json")
    truth = _checked(ws)
    assert _states(truth) == {"f1": ("drifted", _oid(folder / "f1@1.0.json"))}
    for damage in (lambda b: b[: len(b) // 2], lambda b: b[:-40] + b"0" * 40, lambda b: b.replace(b"f3", b"f9")):
        live.write_bytes(damage(live.read_bytes()))
        assert _plan(ws) == truth
        _truthful(ws)


def _process(ws: Workspace, fs: FileSystem | None = None, clock=None) -> DirectoryDriver:
    """Another process's driver on the CLI's index (the same folder, identity and rules)."""
    driver = DirectoryDriver(ws.env_dir(ENV), Identity(), RULES, fs=fs, clock=clock)
    driver.keep_index(_index(ws) / "live")
    return driver


def test_files_changed_by_another_process_while_an_export_runs_are_read_by_the_next_one(ws: Workspace) -> None:
    """Between the export's stat pass and its write of the index, f4 (not read: unchanged) and f1 (just
    read) are edited with their size and mtime kept: the index keeps no signature of theirs as new."""
    folder = _recorded_env(ws)
    _same_size_edit(folder / "f1@1.0.json")
    time.sleep(1.1)

    class Meanwhile(FileSystem):  # the real file system; another writer acts while f1 is read
        def read(self, path):  # type: ignore[override]
            if os.path.basename(path) != "f1@1.0.json":
                return super().read(path)
            _same_size_edit(folder / "f4@1.0.json")
            data = super().read(path)
            _same_size_edit(folder / "f1@1.0.json", "zzzz", "yyyy")
            return data

    driver = _process(ws, Meanwhile())
    driver.export()
    assert driver._scan._columns is not None, "the columns path"
    time.sleep(1.1)
    assert _states(_checked(ws)) == {"f1": ("drifted", _oid(folder / "f1@1.0.json")),
                                     "f4": ("drifted", _oid(folder / "f4@1.0.json"))}
    assert "yyyy" in (folder / "f1@1.0.json").read_text() and _truthful(ws) == N


def test_a_process_exporting_twice_leaves_no_stale_row_for_the_next_one(ws: Workspace) -> None:
    folder = _recorded_env(ws)
    _same_size_edit(folder / "f1@1.0.json")
    time.sleep(1.1)
    driver = _process(ws)
    driver.export()  # reads f1 (the columns' row of f1 is stale), writes the index over the one read
    _same_size_edit(folder / "f1@1.0.json", "zzzz", "yyyy")
    _same_size_edit(folder / "f2@1.0.json")
    (folder / "f3@1.0.json").unlink()
    (folder / "g@1.0.json").write_text(json.dumps(flow("g")))
    driver.export()  # the second export: racy reads, written over the same columns read at first
    assert driver._scan._columns is not None, "the columns path"
    time.sleep(1.1)
    assert _states(_checked(ws)) == {"f1": ("drifted", _oid(folder / "f1@1.0.json")),
                                     "f2": ("drifted", _oid(folder / "f2@1.0.json")), "f3": ("drifted", None),
                                     "g": ("drifted", _oid(folder / "g@1.0.json"))}
    assert "f3@1.0.json" not in _rows(ws) and _truthful(ws) == N


def test_a_clock_ahead_then_back_or_behind_gives_a_full_reads_answer(ws: Workspace) -> None:
    folder = _recorded_env(ws)
    hour = 3600 * 10**9
    _same_size_edit(folder / "f1@1.0.json")
    _process(ws, clock=lambda: time.time_ns() + hour).export()  # f1 recorded: an hour old by that clock
    _same_size_edit(folder / "f1@1.0.json", "zzzz", "yyyy")  # in the same second, its mtime kept
    assert _states(_checked(ws)) == {"f1": ("drifted", _oid(folder / "f1@1.0.json"))}
    _same_size_edit(folder / "f2@1.0.json")
    _process(ws, clock=lambda: time.time_ns() - hour).export()  # every file is "from the future": racy
    _same_size_edit(folder / "f2@1.0.json", "zzzz", "yyyy")
    time.sleep(1.1)
    assert _states(_checked(ws)) == {"f1": ("drifted", _oid(folder / "f1@1.0.json")),
                                     "f2": ("drifted", _oid(folder / "f2@1.0.json"))}


def test_an_export_that_found_an_invalid_file_leaves_an_index_that_reads_it_once_fixed(ws: Workspace) -> None:
    folder = _recorded_env(ws)
    path = folder / "f1@1.0.json"
    st = path.stat()
    broken = path.read_text().replace('"name"', '"nam"!')  # the same size, not JSON
    path.write_text(broken)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    time.sleep(1.1)
    proc = ws.cli("export", ENV)
    assert proc.returncode != 0 and "f1@1.0.json" in proc.stdout + proc.stderr
    assert "f1@1.0.json" not in _rows(ws) and _truthful(ws) == N - 1
    path.write_text(broken.replace('"nam"!', '"name"').replace("aaaa", "dddd"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    time.sleep(1.1)
    assert _states(_checked(ws)) == {"f1": ("drifted", _oid(path))}


def test_a_live_flow_equal_to_an_applied_blob_that_was_pruned_is_saved_from_the_folder(ws: Workspace) -> None:
    """The applied blob's object is gone from the repository (pruned); the marker's side is known from the
    kept reads, so nothing read it: the drift save reads the live flow and writes its blob again."""
    clone = _git_env(ws, {0: flow("f0", mark="v1"), 1: flow("f1", mark="v1")})
    oid = _rev(ws, f"env/{ENV}:flows/f0/1.0.json")
    loose = ws.repo / "objects" / oid[:2] / oid[2:]
    assert loose.exists(), "pushed as a loose object"
    _commit(ws, clone, {0: flow("f0", mark="v2")}, "v2")
    loose.unlink()
    assert ws.git("cat-file", "-e", oid, cwd=ws.repo, check=False) == "" and not loose.exists()
    proc = ws.cli("sync", ENV, "--json")
    out = json.loads(proc.stdout)
    assert out["drift_commit"] == _rev(ws, f"drift/{ENV}"), proc.stdout + proc.stderr
    assert _rev(ws, f"drift/{ENV}:flows/f0/1.0.json") == oid
    assert json.loads(ws.git("show", f"drift/{ENV}:flows/f0/1.0.json", cwd=ws.repo))["mark"] == "v1"
    assert json.loads((ws.env_dir(ENV) / "f0@1.0.json").read_text())["mark"] == "v2"


def test_a_file_name_that_is_not_utf8_is_read_every_time_and_never_breaks_the_index(ws: Workspace) -> None:
    """os gives such a name with surrogates, which the index file (JSON) cannot hold: every plan crashed
    writing it. The file is not recorded (read again by every process); the others are."""
    folder = _recorded_env(ws)
    odd = os.fsencode(folder) + b"/\xff@1.0.json"
    with open(odd, "wb") as out:
        out.write(json.dumps(flow("g", mark="odd")).encode())
    _same_size_edit(folder / "f1@1.0.json")
    time.sleep(1.1)
    oid = blob_id(canonical_bytes(open(odd, "rb").read(), RULES))
    assert _states(_checked(ws)) == {"f1": ("drifted", _oid(folder / "f1@1.0.json")), "g": ("drifted", oid)}
    assert _truthful(ws) == N and len(_rows(ws)) == N


def test_a_file_a_sync_just_wrote_edited_in_the_same_second_is_seen_by_the_next_process(ws: Workspace) -> None:
    """The sync restores f1 (drifted) and records the folder; f1 is edited at once, its size and mtime kept:
    the index holds no row for f1 as written (it was racy), so the next plan reads it."""
    folder = _recorded_env(ws)
    ws.envs[ENV]["drift"] = "restore"
    ws.write_config()
    path = folder / "f1@1.0.json"
    _same_size_edit(path)
    time.sleep(1.1)
    ws.cli("sync", ENV, check=True)
    assert "aaaa" in path.read_text(), "restored"
    _same_size_edit(path, "aaaa", "qqqq")
    assert _states(_checked(ws)) == {"f1": ("drifted", _oid(path))}
    assert _states(_plan(ws)) == {"f1": ("drifted", _oid(path))}


def test_a_flow_whose_ignore_rules_changed_since_the_applied_commit_is_saved_as_the_folder_has_it(
        ws: Workspace) -> None:
    """The applied blob holds a field the environment now ignores: the live flow is not that blob (its
    canonical bytes leave the field out), so the drift save is the live flow's, without the field."""
    clone = _git_env(ws, {0: flow("f0", mark="v1", stamp="s1"), 1: flow("f1", mark="v1", stamp="s1")})
    ws.envs[ENV]["ignore"] = ["/exportedAt", "/stamp"]
    ws.write_config()
    assert _states(_plan(ws)) == {}, "the field is ignored on every side"
    _commit(ws, clone, {0: flow("f0", mark="v2", stamp="s2")}, "v2")
    ws.cli("sync", ENV, check=True)
    saved = ws.git("show", f"drift/{ENV}:flows/f0/1.0.json", cwd=ws.repo).encode()
    assert saved == canonical_bytes(json.dumps(flow("f0", mark="v1")).encode(), RULES)
    assert ws.git("ls-tree", "-r", "--name-only", f"drift/{ENV}", cwd=ws.repo).split() == ["flows/f0/1.0.json"]
    assert json.loads((ws.env_dir(ENV) / "f0@1.0.json").read_text())["mark"] == "v2"
