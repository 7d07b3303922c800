"""What a command imports before it does anything: the budget behind a fast ``--help`` and plan.

Imports are counted, not timed (timings are the bench's, ``python -m bench --cli``). The budget:

- ``import reconciler.cli`` (all that ``--help`` and ``--version`` need) is the standard library's
  argparse and at most :data:`CLI_MODULES` modules in all; none of pygit2, pydantic, structlog,
  orjson, jsonschema, croniter, nor the config, the engine or a driver;
- loading a config of directory environments imports no other driver, no croniter (no window)
  and no jsonschema (no schema); the command line's plan path imports no review, remote or service,
  and no notification machinery (the ``[[notify]]`` models only: ``reconciler.notify`` imports its
  dispatcher, sinks and HTTP client when a name of theirs is first used), and no structlog (nor the
  asyncio its standard-library integration imports): ``reconciler.logsetup`` imports it when the first
  event at an enabled level is emitted (tests/test_lazy_logging.py);
- a command line's config loaded from its cache (reconciler.configcache) builds no pydantic validator,
  so pydantic's plugin loader and ``importlib.metadata`` are not imported (tests/test_configcache.py);
- a cold ``export``, ``sync`` or ``plan`` of a directory environment (its config from the cache, the clean
  record not applying) imports no sync-window code (croniter, ``reconciler.windows``: only a config with
  windows), no semantic or code diff (``reconciler.semdiff``, ``reconciler.codediff``, difflib: reviews
  render them) and no JSON Schema module (``reconciler.schemas``: only an environment with a ``schema``);
- such a command (export, sync, plan, status of a directory environment; a sync of a Node-RED one) imports no
  pydantic, pydantic_core nor our pydantic models (``reconciler.config``, ``reconciler.envconfig``, the
  settings modules): its config is a tree of views (reconciler.configview); the same command validating its
  config says exactly the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

#: modules in sys.modules after ``import reconciler.cli`` (the interpreter alone has ~30; argparse ~45 more)
CLI_MODULES = 100
HEAVY = ("pygit2", "pydantic", "pydantic_core", "structlog", "orjson", "jsonschema", "croniter", "dateutil",
         "watchfiles", "apscheduler", "prometheus_client", "asyncio", "reconciler.config", "reconciler.engine",
         "reconciler.drivers")


def loaded_after(code: str, cwd: Path = REPO_ROOT) -> list[str]:
    probe = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def test_importing_the_command_line_pulls_nothing_heavy() -> None:
    mods = loaded_after("import reconciler.cli")
    heavy = [m for m in mods if m.split(".")[0] in HEAVY or any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []
    assert len(mods) <= CLI_MODULES, f"{len(mods)} modules (budget {CLI_MODULES})"


def test_a_directory_config_imports_only_its_own_driver(tmp_path: Path) -> None:
    (tmp_path / "envs" / "a").mkdir(parents=True)
    (tmp_path / "reconciler.toml").write_text('[[environment]]\nname = "a"\ndriver = "directory"\npath = "envs/a"\n')
    mods = loaded_after("from reconciler.config import load_config\nload_config('reconciler.toml')\n"
                        "import reconciler.engine, reconciler.cli.commands, reconciler.logsetup", cwd=tmp_path)
    unwanted = ("reconciler.drivers.node_red", "reconciler.drivers.http", "croniter", "jsonschema", "reconciler.review",
                "reconciler.remote", "reconciler.service", "reconciler.server", "watchfiles", "apscheduler",
                "reconciler.notify.dispatcher", "reconciler.notify.sinks", "reconciler.notify.status",
                "reconciler.notify.plan", "reconciler.drivers._http", "urllib.request", "http.client")
    assert [m for m in mods if m in unwanted or m.split(".")[0] in unwanted] == []


#: what a cold command of a directory environment without windows or schema does not import (see the docstring)
LAZY_FOR_A_DIRECTORY_RUN = ("reconciler.windows", "reconciler.semdiff", "reconciler.codediff", "reconciler.schemas",
                            "reconciler.review", "croniter", "difflib", "jsonschema")


def test_cold_export_sync_and_plan_of_a_directory_environment_import_no_lazy_module(tmp_path: Path, monkeypatch) -> None:
    """The commands as a user runs them (``main()`` reading ``sys.argv``: the one-shot path, the config from
    its cache on the second process), each after an edit so that the clean record does not answer."""
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    envdir = tmp_path / "envs" / "a"
    envdir.mkdir(parents=True)
    (tmp_path / "reconciler.toml").write_text('[[environment]]\nname = "a"\ndriver = "directory"\npath = "envs/a"\n')

    def run(expected: int, *argv: str) -> list[str]:
        return loaded_after(f"sys.argv = ['reconciler', *{list(argv)!r}]\nfrom reconciler.cli import main\n"
                            f"code = main()\nassert code == {expected}, code", cwd=tmp_path)

    # export (creating the repository), export (the config now from its cache), sync, plan (the edit: drift, 2)
    for i, (command, expected) in enumerate((("export", 0), ("export", 0), ("sync", 0), ("plan", 2))):
        (envdir / "one.json").write_text(json.dumps({"name": "one", "version": "1", "steps": [i]}))
        mods = run(expected, command, "a", "-q")
        assert "reconciler.engine" in mods, command  # the full path ran (not a clean record's answer)
        assert [m for m in mods if m in LAZY_FOR_A_DIRECTORY_RUN or m.split(".")[0] in LAZY_FOR_A_DIRECTORY_RUN] == [], command
    assert list((tmp_path / "cache" / "config").glob("*.config")), "the config cache was not used"


def test_the_notify_package_still_offers_every_name() -> None:
    """Its names are imported lazily (PEP 562), each from the module that defines it."""
    import reconciler.notify as notify

    for name in notify.__all__:
        assert getattr(notify, name) is not None, name
    from reconciler.notify import Dispatcher, post_plan_status, status_link

    assert Dispatcher.__module__ == "reconciler.notify.dispatcher" and callable(post_plan_status) and callable(status_link)


#: what a command whose config comes from its cache never imports: pydantic and our models (configview)
PYDANTIC_FREE = ("pydantic", "pydantic_core", "reconciler.config", "reconciler.envconfig", "reconciler.notify.settings",
                 "reconciler.drivers.directory.settings", "reconciler.drivers.node_red.settings")


def pydantic_in(mods: list[str]) -> list[str]:
    return [m for m in mods if m in PYDANTIC_FREE or m.split(".")[0] in PYDANTIC_FREE]


def command(cwd: Path, cache: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str, list[str]]:
    """One cold command as a user runs it (``main()`` reading ``sys.argv``): its exit code, its output with
    commit ids and the workspace's path made alike, and the modules it imported."""
    import os
    import re

    probe = (f"import sys\nsys.argv = ['reconciler', *{list(argv)!r}]\nfrom reconciler.cli import main\ncode = main()\n"
             "import json\nsys.stdout.flush()\nsys.__stdout__.write('\\n@@' + json.dumps([code, sorted(sys.modules)]))\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RECONCILER_CACHE_DIR": str(cache), "HOME": str(cwd), **(env or {})})
    out, sep, tail = proc.stdout.rpartition("\n@@")
    assert sep, proc.stdout + proc.stderr
    code, mods = json.loads(tail)

    def alike(text: str) -> str:
        return re.sub(r"\b[0-9a-f]{7,40}\b", "<sha>", text.replace(str(cwd), "<ws>"))

    return code, alike(out), alike(proc.stderr), mods


