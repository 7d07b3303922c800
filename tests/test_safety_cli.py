"""The command line as people type it (issue 11): global options before or after the subcommand,
every printed command runnable as printed, config mistakes refused at load, first-hour polish."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import build_parser
from tests.conftest import REPO_ROOT, Workspace, flow, git_env

# A decoy in the working folder: a command that read ./reconciler.toml instead of the one
# given with --config would fail on it (or act on its environment, which is not there).
DECOY = '[repository]\npath = "decoy/flows.git"\n\n[[environment]]\nname = "decoy"\ndriver = "directory"\npath = "decoy"\n'


@pytest.fixture
def elsewhere(ws: Workspace) -> tuple[Workspace, Path]:
    """A workspace with acceptance exported and production synced, and a folder holding a different config."""
    ws.add_env("acceptance", drift="adopt")
    ws.add_env("production", drift="restore", prune=True)
    ws.put("acceptance", "orders.json", flow("orders"))
    ws.cli("export", "acceptance", check=True)
    ws.branch("env/production", "env/acceptance")
    ws.cli("sync", "production", check=True)
    other = ws.root / "other"
    other.mkdir()
    (other / "reconciler.toml").write_text(DECOY)
    return ws, other


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "RECONCILER_CONFIG"}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120)


COMMANDS = [
    ["export", "acceptance"], ["plan", "production"], ["sync", "production"], ["status"], ["status", "production"],
    ["history", "production"], ["validate"], ["validate", "--branch", "env/production"],
    ["promote", "acceptance", "production"], ["rollback", "production", "--to", "env/production"],
    ["sync", "production", "--dry-run"],
]


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c[:2]))
def test_config_is_honoured_before_and_after_every_subcommand(elsewhere, command, where) -> None:
    """`reconciler --config X CMD` and `reconciler CMD --config X` both use X, not ./reconciler.toml."""
    ws, other = elsewhere
    args = ["--config", str(ws.config), *command] if where == "before" else [*command, "--config", str(ws.config)]
    out = run(args, other)
    assert out.returncode in (0, 2), (args, out.stdout, out.stderr)
    assert "decoy" not in out.stdout + out.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_every_global_option_works_in_either_position(elsewhere, where) -> None:
    """-c, -v, --log-level, --log-format, --no-progress take effect wherever they are written."""
    ws, other = elsewhere
    (ws.env_dir("production") / "orders@1.0.json").write_text(json.dumps(flow("orders", note="drift")))
    opts = ["-c", str(ws.config), "-v", "--log-format", "json", "--no-progress", "--log-level", "info"]
    args = [*opts, "sync", "production"] if where == "before" else ["sync", "production", *opts]
    out = run(args, other)
    assert out.returncode == 0, out.stdout + out.stderr
    events = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "flow reconciled" and e.get("level") == "info" for e in events), out.stderr


def test_the_subcommand_wins_when_an_option_is_given_in_both_places(elsewhere) -> None:
    """The value closest to the subcommand's arguments is the one used, as in git."""
    ws, other = elsewhere
    out = run(["--config", str(other / "reconciler.toml"), "status", "--config", str(ws.config)], other)
    assert out.returncode == 0 and "production" in out.stdout


