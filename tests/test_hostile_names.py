"""Names that are not UTF-8, and a first export that must not leave an empty repository behind.

- a path in git whose bytes are not UTF-8 (a user's clone on a Latin-1 system): every ``--json``
  output stays valid UTF-8 JSON and names the path (``\\udcXX`` escapes), cold and warm;
- a file in the environment folder whose name is not UTF-8: read under the name its JSON gives (the
  file name was never the flow's identity), answered again on the next process;
- a config in a folder whose name is not UTF-8: refused when the config loads, naming the folder,
  before anything is created (it used to fail half-way through an export with a traceback);
- an export with a mistyped repository path and a missing environment folder: the folder's error,
  and no repository at the mistyped path (which would make every later command find an empty
  repository instead of saying there is none); the same for a one-way (flink-sql) environment.

Real git (the git CLI plays the user), real folders, the real command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Workspace, flow, git_env

LATIN1 = b"caf\xe9"  # "café" in Latin-1: not UTF-8


def _json(out: subprocess.CompletedProcess[bytes]) -> dict:
    """stdout decoded strictly as UTF-8 and parsed: what a script reading ``--json`` does."""
    return json.loads(out.stdout.decode("utf-8"))


def _cli(ws: Workspace, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, RECONCILER_CONFIG=str(ws.config))
    return subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=ws.root, env=env, capture_output=True,
                          timeout=120)


def _push_bytes_path(ws: Workspace, rel: bytes, doc: dict) -> None:
    """A user's clone adds a file whose path is the given bytes and pushes it to env/acc."""
    clone = ws.clone("env/acc")
    target = os.path.join(os.fsencode(clone), rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as fh:
        fh.write(json.dumps(doc, indent=2).encode())
    env = git_env(ws.root)
    for cmd in (["add", "-A"], ["commit", "-qm", "a file named in Latin-1"], ["push", "-q", "origin", "env/acc"]):
        subprocess.run(["git", *cmd], cwd=clone, env=env, check=True, capture_output=True, timeout=60)


def test_a_path_in_git_that_is_not_utf8_keeps_every_json_output_valid(ws: Workspace) -> None:
    ws.add_env("acc", drift="report")
    ws.put("acc", "orders.json", flow("orders"))
    ws.cli("export", "acc", check=True)
    _push_bytes_path(ws, b"flows/" + LATIN1 + b"/1.0.json", flow("cafe"))
    shown = "flows/caf\udce9/1.0.json"
    for cmd in (["plan", "acc", "--json"], ["sync", "acc", "--json"], ["plan", "acc", "--json"],
                ["export", "acc", "--json"], ["status", "--json"]):
        out = _cli(ws, *cmd)
        doc = _json(out)  # strict UTF-8: raised before the fix (the path's byte went out raw)
        assert out.returncode in (0, 1, 2), (cmd, out.returncode, out.stderr)
        if cmd[0] != "status":
            wheres = [p["where"] for p in doc["problems"]]
            assert any(w.startswith(shown) for w in wheres), (cmd, wheres)
    text = _cli(ws, "plan", "acc")  # the human form names it too, readably
    assert "caf\\udce9" in text.stdout.decode() + text.stderr.decode()
    assert ws.live("acc") == {("orders", "1.0"): ws.live("acc")[("orders", "1.0")]}  # nothing else written
    assert (ws.env_dir("acc") / "orders.json").exists()


def test_a_file_name_in_the_folder_that_is_not_utf8_is_read_under_its_json_name(ws: Workspace) -> None:
    folder = ws.add_env("acc", drift="report")
    with open(os.path.join(os.fsencode(folder), LATIN1 + b".json"), "wb") as fh:
        fh.write(json.dumps(flow("cafe"), indent=2).encode())
    ws.put("acc", "orders.json", flow("orders"))
    out = _cli(ws, "export", "acc", "--json")
    assert out.returncode == 0, out.stderr
    assert _json(out)["problems"] == []
    tree = ws.git("ls-tree", "-r", "--name-only", "env/acc", cwd=ws.repo).split()
    assert "flows/cafe/1.0.json" in tree and "flows/orders/1.0.json" in tree
    for _ in range(2):  # a second and third process: the same answer, nothing to export
        again = _cli(ws, "export", "acc")
        assert again.returncode == 0 and b"nothing to export" in again.stdout, again.stdout + again.stderr
        plan = _cli(ws, "plan", "acc", "--json")
        assert plan.returncode == 0 and _json(plan)["counts"]["in_sync"] == 2
    # an edit of that file is seen by the next process (it is never answered from a stat index)
    with open(os.path.join(os.fsencode(folder), LATIN1 + b".json"), "wb") as fh:
        fh.write(json.dumps(flow("cafe", note="edited"), indent=2).encode())
    edited = _cli(ws, "export", "acc")
    assert edited.returncode == 0 and b"cafe@1.0" in edited.stdout, edited.stdout
    assert json.loads(ws.git("show", "env/acc:flows/cafe/1.0.json", cwd=ws.repo))["note"] == "edited"


def test_a_config_in_a_folder_named_in_latin1_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    root = os.path.join(os.fsencode(tmp_path), b"work-" + LATIN1)
    os.makedirs(os.path.join(root, b"envs", b"acc"))
    with open(os.path.join(root, b"envs", b"acc", b"orders.json"), "w") as fh:
        json.dump(flow("orders"), fh)
    with open(os.path.join(root, b"reconciler.toml"), "w") as fh:
        fh.write('[repository]\npath = "state/flows.git"\n\n[[environment]]\nname = "acc"\n'
                 'driver = "directory"\npath = "envs/acc"\n')
    for args in (["export", "acc"], ["plan", "acc", "--json"], ["status"]):
        out = subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=root, capture_output=True, timeout=120,
                             env={k: v for k, v in os.environ.items() if k != "RECONCILER_CONFIG"})
        err = out.stdout.decode("utf-8") + out.stderr.decode("utf-8")  # readable as UTF-8 too
        assert out.returncode == 1, (args, out.returncode, err)
        assert "not valid UTF-8" in err and "work-caf\\udce9" in err and "Traceback" not in err, err
        if "--json" in args:
            assert "not valid UTF-8" in " ".join(_json(out)["details"])
    assert not os.path.exists(os.path.join(root, b"state")), "nothing is created for a config refused"
    # with absolute paths in UTF-8 the same folder's config works
    good = tmp_path / "good"
    (good / "acc").mkdir(parents=True)
    (good / "acc" / "orders.json").write_text(json.dumps(flow("orders")))
    with open(os.path.join(root, b"reconciler.toml"), "w") as fh:
        fh.write(f'[repository]\npath = "{good}/flows.git"\n\n[[environment]]\nname = "acc"\n'
                 f'driver = "directory"\npath = "{good}/acc"\n')
    out = subprocess.run([sys.executable, "-m", "reconciler", "export", "acc"], cwd=root, capture_output=True,
                         timeout=120, env={k: v for k, v in os.environ.items() if k != "RECONCILER_CONFIG"})
    assert out.returncode == 0 and b"exported to env/acc" in out.stdout, out.stdout + out.stderr