def directory_workspace(root: Path, flows: int = 100) -> Path:
    envdir = root / "envs" / "a"
    envdir.mkdir(parents=True)
    for i in range(flows):
        (envdir / f"f{i}.json").write_text(json.dumps({"name": f"f{i}", "version": "1", "steps": [i]}))
    (root / "reconciler.toml").write_text('[[environment]]\nname = "a"\ndriver = "directory"\npath = "envs/a"\n'
                                          'drift = "adopt"\n')
    return envdir


def test_a_cached_cold_command_imports_no_pydantic_and_says_what_validating_says(tmp_path: Path) -> None:
    """Two identical workspaces: in one each command validates its config (a new cache folder each time), in
    the other each takes its views from the cache. Same exit codes, same output; only the first imports
    pydantic. A 1% export, a sync, a plan with drift, status, and a bad config."""
    checked, cached = tmp_path / "checked", tmp_path / "cached"
    dirs = {ws: directory_workspace(ws) for ws in (checked, cached)}
    warm = tmp_path / "warm-cache"
    subprocess.run([sys.executable, "-c", "from reconciler.configcache import load_config_cached as l; l('reconciler.toml')"],
                   cwd=cached, check=True, timeout=60, env={**__import__("os").environ, "RECONCILER_CACHE_DIR": str(warm),
                                                            "HOME": str(cached)})

    def both(step: int, expected: int, *argv: str, bad: bool = False) -> None:
        fresh = tmp_path / f"fresh-{step}"
        a = command(checked, fresh, *argv)
        b = command(cached, warm, *argv)
        assert a[:3] == b[:3], (argv, a[:3], b[:3])
        assert a[0] == expected, (argv, a[:3])
        assert "pydantic" in a[3] and "reconciler.config" in a[3], argv  # validated
        if bad:
            assert "pydantic" in b[3]  # a bad config is never cached: validated, its errors exactly
        else:
            assert pydantic_in(b[3]) == [], (argv, pydantic_in(b[3]))
            assert "reconciler.engine" in b[3] or argv[0] == "status", argv

    def edit(i: int, flow: int = 7) -> None:
        for envdir in dirs.values():
            (envdir / f"f{flow}.json").write_text(json.dumps({"name": f"f{flow}", "version": "1", "steps": [-i]}))

    both(0, 0, "export", "a")
    edit(1)
    both(1, 0, "export", "a")  # 1 flow of 100
    edit(2)
    both(2, 0, "sync", "a")  # drift = adopt: the edit is committed
    edit(3)
    both(3, 2, "plan", "a")  # drift
    both(4, 0, "status")
    both(5, 0, "export", "a", "--json")
    for ws in (checked, cached):
        (ws / "reconciler.toml").write_text('[[environment]]\nname = "a"\ndriver = "directory"\npath = "envs/a"\n'
                                            'drift = "sometimes"\n')
    both(6, 1, "plan", "a", bad=True)
    both(7, 1, "plan", "a", bad=True)  # and again: still validated (nothing was kept)
    assert list((warm / "config").glob("*.config"))


