"""Hostile cases of the clean record (reconciler.cli.fast) and the code fingerprint of the caches:
a user trying to make a cached answer wrong. Real processes, real git repositories, real folders.

Each test makes a record (or cache) that is right, then changes something the full path would see,
and checks the next answer is the full path's (never the record's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import flow, git_env
from tests.test_fast_clean import PROBE, Run, settle

CONFIG = """[repository]
path = "{repo}"

[[environment]]
name = "acceptance"
driver = "directory"
path = "{path}"
drift = "report"
ignore = ["/exportedAt"]
"""


def proc(cwd: Path, *args: str, config: str | None = None) -> Run:
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_CONFIG"}
    if config is not None:
        env["RECONCILER_CONFIG"] = config
    p = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, capture_output=True, timeout=120)
    return Run(p)


def folder_of_flows(path: Path, names: list[str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for n in names:
        (path / f"{n}.json").write_text(json.dumps(flow(n, "1.0"), indent=4))


def test_a_config_folder_behind_a_symlink_pointed_elsewhere_is_seen(tmp_path: Path) -> None:
    """The same config bytes under the same name: relative paths now name another environment folder."""
    repo = tmp_path / "repo.git"
    text = CONFIG.format(repo=repo, path="envs/acceptance")
    for v, names in (("v1", ["a", "b", "c"]), ("v2", ["a", "b", "c", "d"])):
        (tmp_path / v).mkdir()
        (tmp_path / v / "reconciler.toml").write_text(text)
        folder_of_flows(tmp_path / v / "envs" / "acceptance", names)
    cur = tmp_path / "cur"
    cur.symlink_to("v1")
    cfg = str(cur / "reconciler.toml")
    assert proc(tmp_path, "export", "acceptance", config=cfg).code == 0
    settle()
    assert not proc(tmp_path, "plan", "acceptance", config=cfg).fast
    assert proc(tmp_path, "plan", "acceptance", config=cfg).fast
    cur.unlink()
    cur.symlink_to("v2")  # the same file bytes, the same config path; envs/acceptance is v2's now
    got = proc(tmp_path, "plan", "acceptance", config=cfg)
    assert not got.fast, got.stdout
    assert b"in sync 3 \xc2\xb7 pending 0 \xc2\xb7 drifted 0" not in got.stdout  # flow d is new in the environment


def test_a_config_path_through_a_symlink_and_dotdot_is_the_file_opened(tmp_path: Path) -> None:
    """``sub/../reconciler.toml`` opens the file beside sub's target, not the one beside sub (what a
    lexical normalisation would name): another config, whose answer the record must not give."""
    repo = tmp_path / "repo.git"
    w = tmp_path / "w"
    other = tmp_path / "x"
    folder_of_flows(tmp_path / "a", ["a", "b", "c"])
    folder_of_flows(tmp_path / "b", ["a", "b"])
    w.mkdir()
    (other / "y").mkdir(parents=True)
    (w / "reconciler.toml").write_text(CONFIG.format(repo=repo, path=tmp_path / "a"))
    (other / "reconciler.toml").write_text(CONFIG.format(repo=repo, path=tmp_path / "b"))
    (w / "sub").symlink_to(other / "y")
    assert proc(w, "export", "acceptance", "--config", "reconciler.toml").code == 0
    settle()
    assert not proc(w, "plan", "acceptance", "--config", "reconciler.toml").fast
    assert proc(w, "plan", "acceptance", "--config", "reconciler.toml").fast
    got = proc(w, "plan", "acceptance", "--config", "sub/../reconciler.toml")  # x/reconciler.toml: folder b
    assert not got.fast
    assert got.code == 2, got.stdout  # b lacks flow c: deleted in the environment


def test_refs_under_a_symlinked_folder_are_not_vouched_for(tmp_path: Path) -> None:
    """git (and pygit2) follow a symlinked folder under refs/; a listing that does not descend into it
    would miss a branch moved there."""
    repo = tmp_path / "repo.git"
    (tmp_path / "reconciler.toml").write_text(CONFIG.format(repo=repo, path="envs/acceptance"))
    folder_of_flows(tmp_path / "envs" / "acceptance", ["a", "b", "c"])
    cfg = str(tmp_path / "reconciler.toml")
    assert proc(tmp_path, "export", "acceptance", config=cfg).code == 0
    env_refs = repo / "refs" / "heads" / "env"
    elsewhere = tmp_path / "refs-elsewhere"
    env_refs.rename(elsewhere)
    env_refs.symlink_to(elsewhere)
    settle()
    first = proc(tmp_path, "plan", "acceptance", config=cfg)
    assert first.code == 0, (first.stdout, first.stderr)
    second = proc(tmp_path, "plan", "acceptance", config=cfg)
    tip = subprocess.run(["git", "rev-parse", "env/acceptance"], cwd=repo, env=git_env(tmp_path), capture_output=True,
                         text=True, check=True).stdout.strip()
    moved = subprocess.run(["git", "commit-tree", "-m", "empty", "-p", tip, "4b825dc642cb6eb9a060e54bf8d69288fbee4904"],
                           cwd=repo, env=git_env(tmp_path), capture_output=True, text=True, check=True).stdout.strip()
    (elsewhere / "acceptance").write_text(moved + "\n")  # the branch now has no flows folder
    got = proc(tmp_path, "plan", "acceptance", config=cfg)
    assert not got.fast and got.code != 0, (second.fast, got.stdout)


def test_code_edited_with_its_size_and_mtime_put_back_is_not_trusted(tmp_path: Path) -> None:
    """``touch -d`` puts a module's mtime back after an edit of the same size: its ctime still moved.
    (A copy of the package without bytecode: Python compiles the edited source, as it would where no
    .pyc is kept.)"""
    import shutil

    import reconciler

    code = tmp_path / "code"
    shutil.copytree(Path(reconciler.__file__).parent, code / "reconciler", copy_function=shutil.copy2,
                    ignore=shutil.ignore_patterns("__pycache__"))
    repo = tmp_path / "repo.git"
    (tmp_path / "reconciler.toml").write_text(CONFIG.format(repo=repo, path="envs/acceptance"))
    folder_of_flows(tmp_path / "envs" / "acceptance", ["a", "b", "c"])
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_CONFIG"}
    env.update(PYTHONPATH=str(code), PYTHONDONTWRITEBYTECODE="1", RECONCILER_CONFIG=str(tmp_path / "reconciler.toml"))

    def go(*args: str) -> Run:
        return Run(subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, env=env, capture_output=True,
                                  timeout=120))

    assert go("export", "acceptance").code == 0
    settle()
    assert not go("plan", "acceptance").fast
    assert go("plan", "acceptance").fast
    module = code / "reconciler" / "cli" / "commands.py"
    st = module.stat()
    text = module.read_text()
    edited = text.replace("else EXIT_OK\n\n\ndef cmd_sync", "else 2 + 0*0\n\n\ndef cmd_sync")  # a clean plan exits 2
    assert edited != text and len(edited) == len(text)
    module.write_text(edited)
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert module.stat().st_size == st.st_size and module.stat().st_mtime_ns == st.st_mtime_ns
    got = go("plan", "acceptance")
    assert not got.fast and got.code == 2


def test_the_clock_stepped_back_during_the_run_keeps_no_record(tmp_path: Path) -> None:
    """The wall clock 30 s ahead at the start, then set right (NTP) during the run: an edit made in that
    run has a ctime older than the start minus the margin, which the racy rule would take for one the run
    had read. No record is kept (simulated: the first reading of the clock is 30 s ahead)."""
    repo = tmp_path / "repo.git"
    (tmp_path / "reconciler.toml").write_text(CONFIG.format(repo=repo, path="envs/acceptance"))
    folder_of_flows(tmp_path / "envs" / "acceptance", ["a", "b", "c"])
    cfg = str(tmp_path / "reconciler.toml")
    assert proc(tmp_path, "export", "acceptance", config=cfg).code == 0
    (tmp_path / "envs" / "acceptance" / "a.json").write_text(json.dumps(flow("a", "1.0"), indent=2))  # 1 s ago
    time.sleep(1)
    ahead = ("import time\n_real, _first = time.time_ns, [True]\n"
             "def _ns():\n    if _first:\n        _first.clear()\n        return _real() + 30 * 10**9\n    return _real()\n"
             "time.time_ns = _ns\n")
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_CONFIG"}
    env["RECONCILER_CONFIG"] = cfg
    got = Run(subprocess.run([sys.executable, "-c", ahead + PROBE, "plan", "acceptance"], cwd=tmp_path, env=env,
                             capture_output=True, timeout=120))
    assert got.code == 0 and not got.fast
    assert not (repo / "reconciler" / "index" / "acceptance" / "clean-plan-default").exists()


def test_a_library_upgraded_since_is_other_code(tmp_path: Path) -> None:
    """jsonschema replaced by a stricter release (here: a copy whose validators report every flow):
    what was validated with the old one is not vouched for."""
    import shutil

    import jsonschema

    deps = tmp_path / "deps"
    src = Path(jsonschema.__file__).parent
    shutil.copytree(src, deps / "jsonschema", ignore=shutil.ignore_patterns("__pycache__"))
    repo = tmp_path / "repo.git"
    (tmp_path / "schema.json").write_text(json.dumps({"type": "object", "required": ["name", "version"]}))
    (tmp_path / "reconciler.toml").write_text(
        CONFIG.format(repo=repo, path="envs/acceptance") + 'schema = "schema.json"\n')
    folder_of_flows(tmp_path / "envs" / "acceptance", ["a", "b", "c"])
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_CONFIG"}
    env.update(PYTHONPATH=os.pathsep.join([str(deps), os.environ.get("PYTHONPATH", "")]),
               RECONCILER_CONFIG=str(tmp_path / "reconciler.toml"))

    def go(*args: str) -> Run:
        return Run(subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, env=env, capture_output=True,
                                  timeout=120))

    assert go("export", "acceptance").code == 0
    settle()
    assert not go("plan", "acceptance").fast
    assert go("plan", "acceptance").fast
    shutil.rmtree(deps / "jsonschema")  # as pip upgrades: the old files go, the new ones come
    shutil.copytree(src, deps / "jsonschema", ignore=shutil.ignore_patterns("__pycache__"))
    with open(deps / "jsonschema" / "__init__.py", "a") as f:
        f.write("\nfrom jsonschema import validators as _v, exceptions as _e\n_real = _v.validator_for\n"
                "def _stricter(schema, *a, **k):\n"
                "    return _v.extend(_real(schema, *a, **k), {'required': lambda v, r, i, s: iter([_e.ValidationError("
                "'stricter')])})\n"
                "_v.validator_for = _stricter\n")
    got = go("plan", "acceptance")
    assert not got.fast and got.code != 0 and b"invalid 3" in got.stdout, got.stdout


def test_the_objects_of_the_repository_gone_are_an_error_not_in_sync(tmp_path: Path) -> None:
    """The same refs, but the objects they name deleted (a pack removed by hand, a broken copy): the
    full path cannot read the branch and says so; a record must not say "in sync"."""
    repo = tmp_path / "repo.git"
    (tmp_path / "reconciler.toml").write_text(CONFIG.format(repo=repo, path="envs/acceptance"))
    folder_of_flows(tmp_path / "envs" / "acceptance", ["a", "b", "c"])
    cfg = str(tmp_path / "reconciler.toml")
    assert proc(tmp_path, "export", "acceptance", config=cfg).code == 0
    settle()
    assert not proc(tmp_path, "plan", "acceptance", config=cfg).fast
    assert proc(tmp_path, "plan", "acceptance", config=cfg).fast
    objects = repo / "objects"
    gone = [p for p in objects.rglob("*") if p.is_file() and p.parent.name != "info"]
    assert gone
    for p in gone:
        p.unlink()
    got = proc(tmp_path, "plan", "acceptance", config=cfg)
    assert not got.fast and got.code == 1, (got.stdout, got.stderr)


def test_an_environment_folder_behind_a_symlink_pointed_elsewhere_is_seen(tmp_path: Path) -> None:
    repo = tmp_path / "repo.git"
    (tmp_path / "reconciler.toml").write_text(CONFIG.format(repo=repo, path="envs/current"))
    folder_of_flows(tmp_path / "envs" / "v1", ["a", "b", "c"])
    folder_of_flows(tmp_path / "envs" / "v2", ["a", "b"])
    (tmp_path / "envs" / "current").symlink_to("v1")
    cfg = str(tmp_path / "reconciler.toml")
    assert proc(tmp_path, "export", "acceptance", config=cfg).code == 0
    settle()
    assert not proc(tmp_path, "plan", "acceptance", config=cfg).fast
    assert proc(tmp_path, "plan", "acceptance", config=cfg).fast
    (tmp_path / "envs" / "current").unlink()
    (tmp_path / "envs" / "current").symlink_to("v2")
    got = proc(tmp_path, "plan", "acceptance", config=cfg)
    assert not got.fast and got.code == 2, got.stdout  # c is gone from the environment
