"""Flink SQL environments (driver = "flink-sql"), with real git (the git CLI plays the user) and
real folders: sync renders each event-processing flow with the environment's params and secrets,
promotion gives each environment its own, git holds no secret, drift on a script is restored (the
edit saved to drift/<env> without its secrets), and SQL is refused everywhere it is offered as a flow.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.flows import sql_export
from tests.conftest import Workspace

EXAMPLES = Path(__file__).resolve().parents[1] / "manifests" / "examples" / "event-processing"
SECURED, TOTALS = "large-payments-secured", "order-totals"
SECRETS = {
    "acceptance": {"KAFKA_PASSWORD": "acc-pa\"ss;w'rd-1", "TRUSTSTORE_PASSWORD": "acc-trust-pw"},
    "production": {"KAFKA_PASSWORD": "prod-Sup3r'S3cr\"t", "TRUSTSTORE_PASSWORD": "prod-trust-pw"},
}
BOOTSTRAP = {"acceptance": "kafka-0.acc.internal:9093", "production": "kafka-0.prod.internal:9093,kafka-1.prod.internal:9093"}


def _config(ws: Workspace, drift: str = "restore", extra: str = "") -> None:
    lines = ['[repository]', 'path = "state/flows.git"', ""]
    for env in ("acceptance", "production"):
        (ws.root / "envs" / env).mkdir(parents=True, exist_ok=True)
        secrets = ws.root / "secrets" / env
        secrets.mkdir(parents=True, exist_ok=True)
        for name, value in SECRETS[env].items():
            (secrets / name).write_text(value)
        lines += ["[[environment]]", f'name = "{env}"', 'driver = "flink-sql"', f'path = "envs/{env}"',
                  f'drift = "{drift}"', "prune = true", f'secrets_dir = "secrets/{env}"',
                  f"params = {{ KAFKA_BOOTSTRAP = {json.dumps(BOOTSTRAP[env])}, MIN_PAYMENT = \"5000\", "
                  f"TRUSTSTORE = \"/etc/flink/{env}/truststore.p12\" }}", extra, ""]
    ws.config.write_text("\n".join(lines))


def _seed(ws: Workspace, *names: str) -> Path:
    """A user commits event-processing flows to env/acceptance with the git CLI and pushes."""
    ws.init_repo()
    clone = ws.root / "work"
    ws.git("clone", "-q", str(ws.repo), str(clone))
    ws.git("checkout", "-q", "-b", "env/acceptance", cwd=clone)
    for name in names:
        doc = json.loads((EXAMPLES / f"{name}.json").read_text())
        target = clone / "flows" / name / f"{doc['version']}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(doc, indent=2) + "\n")
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-qm", "event-processing flows", cwd=clone)
    ws.git("push", "-q", "origin", "env/acceptance", cwd=clone)
    return clone


def _version(name: str) -> str:
    return str(json.loads((EXAMPLES / f"{name}.json").read_text())["version"])


def _file(name: str) -> str:
    return f"{name}@{_version(name)}.sql"


def _script(ws: Workspace, env: str, name: str) -> str:
    return (ws.root / "envs" / env / _file(name)).read_text()


def _everything_in_git(ws: Workspace) -> str:
    """Every object reachable from every ref of the repository, as text."""
    return ws.git("log", "-p", "--all", "--format=%H %s", cwd=ws.repo) + ws.git(
        "for-each-ref", "--format=%(refname) %(objectname)", cwd=ws.repo)


@pytest.fixture
def fws(ws: Workspace) -> Workspace:
    _config(ws)
    _seed(ws, SECURED, TOTALS)
    return ws


def test_sync_renders_each_flow_with_the_environments_params_and_secrets(fws: Workspace) -> None:
    out = fws.cli("sync", "acceptance")
    assert out.returncode == 0, out.stdout + out.stderr
    sql = _script(fws, "acceptance", SECURED)
    assert "'properties.bootstrap.servers' = 'kafka-0.acc.internal:9093'" in sql
    assert "/etc/flink/acceptance/truststore.p12" in sql and "acc-trust-pw" in sql
    # The JAAS password, escaped for JAAS (\") and then for the SQL literal (''):
    assert 'password="acc-pa\\"ss;w\'\'rd-1"' in sql
    assert sorted(p.name for p in (fws.root / "envs/acceptance").iterdir()) == [_file(SECURED), _file(TOTALS)]
    # Byte for byte what `reconciler render --env` gives (one renderer).
    out_dir = fws.root / "rendered"
    out_dir.mkdir()
    rendered = fws.cli("render", "--branch", "env/acceptance", "--env", "acceptance", "--flow", SECURED,
                       "-o", str(out_dir))
    assert rendered.returncode == 0 and (out_dir / _file(SECURED)).read_text() == sql
    # On a terminal or in a log the secrets are masked: stdout never shows them.
    shown = fws.cli("render", "--branch", "env/acceptance", "--env", "acceptance", "--flow", SECURED)
    assert "acc-trust-pw" not in shown.stdout and "***" in shown.stdout
    again = fws.cli("plan", "acceptance")
    assert again.returncode == 0, again.stdout + again.stderr  # nothing to do: the files compare equal


def test_promotion_gives_each_environment_its_own_servers_and_credentials_and_git_holds_neither(fws: Workspace) -> None:
    assert fws.cli("sync", "acceptance").returncode == 0
    fws.git("branch", "env/production", "env/acceptance~0", cwd=fws.repo)  # production starts with the same flows
    fws.git("update-ref", "refs/heads/env/production", fws.git("rev-parse", "env/acceptance", cwd=fws.repo).strip(),
            cwd=fws.repo)
    # Acceptance gets a new version of order-totals; promote it, merge as a person would, sync production.
    clone = fws.root / "work"
    fws.git("pull", "-q", "origin", "env/acceptance", cwd=clone)
    path = clone / "flows" / TOTALS / f"{_version(TOTALS)}.json"
    doc = json.loads(path.read_text())
    doc["nodes"][0]["name"] = doc["nodes"][0]["name"] + " (v2)"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    fws.git("commit", "-qam", "order-totals: renamed source", cwd=clone)
    fws.git("push", "-q", "origin", "env/acceptance", cwd=clone)
    synced = fws.cli("sync", "acceptance")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    promoted = fws.cli("promote", "acceptance", "production")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    branch = next(w for w in promoted.stdout.split() if w.startswith("promote/"))
    fws.git("fetch", "-q", "origin", cwd=clone)
    fws.git("checkout", "-q", "-b", "env/production", "origin/env/production", cwd=clone)
    fws.git("merge", "-q", "--no-edit", f"origin/{branch}", cwd=clone)
    fws.git("push", "-q", "origin", "env/production", cwd=clone)
    out = fws.cli("sync", "production")
    assert out.returncode == 0, out.stdout + out.stderr
    prod, acc = _script(fws, "production", TOTALS), _script(fws, "acceptance", TOTALS)
    assert "(v2)" in prod and BOOTSTRAP["production"] in prod and BOOTSTRAP["acceptance"] not in prod
    assert BOOTSTRAP["acceptance"] in acc and BOOTSTRAP["production"] not in acc
    secured = _script(fws, "production", SECURED)
    assert "prod-trust-pw" in secured and "acc-trust-pw" not in secured
    history = _everything_in_git(fws)
    for env in SECRETS:
        for value in SECRETS[env].values():
            assert value not in history and value.replace('"', '\\"') not in history
    for env in BOOTSTRAP:
        assert BOOTSTRAP[env] not in history  # params stay placeholders in git too


def test_an_edited_script_is_restored_and_the_edit_saved_to_drift_without_its_secrets(fws: Workspace) -> None:
    assert fws.cli("sync", "acceptance").returncode == 0
    path = fws.root / "envs/acceptance" / _file(SECURED)
    original = path.read_bytes()
    edited = original.decode().replace("'scan.startup.mode' = 'earliest-offset'", "'scan.startup.mode' = 'latest-offset'")
    edited = edited.replace("-- Kind: event-processing", "-- Kind: event-processing\n-- hotfix by ops at 3am")
    path.write_text(edited)
    plan = fws.cli("plan", "acceptance")
    assert plan.returncode == 2 and "drift" in plan.stdout.lower(), plan.stdout
    out = fws.cli("sync", "acceptance")
    assert out.returncode == 0, out.stdout + out.stderr
    assert path.read_bytes() == original
    saved = fws.git("show", f"drift/acceptance:flows/{SECURED}/{_version(SECURED)}.json", cwd=fws.repo)
    doc = json.loads(saved)
    assert doc["kind"] == "flink-sql" and "hotfix by ops at 3am" in doc["sql"]
    assert "${secret:KAFKA_PASSWORD}" in doc["sql"] and "${secret:TRUSTSTORE_PASSWORD}" in doc["sql"]
    for value in SECRETS["acceptance"].values():
        assert value not in _everything_in_git(fws)


def test_a_new_password_typed_into_a_script_is_redacted_in_what_git_keeps(fws: Workspace) -> None:
    assert fws.cli("sync", "acceptance").returncode == 0
    path = fws.root / "envs/acceptance" / _file(SECURED)
    text = path.read_text()
    typed = text.replace("acc-trust-pw", "typed-in-by-hand-9")
    assert typed != text
    path.write_text(typed)
    assert fws.cli("sync", "acceptance").returncode == 0
    assert "typed-in-by-hand-9" not in _everything_in_git(fws)
    assert path.read_text() == text


def test_with_drift_report_an_edited_script_is_reported_and_left(ws: Workspace) -> None:
    _config(ws, drift="report")
    _seed(ws, TOTALS)
    assert ws.cli("sync", "acceptance").returncode == 0
    path = ws.root / "envs/acceptance" / _file(TOTALS)
    path.write_text(path.read_text() + "\n-- a note\n")
    out = ws.cli("sync", "acceptance")
    assert "a note" in path.read_text()
    status = json.loads(ws.cli("status", "acceptance", "--json").stdout)["environments"][0]
    assert status["counts"]["drifted"] == 1, out.stdout


def test_a_deleted_flow_removes_its_script_and_a_missing_script_is_written_again(fws: Workspace) -> None:
    assert fws.cli("sync", "acceptance").returncode == 0
    (fws.root / "envs/acceptance" / _file(TOTALS)).unlink()
    assert fws.cli("sync", "acceptance").returncode == 0
    assert (fws.root / "envs/acceptance" / _file(TOTALS)).exists()
    clone = fws.root / "work"
    fws.git("pull", "-q", "origin", "env/acceptance", cwd=clone)
    fws.git("rm", "-q", "-r", f"flows/{TOTALS}", cwd=clone)
    fws.git("commit", "-qm", "retire order-totals", cwd=clone)
    fws.git("push", "-q", "origin", "env/acceptance", cwd=clone)
    out = fws.cli("sync", "acceptance", "--allow-mass-delete")
    assert out.returncode == 0, out.stdout + out.stderr
    assert not (fws.root / "envs/acceptance" / _file(TOTALS)).exists()


def test_adopt_is_refused_when_the_config_loads(ws: Workspace) -> None:
    _config(ws, drift="adopt")
    out = ws.cli("status")
    assert out.returncode == 1 and "SQL cannot be imported" in out.stderr and 'drift = "adopt"' in out.stderr


def test_export_of_a_flink_sql_environment_is_refused(fws: Workspace) -> None:
    out = fws.cli("export", "acceptance")
    assert out.returncode == 1 and "SQL cannot be imported" in out.stderr
    assert fws.git("branch", "--list", "env/acceptance", cwd=fws.repo).strip()


def test_a_flow_that_is_not_event_processing_or_cannot_render_never_reaches_the_folder(fws: Workspace) -> None:
    clone = fws.root / "work"
    (clone / "flows/plain").mkdir(parents=True)
    (clone / "flows/plain/1.json").write_text(json.dumps({"name": "plain", "version": "1", "steps": []}))
    broken = json.loads((EXAMPLES / "high-value-orders.json").read_text())
    broken["name"] = "broken"
    broken["edges"] = broken["edges"][:-1]  # the destination is no longer reached
    (clone / "flows/broken").mkdir(parents=True)
    (clone / "flows/broken/1.json").write_text(json.dumps(broken, indent=2))
    fws.git("add", "-A", cwd=clone)
    fws.git("commit", "-qm", "two bad flows", cwd=clone)
    fws.git("push", "-q", "origin", "env/acceptance", cwd=clone)
    out = fws.cli("sync", "acceptance")
    assert out.returncode == 1
    assert "event-processing flows only" in out.stdout + out.stderr
    assert "flows/broken/1.json" in out.stdout + out.stderr
    names = sorted(p.name for p in (fws.root / "envs/acceptance").iterdir())
    assert names == [_file(SECURED), _file(TOTALS)]  # the others went on


def test_stray_files_in_a_flink_sql_folder_are_reported_not_read(fws: Workspace) -> None:
    assert fws.cli("sync", "acceptance").returncode == 0
    folder = fws.root / "envs/acceptance"
    (folder / "notes.json").write_text("{}")
    (folder / "scratch.sql").write_text("SELECT 1;")
    shutil.copy(folder / _file(TOTALS), folder / _file(TOTALS).replace(".sql", "-kept-2.sql"))
    out = fws.cli("plan", "acceptance")
    text = out.stdout + out.stderr
    assert "notes.json" in text and "JSON file in a flink-sql environment" in text
    assert "scratch.sql" in text and "not named <name>@<version>.sql" in text
    assert _file(TOTALS).replace(".sql", "-kept-2.sql") in text and "its header says it is" in text
    assert (folder / "scratch.sql").exists() and (folder / "notes.json").exists()


# -- SQL offered as a flow: one message from each place ----------------------------------------

def _sql_file(name: str = "orders.sql") -> str:
    return (Path(__file__).parent / "data/eventproc" / f"{TOTALS}.sql").read_text()


def test_sql_in_a_directory_environment_folder_is_refused_with_the_message(ws: Workspace) -> None:
    folder = ws.add_env("dev", drift="adopt")
    (folder / "orders.sql").write_text(_sql_file())
    (folder / "totals.json").write_text(_sql_file())  # SQL text in a .json
    out = ws.cli("export", "dev")
    text = out.stdout + out.stderr
    assert out.returncode == 1
    assert sql_export("orders.sql") in text and sql_export("this file") in text


def test_sql_on_a_branch_is_refused_by_validate_plan_and_sync(ws: Workspace) -> None:
    folder = ws.add_env("dev", drift="restore")
    ws.init_repo()
    clone = ws.root / "work"
    ws.git("clone", "-q", str(ws.repo), str(clone))
    ws.git("checkout", "-q", "-b", "env/dev", cwd=clone)
    (clone / "flows/orders").mkdir(parents=True)
    (clone / "flows/orders/1.sql").write_text(_sql_file())
    (clone / "flows/totals").mkdir(parents=True)
    (clone / "flows/totals/1.json").write_text(_sql_file())
    (clone / "flows/ok").mkdir(parents=True)
    (clone / "flows/ok/1.json").write_text(json.dumps({"name": "ok", "version": "1"}))
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-qm", "sql where flows go", cwd=clone)
    ws.git("push", "-q", "origin", "env/dev", cwd=clone)
    validate = ws.cli("validate", "--branch", "env/dev")
    assert validate.returncode == 1 and "SQL exports cannot be imported" in validate.stdout + validate.stderr
    sync = ws.cli("sync", "dev")
    text = sync.stdout + sync.stderr
    assert sync.returncode == 1 and "SQL exports cannot be imported" in text
    assert "flows/orders/1.sql" in text and "flows/totals/1.json" in text
    assert [p.name for p in folder.iterdir()] == ["ok@1.json"]  # the others went on
    files = ws.cli("validate", str(clone / "flows/totals/1.json"))
    assert files.returncode == 1 and sql_export("this file") in files.stdout + files.stderr


def test_render_refuses_sql_input(tmp_path: Path) -> None:
    sql = tmp_path / "orders.sql"
    sql.write_text(_sql_file())
    out = subprocess.run([sys.executable, "-m", "reconciler", "render", str(sql)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 1 and "SQL exports cannot be imported" in out.stderr


def test_the_service_restores_an_edited_script_through_the_folder_watch(fws: Workspace) -> None:
    from tests.servicekit import ServiceProcess, wait_for

    text = fws.config.read_text().replace('drift = "restore"', 'drift = "restore"\ninterval = 3600')
    fws.config.write_text(text)
    with ServiceProcess(fws.config) as svc:
        path = fws.root / "envs/acceptance" / _file(TOTALS)
        wait_for(lambda: path.exists() and svc.status("acceptance")["runs"] >= 1, what="the startup sync")
        original = path.read_text()
        path.write_text(original.replace("CREATE TABLE", "CREATE TABLE /* edited */", 1))
        wait_for(lambda: path.read_text() == original, what="the edit to be restored")
        wait_for(lambda: fws.git("branch", "--list", "drift/acceptance", cwd=fws.repo).strip(), what="the drift save")


def test_render_without_an_environment_says_which_parameters_stay_placeholders(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "manifests/examples/event-processing/large-payments-secured.json"
    out = subprocess.run([sys.executable, "-m", "reconciler", "render", str(example)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0 and "${param:MIN_PAYMENT}" in out.stdout
    assert "parameters left as placeholders (KAFKA_BOOTSTRAP, MIN_PAYMENT, TRUSTSTORE)" in out.stderr
    assert "--env ENV" in out.stderr