def test_every_subcommand_help_has_a_description_and_its_exit_codes() -> None:
    """`reconciler CMD --help` says what the command does and which exit codes it uses."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name, p in sub.choices.items():
        text = p.format_help()
        assert p.description and len(p.description) > 20, name
        assert "exit codes:" in text and "64 usage error" in text, name
        assert "global options" in text, name


@pytest.mark.parametrize(("example", "last"), [("directory", "in sync 1"), ("flink-sql", "high-value-orders@1.sql")])
def test_the_example_configs_print_commands_that_run_as_printed(tmp_path: Path, example: str, last: str) -> None:
    """The header of a local example runs line by line from a checkout's root (a copy here)."""
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(checkout)], check=True, env=git_env(tmp_path))
    (checkout / "reconciler.toml").write_text(DECOY)  # a different config where the commands run
    header = (checkout / f"manifests/examples/{example}/reconciler.toml").read_text()
    lines = [m.group(1) for m in re.finditer(r"^#   (.+)$", header, flags=re.M)]
    assert len(lines) >= 5
    env = git_env(tmp_path)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env.pop("RECONCILER_CONFIG", None)
    for line in lines:
        out = subprocess.run(["bash", "-ec", line], cwd=checkout, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{line}\n{out.stdout}\n{out.stderr}"
    assert last in out.stdout
    untracked = subprocess.run(["git", "status", "--porcelain"], cwd=checkout, capture_output=True, text=True).stdout
    assert untracked.split("\n") == ["?? reconciler.toml", ""], untracked


@pytest.mark.parametrize("example", ["http", "node-red"])
def test_the_platform_example_commands_use_the_example_config(tmp_path: Path, example: str) -> None:
    """The printed command of a platform example reads that example (it fails only on the platform)."""
    header = (REPO_ROOT / f"manifests/examples/{example}/reconciler.toml").read_text()
    command = next(m.group(1) for m in re.finditer(r"^#   (.*reconciler --config.+)$", header, flags=re.M))
    copy = tmp_path / "manifests" / "examples" / example
    copy.mkdir(parents=True)
    (copy / "reconciler.toml").write_text(header.replace("https://dpm.example.com", "http://127.0.0.1:9"))
    (copy / "envs" / "acceptance").mkdir(parents=True)
    (tmp_path / "reconciler.toml").write_text(DECOY)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    env.pop("RECONCILER_CONFIG", None)
    command = command.replace("DPM_TOKEN=...", "DPM_TOKEN=t0ken-0123456789abcdef")
    out = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "decoy" not in out.stderr
    assert "127.0.0.1" in out.stderr, out.stderr  # it tried the example's platform


@pytest.mark.parametrize(("name", "why"), [("prod.lock", "'.lock'"), ("a..b", "'..'"), ("a.", "end with '.'")])
def test_an_environment_name_that_cannot_be_a_ref_is_refused_when_the_config_loads(ws: Workspace, name, why) -> None:
    """prod.lock, a..b and a. would fail at the first commit; they are refused with the reason."""
    ws.add_env(name)
    out = ws.cli("status")
    assert out.returncode == 1 and f"environment[0].name = {name!r}" in out.stderr and why in out.stderr


def test_two_environments_on_one_folder_through_a_symlink_are_refused(ws: Workspace) -> None:
    """Folders are compared by their real path."""
    ws.add_env("a")
    (ws.root / "envs" / "b").symlink_to(ws.env_dir("a"))
    ws.envs["b"] = {"drift": "report"}
    ws.write_config()
    out = ws.cli("status")
    assert out.returncode == 1 and "each environment needs its own folder" in out.stderr


def test_a_config_without_environments_is_refused(ws: Workspace) -> None:
    ws.config.write_text('[repository]\npath = "state/flows.git"\n')
    out = ws.cli("status")
    assert out.returncode == 1 and "no environment" in out.stderr and "reconciler schema" in out.stderr


def test_a_missing_config_names_the_folder_searched(tmp_path: Path) -> None:
    out = run(["status"], tmp_path)
    assert out.returncode == 1 and f"looked for {tmp_path}/reconciler.toml" in out.stderr


def test_an_unknown_key_points_to_reconciler_schema(ws: Workspace) -> None:
    """The hint is a command every install has, not a file of the source tree."""
    ws.add_env("a", colour="blue")
    out = ws.cli("status")
    assert out.returncode == 1 and "`reconciler schema`" in out.stderr and "manifests/" not in out.stderr


def test_status_never_cuts_words(ws: Workspace) -> None:
    """An environment without a marker says '(never)' whole."""
    ws.add_env("acceptance")
    ws.put("acceptance", "o.json", flow("orders"))
    ws.cli("export", "acceptance", check=True)
    ws.add_env("production")
    ws.branch("env/production", "env/acceptance")
    out = ws.cli("status", check=True)
    assert "applied (never)" in out.stdout


def test_an_export_with_unreadable_files_says_so_and_counts_them_as_invalid(ws: Workspace) -> None:
    ws.add_env("acceptance")
    ws.put("acceptance", "o.json", flow("orders"))
    ws.put("acceptance", "broken.json", "{not json")
    out = ws.cli("export", "acceptance")
    assert out.returncode == 1
    assert "1 flow could not be read" in out.stdout.splitlines()[0]
    counts = json.loads(ws.cli("plan", "acceptance", "--json").stdout)["counts"]
    assert counts["invalid"] == 1 and counts["pending"] == 0


def test_promote_twice_reuses_the_open_branch(elsewhere) -> None:
    """The same promotion again does not create a second identical branch."""
    ws, _ = elsewhere
    ws.put("acceptance", "orders.json", flow("orders", note="v2"))
    ws.cli("export", "acceptance", check=True)
    first = ws.cli("promote", "acceptance", "production", check=True)
    second = ws.cli("promote", "acceptance", "production", check=True)
    assert "already prepared as" in second.stdout
    assert len(ws.git("for-each-ref", "refs/heads/promote/", cwd=ws.repo).splitlines()) == 1, first.stdout


def test_quiet_sync_prints_the_summary_and_failures_only(elsewhere) -> None:
    ws, _ = elsewhere
    for i in range(5):
        ws.put("acceptance", f"f{i}.json", flow(f"flow-{i}"))
    ws.cli("export", "acceptance", check=True)
    clone = ws.clone("env/production")
    ws.git("merge", "-q", "origin/env/acceptance", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    out = ws.cli("sync", "production", "-q", check=True)
    assert out.stdout.splitlines() == ["production (sync): in sync 6 · pending 0 · drifted 0 · conflict 0 · invalid 0",
                                       "  5 flows reconciled"]


def test_ctrl_c_after_the_work_does_not_say_interrupted(elsewhere) -> None:
    """A SIGINT while the result prints (the work is recorded) exits with the result, not 130."""
    ws, _ = elsewhere
    script = ("import os, signal, sys\n"
              "import reconciler.cli as cli\n"
              "import reconciler.cli.commands as commands\n"
              "real = commands._render\n"
              "def render(args, out):\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    real(args, out)\n"
              "commands._render = render\n"
              f"sys.exit(cli.main(['--config', {str(ws.config)!r}, 'sync', 'production']))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "interrupted" not in out.stderr, out.stderr
    assert "production (sync)" in out.stdout
