"""How the watcher turns file events in the repository into requests (a real repository folder)."""

from __future__ import annotations

from pathlib import Path

import pygit2
from watchfiles import Change

from reconciler.triggers import Watcher


class Recorder:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def trigger(self, env: str, reason: str) -> bool:
        self.asked.append((env, reason))
        return True

    def trigger_all(self, reason: str) -> None:
        self.asked.append(("*", reason))

    def trigger_branch(self, branch: str, reason: str) -> list[str]:
        self.asked.append((f"branch:{branch}", reason))
        return []

    def fetch_and_trigger(self, reason: str, branches: tuple[str, ...] | None = None) -> None:
        raise AssertionError("not expected")


def _watcher(tmp_path: Path) -> tuple[Watcher, Recorder, Path]:
    repo = Path(pygit2.init_repository(str(tmp_path / "flows.git"), bare=True).path)
    rec = Recorder()
    return Watcher(rec, repo, []), rec, repo


def test_a_suspension_file_asks_for_its_environment(tmp_path: Path) -> None:
    w, rec, repo = _watcher(tmp_path)
    (repo / "refs/reconciler/suspend").mkdir(parents=True)
    (repo / "refs/reconciler/suspend/production").write_text("x")
    w.route({(Change.added, str(repo / "refs/reconciler/suspend/production"))})
    assert rec.asked == [("production", "suspension")]


def test_the_first_suspension_folder_asks_for_every_environment(tmp_path: Path) -> None:
    """The file inside a folder made at the same moment can go unseen: the folder's event is enough."""
    w, rec, repo = _watcher(tmp_path)
    (repo / "refs/reconciler/suspend").mkdir(parents=True)
    for rel in ("refs/reconciler", "refs/reconciler/suspend"):
        assert w._keep(Change.added, str(repo / rel))
        rec.asked.clear()
        w.route({(Change.added, str(repo / rel))})
        assert rec.asked == [("*", "suspension")]
    assert not w._keep(Change.added, str(repo / "refs/reconciler/markers"))


def test_a_new_folder_of_branches_asks_for_every_environment(tmp_path: Path) -> None:
    w, rec, repo = _watcher(tmp_path)
    (repo / "refs/heads/env").mkdir(parents=True)
    w.route({(Change.added, str(repo / "refs/heads/env"))})
    assert rec.asked == [("*", "ref")]
    rec.asked.clear()
    (repo / "refs/heads/env/production").write_text("x")
    w.route({(Change.added, str(repo / "refs/heads/env/production"))})
    assert rec.asked == [("branch:env/production", "ref")]
    assert not w._keep(Change.added, str(repo / "refs/heads/env/production.lock"))
