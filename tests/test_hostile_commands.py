"""The commands a user types after the first export, given ordinary mistakes and hostile input: a missing
thing is an error (never "empty"), nothing is deleted on a guess, `--json` stays JSON, usage errors exit 64."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Workspace, flow


@pytest.fixture
def envs(ws: Workspace) -> Workspace:
    """acceptance exported (two flows, then one changed), production started from it and synced, staging never exported."""
    ws.add_env("acceptance", drift="adopt")
    ws.add_env("staging")
    ws.add_env("production", drift="restore", prune=True)
    ws.put("acceptance", "orders.json", flow("orders"))
    ws.put("acceptance", "billing.json", flow("billing", "2"))
    ws.cli("export", "acceptance", check=True)
    ws.branch("env/production", "env/acceptance")
    ws.cli("sync", "production", check=True)
    ws.put("acceptance", "orders.json", flow("orders", retries=3))
    ws.cli("export", "acceptance", check=True)
    return ws


def tip(ws: Workspace, ref: str) -> str:
    return ws.git("rev-parse", ref, cwd=ws.repo).strip()


def pushed_commit(ws: Workspace, tag: str, change: str) -> None:
    """A commit on production's line whose tree `change` (a shell snippet) made, pushed as a tag."""
    clone = ws.clone("env/production", name=f"clone-{tag}")
    ws.git("rm", "-q", "-r", "flows", cwd=clone)
    (clone / "other.txt").write_text("x\n")
    if change == "readme":
        (clone / "flows").mkdir()
        (clone / "flows" / "README.md").write_text("no flows here\n")
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-q", "-m", f"{tag}", cwd=clone)
    ws.git("tag", tag, cwd=clone)
    ws.git("push", "-q", "origin", tag, cwd=clone)


# -- rollback -----------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_a_rollback_to_a_tree_without_flows_is_refused_naming_the_option_that_allows_it(envs: Workspace, as_json) -> None:
    ws = envs
    pushed_commit(ws, "wiped", "readme")
    before = tip(ws, "env/production")
    out = ws.cli("rollback", "production", "--to", "wiped", *(["--json"] if as_json else []))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "every flow" in out.stderr and "--allow-mass-delete" in out.stderr and "Traceback" not in out.stderr
    if as_json:
        assert "--allow-mass-delete" in json.loads(out.stdout)["error"]
    assert tip(ws, "env/production") == before
    allowed = ws.cli("rollback", "production", "--to", "wiped", "--allow-mass-delete")
    assert allowed.returncode == 0 and "remove   orders@1.0" in allowed.stdout, allowed.stderr
    assert tip(ws, "env/production") != before


def test_a_rollback_to_a_commit_without_the_flows_folder_is_an_error_not_no_flows(envs: Workspace) -> None:
    ws = envs
    pushed_commit(ws, "nofolder", "none")
    before = tip(ws, "env/production")
    for extra in ([], ["--allow-mass-delete"]):
        out = ws.cli("rollback", "production", "--to", "nofolder", *extra)
        assert out.returncode == 1 and "has no flows/ folder" in out.stderr, out.stdout + out.stderr
    assert tip(ws, "env/production") == before


def test_a_rollback_to_another_environments_commit_is_refused_pointing_at_promote(envs: Workspace) -> None:
    ws = envs
    before = tip(ws, "env/production")
    out = ws.cli("rollback", "production", "--to", "env/acceptance", "--json")
    assert out.returncode == 1
    error = json.loads(out.stdout)["error"]
    assert "is a commit of env/acceptance (acceptance)" in error and "reconciler promote acceptance production" in error
    assert tip(ws, "env/production") == before
    # A commit both branches hold (production started from it) is production's own past: allowed.
    first = tip(ws, "env/acceptance~1")
    assert ws.cli("rollback", "production", "--to", first).returncode == 0


# -- promote ------------------------------------------------------------------------


