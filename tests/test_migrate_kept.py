"""The form check every export runs first (``reconciler.migrate``) keeps what it found beside the
repository, so a fresh process reads only flows that changed. The record may cost a full check,
never a wrong answer: real repositories, the real command line, a person pushing with `git`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from reconciler.sidecars import StoredFlow, join
from tests.conftest import Workspace
from tests.test_sidecars_git import clone, push_files, restore_old_repository, setup


def kept(ws: Workspace, env: str) -> Path:
    return ws.repo / "reconciler" / "index" / env / "form"


def split_files(ws: Workspace, branch: str) -> list[str]:
    return [f for f in ws.git("ls-tree", "-r", "--name-only", branch, cwd=ws.repo).split() if not f.endswith(".json")]


def recorded(ws: Workspace, env: str) -> tuple[dict[str, str], dict[str, str]]:
    """(the kept record, every flow of the branch as the record would name it)."""
    from reconciler.config import load_config
    from reconciler.gitstore import GitStore
    from reconciler.migrate import _checked, _name

    config = load_config(ws.config)
    store = GitStore.from_config(config.repository)
    e = config.env(env)
    tree = store.flows_at(store.tip(e.branch_name), e.folder)
    return _checked(store, e), {_name(k): v for k, v in tree.flows.items()}


def test_what_an_export_wrote_is_on_record_so_the_next_export_reads_none_of_it(ws: Workspace) -> None:
    setup(ws)  # the first export created env/acceptance
    ws.put("acceptance", "second.json", {"name": "second", "version": "2", "nodes": [
        {"id": "f", "type": "function", "func": "return msg;"}]})
    assert "exported" in ws.cli("export", "acceptance", check=True).stdout
    record, flows = recorded(ws, "acceptance")
    assert len(flows) == 2 and record == flows  # the new commit's flows, written in the form, are on record
    # A flow changed by a person is not on record until a check has read it.
    ada = clone(ws, "ada", "env/acceptance")
    person = ada / "flows/second/2.json"
    person.write_text(person.read_text() + "\n")
    push_files(ws, ada, "acceptance: a blank line", branch="env/acceptance")
    record, flows = recorded(ws, "acceptance")
    second = "6:second\x002"
    assert record[second] != flows[second]  # the record vouches for the old entry only: the new one is read
    assert {k: v for k, v in record.items() if k != second} == {k: v for k, v in flows.items() if k != second}


def test_a_flow_pushed_back_into_one_file_is_moved_by_the_next_export_though_the_rest_were_kept(ws: Workspace) -> None:
    setup(ws)
    assert ws.cli("export", "acceptance", check=True).stdout.startswith("acceptance: nothing to export")
    assert kept(ws, "acceptance").is_file()  # the check of every flow is on record
    sidecars = split_files(ws, "env/acceptance")
    assert sidecars  # the orders flow's code lives in its own files
    # A person puts the code back inline (as a single-file tool would) and pushes.
    ada = clone(ws, "ada", "env/acceptance")
    folder = ada / "flows/orders/1"
    stored = StoredFlow((ada / "flows/orders/1.json").read_bytes(),
                        {p.name: p.read_bytes() for p in folder.iterdir()})
    doc, _, problems = join(json.loads(stored.json), stored, where="flows/orders/1.json")
    assert not problems
    shutil.rmtree(ada / "flows/orders/1")
    (ada / "flows/orders/1.json").write_text(json.dumps(doc, indent=2) + "\n")
    push_files(ws, ada, "acceptance: code inline", branch="env/acceptance")
    assert split_files(ws, "env/acceptance") == []
    out = ws.cli("export", "acceptance", check=True).stdout
    assert "moved 1 flow of env/acceptance to the split form" in out, out
    assert split_files(ws, "env/acceptance") == sidecars


def test_other_settings_or_a_broken_record_mean_every_flow_is_checked_again(ws: Workspace) -> None:
    restore_old_repository(ws)
    assert "would move 2 flows" in ws.cli("migrate", "production", "--dry-run", check=True).stdout
    record = kept(ws, "production")
    assert record.is_file()  # plain@1.0 was found in the form; the two with code were not
    # A truncated record: the two flows with inline code are still found.
    record.write_bytes(record.read_bytes()[:40])
    assert "would move 2 flows" in ws.cli("migrate", "production", "--dry-run", check=True).stdout
    ws.cli("migrate", "production", check=True)
    assert ws.cli("migrate", "production", check=True).stdout.startswith("production: nothing to migrate")
    # Switching the environment to the single-file form: the record of the split check is not used.
    text = ws.config.read_text()
    marker = 'name = "production"\n'
    assert marker in text
    ws.config.write_text(text.replace(marker, marker + 'form = "single-file"\n', 1))
    out = ws.cli("migrate", "production", check=True).stdout
    assert "2 flows" in out, out
    assert split_files(ws, "env/production") == []


def whole(ws: Workspace, env: str) -> Path:
    return ws.repo / "reconciler" / "index" / env / "form-tree"


def _check(ws: Workspace, env: str, monkeypatch):
    """migrate_env in a fresh store, with the flows it reads counted (None: it read no record at all)."""
    from reconciler import migrate
    from reconciler.config import load_config
    from reconciler.gitstore import GitStore

    read: list = []
    checked, target = migrate._checked, migrate._target
    with monkeypatch.context() as m:
        m.setattr(migrate, "_checked", lambda store, e: read.append("record") or checked(store, e))
        m.setattr(migrate, "_target", lambda store, e, key, *a: read.append(key) or target(store, e, key, *a))
        config = load_config(ws.config)
        out = migrate.migrate_env(GitStore.from_config(config.repository), config.env(env), dry_run=True)
    return out, read


def test_a_folder_tree_found_wholly_in_the_form_is_not_checked_again(ws: Workspace, monkeypatch) -> None:
    setup(ws)
    ws.put("acceptance", "second.json", {"name": "second", "version": "2", "nodes": [
        {"id": "f", "type": "function", "func": "return msg;"}]})
    assert "exported" in ws.cli("export", "acceptance", check=True).stdout
    # The export's commit: its changed flow was written in the form, the others were on record.
    tree = ws.git("rev-parse", "env/acceptance:flows", cwd=ws.repo).strip()
    assert tree.encode() in whole(ws, "acceptance").read_bytes()
    out, read = _check(ws, "acceptance", monkeypatch)
    assert out.commit is None and not out.moved and not out.problems and read == []  # nothing read at all
    # A person's push: another tree, so the record decides and the changed flow is read again.
    ada = clone(ws, "ada", "env/acceptance")
    person = ada / "flows/second/2.json"
    person.write_text(person.read_text() + "\n")
    push_files(ws, ada, "acceptance: a blank line", branch="env/acceptance")
    out, read = _check(ws, "acceptance", monkeypatch)
    assert out.commit is None and read[0] == "record" and [str(k) for k in read[1:]] == ["second@2"]
    assert ws.cli("export", "acceptance", check=True).returncode == 0
    tree = ws.git("rev-parse", "env/acceptance:flows", cwd=ws.repo).strip()
    assert tree.encode() in whole(ws, "acceptance").read_bytes()  # checked whole: on record again


def test_inline_code_pushed_over_a_tree_found_in_the_form_is_moved(ws: Workspace) -> None:
    setup(ws)
    assert ws.cli("export", "acceptance", check=True).returncode == 0
    assert whole(ws, "acceptance").is_file()
    sidecars = split_files(ws, "env/acceptance")
    ada = clone(ws, "ada", "env/acceptance")
    folder = ada / "flows/orders/1"
    stored = StoredFlow((ada / "flows/orders/1.json").read_bytes(), {p.name: p.read_bytes() for p in folder.iterdir()})
    doc, _, problems = join(json.loads(stored.json), stored, where="flows/orders/1.json")
    assert not problems
    shutil.rmtree(folder)
    (ada / "flows/orders/1.json").write_text(json.dumps(doc, indent=2) + "\n")
    push_files(ws, ada, "acceptance: code inline", branch="env/acceptance")
    out = ws.cli("export", "acceptance", check=True).stdout
    assert "moved 1 flow of env/acceptance to the split form" in out, out
    assert split_files(ws, "env/acceptance") == sidecars


def test_a_broken_or_foreign_tree_record_means_the_full_check(ws: Workspace, monkeypatch) -> None:
    restore_old_repository(ws)
    ws.cli("migrate", "production", check=True)
    assert ws.cli("migrate", "production", check=True).stdout.startswith("production: nothing to migrate")
    path = whole(ws, "production")
    assert path.is_file()
    good = path.read_bytes()
    path.write_bytes(good[:-5])  # truncated: the checksum fails
    out, read = _check(ws, "production", monkeypatch)
    assert read and read[0] == "record" and out.commit is None and not out.moved
    path.write_bytes(good.replace(b"reconciler-cache form-tree", b"reconciler-cache form-tred"))  # another kind
    assert _check(ws, "production", monkeypatch)[1][0] == "record"
    path.write_bytes(good)
    assert _check(ws, "production", monkeypatch)[1] == []
    # Other settings (the single-file form): the tree record of the split check is not used, and the
    # flows with sidecars are put back into their JSON.
    text = ws.config.read_text()
    marker = 'name = "production"\n'
    ws.config.write_text(text.replace(marker, marker + 'form = "single-file"\n', 1))
    out, read = _check(ws, "production", monkeypatch)
    assert read and len(out.moved) == 2
    assert "2 flows" in ws.cli("migrate", "production", check=True).stdout
    assert split_files(ws, "env/production") == []