def test_a_cached_sync_of_a_node_red_environment_imports_no_pydantic(tmp_path: Path) -> None:
    """Against a real Node-RED: the export validates its config, the sync after it takes it from the cache."""
    from tests.nodered import start_node_red

    nr = start_node_red(tmp_path / "node-red")
    try:
        ws = tmp_path / "ws"
        ws.mkdir()
        (ws / "reconciler.toml").write_text(f'[[environment]]\nname = "red"\ndriver = "node-red"\nurl = "{nr.url}"\n'
                                            'token_env = "NR_TOKEN"\ndrift = "restore"\n')
        env = {"NR_TOKEN": nr.token}
        nodes = [{"id": "t1", "type": "tab", "label": "orders", "env": []},
                 {"id": "n1", "type": "inject", "z": "t1", "name": "tick", "x": 100, "y": 80, "wires": [["n2"]]},
                 {"id": "n2", "type": "debug", "z": "t1", "name": "out", "x": 300, "y": 80, "wires": []}]
        nr.deploy(nodes)
        first = command(ws, tmp_path / "cache", "export", "red", env=env)
        assert first[0] == 0 and "pydantic" in first[3], first[:3]

        def renamed(name: str) -> None:
            nr.deploy([{**n, "name": name} if n["id"] == "n1" else n for n in nodes])

        renamed("edited")  # drift: the sync restores git's version
        synced = command(ws, tmp_path / "cache", "sync", "red", env=env)
        assert synced[0] == 0 and nr.node("n1")["name"] == "tick", synced[:3]
        assert "reconciler.drivers.node_red.driver" in synced[3] and pydantic_in(synced[3]) == []
        renamed("edited again")  # (another live version: saved to drift/red too)
        again = command(ws, tmp_path / "other-cache", "sync", "red", env=env)  # validated: the same answer
        assert again[:3] == synced[:3] and "pydantic" in again[3] and nr.node("n1")["name"] == "tick"
    finally:
        nr.close()


def test_a_cached_command_of_an_http_environment_imports_no_pydantic(tmp_path: Path) -> None:
    """The shipped HTTP example against tests/dpm_server.py: the export validates, the plan and the sync after
    it take the config from the cache (the http package names its settings lazily), and a validating sync
    says the same."""
    from tests.dpm_server import DpmServer

    with DpmServer("dpm-t0ken-7f3a") as dpm:
        ws = tmp_path / "ws"
        (ws / "envs" / "acceptance").mkdir(parents=True)
        example = (REPO_ROOT / "manifests/examples/http/reconciler.toml").read_text()
        (ws / "reconciler.toml").write_text(example.replace("https://dpm.example.com/api/v1", dpm.url))
        dpm.put({"name": "orders", "version": "1.0", "steps": [{"id": "s1", "type": "map"}]})
        env = {"DPM_TOKEN": "dpm-t0ken-7f3a"}
        first = command(ws, tmp_path / "cache", "export", "production", env=env)
        assert first[0] == 0 and "pydantic" in first[3], first[:3]
        dpm.edit("orders", "1.0", lambda doc: doc["steps"].append({"id": "s2", "type": "filter"}))  # drift
        planned = command(ws, tmp_path / "cache", "plan", "production", env=env)
        assert planned[0] == 2 and pydantic_in(planned[3]) == [], (planned[:3], pydantic_in(planned[3]))
        assert "reconciler.drivers.http.driver" in planned[3] and "reconciler.drivers.http.settings" not in planned[3]
        synced = command(ws, tmp_path / "cache", "sync", "production", env=env)
        assert synced[0] == 0 and pydantic_in(synced[3]) == [], synced[:3]
        assert [s["id"] for s in dpm.get("orders", "1.0")["steps"]] == ["s1"]  # restored from git
        dpm.edit("orders", "1.0", lambda doc: doc["steps"].append({"id": "s3", "type": "filter"}))
        again = command(ws, tmp_path / "other-cache", "sync", "production", env=env)  # validated: the same answer
        assert again[:3] == synced[:3] and "pydantic" in again[3]
        assert [s["id"] for s in dpm.get("orders", "1.0")["steps"]] == ["s1"]