def test_promote_to_an_environment_without_a_branch_is_an_error_saying_how_to_start_it(envs: Workspace) -> None:
    """A promotion into a branch that is not there had no base: a root-commit branch, and printed `git checkout
    env/staging && git merge ...` steps that fail."""
    ws = envs
    out = ws.cli("promote", "acceptance", "staging", "--json")
    assert out.returncode == 1, out.stdout + out.stderr
    error = json.loads(out.stdout)["error"]
    assert "env/staging does not exist yet" in error and "branch env/staging env/acceptance" in error
    assert ws.git("for-each-ref", "refs/heads/promote/", cwd=ws.repo) == ""


def test_promote_from_a_branch_without_the_flows_folder_is_an_error_not_a_removal_of_every_flow(envs: Workspace) -> None:
    ws = envs
    clone = ws.clone("env/acceptance", name="wipe")
    ws.git("rm", "-q", "-r", "flows", cwd=clone)
    (clone / "README.md").write_text("moved\n")
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-q", "-m", "moved the flows away", cwd=clone)
    ws.git("push", "-q", "origin", "env/acceptance", cwd=clone)
    out = ws.cli("promote", "acceptance", "production")
    assert out.returncode == 1 and "env/acceptance has no flows/ folder" in out.stderr, out.stdout + out.stderr
    assert ws.git("for-each-ref", "refs/heads/promote/", cwd=ws.repo) == ""


# -- history ------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "says"), [
    (("history", "staging"), "env/staging does not exist"),
    (("history", "production", "--drift"), "drift/production does not exist"),
    (("history", "production", "ordres"), "no flow 'ordres'"),
    (("history", "production", "orders", "9.9"), "no flow 'orders' version '9.9'"),
])
def test_history_of_something_that_is_not_there_is_an_error_not_an_empty_list(envs: Workspace, args, says) -> None:
    out = envs.cli(*args, "--json")
    assert out.returncode == 1, out.stdout + out.stderr
    assert says in json.loads(out.stdout)["error"] and says in out.stderr


@pytest.mark.parametrize("args", [("-n", "0"), ("-n", "-1"), ("",), ("orders", "")])
def test_history_refuses_a_count_below_one_and_an_empty_name(envs: Workspace, args) -> None:
    """-n 0 printed one commit and -n -1 all; an empty name showed the whole branch."""
    out = envs.cli("history", "production", *args)
    assert out.returncode == 64, out.stdout + out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr


# -- usage errors and --json ----------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("plan", "prodution", "--json"), ("plan", "prodution", "--format", "json"),
    ("promote", "acceptance", "prodution", "--json"), ("rollback", "production", "--json"),
    ("history", "production", "-n", "x", "--json"), ("status", "--json", "--nosuch"),
    ("plan", "production", "--status", "--json"), ("validate", "--branch", "", "--json"),
    ("validate", "--branch", "env/production", "flows", "--json"),
])
def test_a_usage_error_with_json_prints_json_and_exits_64(envs: Workspace, args) -> None:
    """Scripts reading stdout as JSON got nothing at all for a usage error."""
    out = envs.cli(*args)
    assert out.returncode == 64, out.stdout + out.stderr
    assert json.loads(out.stdout)["error"] and "error:" in out.stderr


@pytest.mark.parametrize("args", [("validate", "--branch", ""), ("validate", "")])
def test_an_empty_branch_or_path_for_validate_is_a_usage_error(envs: Workspace, args) -> None:
    """An unset "$BRANCH" checked every environment's branch (or the working folder) and said 0 problems."""
    out = envs.cli(*args)
    assert out.returncode == 64 and "empty" in out.stderr, out.stdout + out.stderr


# -- render -------------------------------------------------------------------------


def test_render_of_a_flow_that_is_not_there_is_an_error(envs: Workspace) -> None:
    """A typo'd --flow printed "no event-processing flow to render" and exited 0."""
    out = envs.cli("render", "--branch", "env/production", "--flow", "ordres")
    assert out.returncode == 1 and "no event-processing flow 'ordres' in env/production" in out.stderr, out.stderr