def test_a_failed_first_export_leaves_no_repository_at_a_mistyped_path(ws: Workspace) -> None:
    ws.add_env("acc")
    ws.put("acc", "orders.json", flow("orders"))
    typo = ws.root / "typo.toml"
    typo.write_text(ws.config.read_text().replace("state/flows.git", "state/flwos.git")
                    .replace('path = "envs/acc"', 'path = "envs/acx"'))
    out = ws.cli("--config", str(typo), "export", "acc")
    assert out.returncode == 1 and "envs/acx does not exist" in out.stderr, out.stderr
    assert not (ws.root / "state" / "flwos.git").exists(), "an empty repository was left at the mistyped path"
    plan = ws.cli("--config", str(typo), "plan", "acc")  # still says what is missing, not "empty"
    assert plan.returncode == 1 and "no git repository at" in plan.stderr, plan.stderr
    # once the folder is right, the export creates the repository (a new path is how a repository starts)
    typo.write_text(typo.read_text().replace("envs/acx", "envs/acc"))
    made = ws.cli("--config", str(typo), "export", "acc")
    assert made.returncode == 0 and "exported to env/acc" in made.stdout, made.stderr
    assert ws.git("ls-tree", "-r", "--name-only", "env/acc", cwd=ws.root / "state" / "flwos.git").split() == [
        "flows/orders/1.0.json"]


def test_a_first_export_of_a_one_way_environment_creates_no_repository(ws: Workspace) -> None:
    (ws.root / "envs" / "sql").mkdir(parents=True)
    ws.config.write_text('[repository]\npath = "state/flows.git"\n\n[[environment]]\nname = "sql"\n'
                         'driver = "flink-sql"\npath = "envs/sql"\ndrift = "report"\n')
    out = ws.cli("export", "sql")
    assert out.returncode == 1 and "SQL cannot be imported" in out.stderr, out.stderr
    assert not ws.repo.exists()