# --- the dataclasses' compiled methods (reconciler.classcode; issue 15, fifth pass) -------------------------
# A separate block: what a cold command compiles is counted here, not timed. The cache's own hostile cases
# (truncated, corrupt, foreign, planted file, changed class, two processes at once) are tests/test_classcode.py.


def test_help_and_version_do_not_load_the_dataclass_code() -> None:
    """``--help`` and ``--version`` end in the parser: no file read, no ``dataclasses`` (nor its ``inspect``)."""
    mods = loaded_after("import reconciler.cli")
    assert [m for m in mods if m in ("reconciler.classcode", "dataclasses", "inspect")] == []


#: the modules of other commands, imported by their own command only (``reconciler.cli.commands._later``)
LAZY_COMMAND_MODULES = ("reconciler.cli.branches", "reconciler.cli.migrate", "reconciler.cli.render")


def test_a_cold_export_sync_and_plan_compile_no_dataclass_method_once_one_process_kept_them(tmp_path: Path,
                                                                                           monkeypatch) -> None:
    """The first command line process compiles the generated methods and keeps them; every later cold
    command (the full path: the clean record not answering) takes each one from the file, compiling none;
    and none of them imports another command's module (:data:`LAZY_COMMAND_MODULES`)."""
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    envdir = tmp_path / "envs" / "a"
    envdir.mkdir(parents=True)
    (tmp_path / "reconciler.toml").write_text('[[environment]]\nname = "a"\ndriver = "directory"\npath = "envs/a"\n')

    def run(i: int, expected: int, *argv: str) -> list:
        (envdir / "one.json").write_text(json.dumps({"name": "one", "version": "1", "steps": [i]}))
        code = (f"import sys, json\nsys.argv = ['reconciler', *{list(argv)!r}]\nfrom reconciler.cli import main\n"
                f"rc = main()\nassert rc == {expected}, rc\nimport reconciler.classcode as cc\n"
                "print(json.dumps([cc._store.new, len(cc._store.used), 'reconciler.engine' in sys.modules,\n"
                f"                  sorted(m for m in sys.modules if m in {LAZY_COMMAND_MODULES!r})]))")
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.splitlines()[-1])

    new, used, full, lazy = run(0, 0, "export", "a", "-q")
    assert new > 0 and used >= new and full and lazy == []
    for i, (command, expected) in enumerate((("export", 0), ("sync", 0), ("plan", 2)), start=1):
        new, used, full, lazy = run(i, expected, command, "a", "-q")
        assert full, command  # the full path ran
        assert (new, used > 50) == (0, True), command
        assert lazy == [], command  # the other commands' modules: imported by the command that runs them


def test_every_command_runs_its_own_module_when_it_is_imported_later() -> None:
    """What ``_later`` stands for is the very function of the command's module, called with the same arguments."""
    code = ("import sys\nfrom reconciler.cli.commands import COMMANDS\n"
            f"assert not [m for m in {LAZY_COMMAND_MODULES!r} if m in sys.modules]\n"
            "import reconciler.cli.branches as b, reconciler.cli.migrate as m, reconciler.cli.render as r\n"
            "seen = []\n"
            "for mod, name in ((b, 'cmd_promote'), (b, 'cmd_rollback'), (b, 'cmd_suspend'), (b, 'cmd_resume'),\n"
            "                  (r, 'cmd_render'), (m, 'cmd_migrate')):\n"
            "    setattr(mod, name, lambda args, config, name=name: seen.append((name, args, config)) or 7)\n"
            "for command in ('promote', 'rollback', 'suspend', 'resume', 'render', 'migrate'):\n"
            "    assert COMMANDS[command]('A', 'C') == 7\n"
            "assert seen == [(f'cmd_{c}', 'A', 'C') for c in ('promote', 'rollback', 'suspend', 'resume', 'render', 'migrate')]\n"
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