def test_render_of_a_branch_without_the_flows_folder_is_an_error(envs: Workspace) -> None:
    pushed_commit(envs, "nofolder", "none")
    out = envs.cli("render", "--branch", "nofolder")
    assert out.returncode == 1 and "nofolder has no flows/ folder" in out.stderr, out.stdout + out.stderr


@pytest.mark.parametrize("before, command", [
    (["--json"], ["plan", "production"]),
    (["-q", "--dry-run"], ["sync", "production"]),
    # an option with its value as a separate word: argparse takes the value for the command
    (["--format", "json"], ["plan", "production"]),
    (["-n", "1"], ["history", "production"]),
], ids=["json", "two", "with-a-value", "number"])
def test_a_command_option_before_the_command_says_where_it_goes_and_does_nothing(envs: Workspace, before,
                                                                                  command) -> None:
    """`reconciler --json plan production`: exit 64, nothing run, and the message is the command to copy."""
    head = tip(envs, "env/production")
    out = envs.cli(*before, *command)
    assert out.returncode == 64, out.stderr
    fixed = f"reconciler {' '.join([*command, *before])}"
    assert f"of `{command[0]}`: put" in out.stderr and f"`{fixed}`" in out.stderr, out.stderr
    if "json" in before:
        assert fixed in json.loads(out.stdout)["error"]
    assert tip(envs, "env/production") == head
    again = envs.cli(*command, *before)  # as printed: it runs
    assert again.returncode in (0, 2), again.stderr


def test_validate_says_which_branches_it_did_not_check_and_fails_when_it_checked_none(envs: Workspace) -> None:
    """staging was never exported: validate checks the others and says staging's branch is not there; with
    no environment's branch at all (a wrong repository) it is an error, never "0 problems"."""
    out = envs.cli("validate")
    assert out.returncode == 0, out.stderr
    assert "not checked: env/staging (staging) does not exist yet; `reconciler export staging` starts it" in out.stderr
    doc = json.loads(envs.cli("validate", "--json").stdout)
    assert doc["ok"] and doc["not_checked"] == ["env/staging"]
    assert {r["target"] for r in doc["results"]} == {"env/acceptance", "env/production"}
    wrong = envs.root / "wrong.toml"
    envs.git("init", "-q", "--bare", str(envs.root / "empty.git"))
    wrong.write_text(envs.config.read_text().replace("state/flows.git", "empty.git"))
    for args in (["validate"], ["validate", "--json"]):
        bad = envs.cli("--config", str(wrong), *args)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert "no environment's branch is in" in bad.stderr and "nothing was validated" in bad.stderr
        if "--json" in args:
            assert "nothing was validated" in json.loads(bad.stdout)["error"]


def test_suspending_a_flow_git_does_not_hold_says_so_and_the_printed_resume_undoes_it(envs: Workspace) -> None:
    """A typo (or a flow held before its merge): the hold stands, exit 0, and a note names the branch's
    flows and the command that undoes it; a flow git holds gets no note."""
    out = envs.cli("suspend", "production", "--flow", "ordres")
    assert out.returncode == 0, out.stderr
    assert "note: no flow ordres on env/production (its flows: billing, orders); it is held when it arrives" \
        in out.stderr, out.stderr
    fix = out.stderr.split("`")[1]
    assert fix == "reconciler resume production --flow ordres"
    undone = envs.cli(*fix.split()[1:])
    assert undone.returncode == 0 and "not suspended" in undone.stdout, undone.stdout + undone.stderr
    real = envs.cli("suspend", "production", "--flow", "orders@1.0")
    assert real.returncode == 0 and "note:" not in real.stderr, real.stderr
    envs.cli("resume", "production", "--flow", "orders@1.0", check=True)
