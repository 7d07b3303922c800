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
