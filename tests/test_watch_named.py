"""The folder watch names the flow files it saw change, and a run trusting it reads those instead of
scanning the folder; whenever the watch cannot say (not watching yet, a gap), the folder is scanned.
Real folders, a real watch (watchfiles), a real directory driver."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pygit2

from reconciler.canonical import Rules
from reconciler.drivers.directory import DirectoryDriver
from reconciler.triggers import Watcher, WatchSpec
from tests.conftest import flow
from tests.test_directory_driver import Seam
from tests.test_triggers_route import Recorder

RULES = Rules.of([])


def _wait(cond, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_the_watch_names_what_changed_since_it_was_last_asked_and_nothing_before_it_watched(tmp_path: Path) -> None:
    repo = Path(pygit2.init_repository(str(tmp_path / "flows.git"), bare=True).path)
    folder = tmp_path / "env"
    folder.mkdir()
    (folder / "a.json").write_text("{}")
    d = DirectoryDriver(folder)
    rec = Recorder()
    w = Watcher(rec, repo, [WatchSpec("e", d.watch_paths(), d.is_flow_file)], debounce_ms=10)
    assert w.changed("e") is None  # not started: it cannot say
    w.start()
    try:
        _wait(lambda: w.ready.is_set() and w.watches("e"), "the watch to start")
        assert w.changed("e") is None  # what changed before it watched is unknown: scan once
        assert w.changed("e") == frozenset()
        (folder / "b.json").write_text("{}")
        (folder / ".hidden.json").write_text("{}")
        (folder / "notes.txt").write_text("x")
        _wait(lambda: ("e", "folder") in rec.asked, "the folder event")
        assert w.changed("e") == frozenset({"b.json"})
        assert w.changed("e") == frozenset()
    finally:
        w.stop()
        w.join(10)
    assert w.changed("e") is None  # stopped: scan


def test_a_burst_naming_too_many_files_means_a_scan(tmp_path: Path) -> None:
    repo = Path(pygit2.init_repository(str(tmp_path / "flows.git"), bare=True).path)
    folder = tmp_path / "env"
    folder.mkdir()
    d = DirectoryDriver(folder)
    w = Watcher(Recorder(), repo, [WatchSpec("e", d.watch_paths(), d.is_flow_file)])
    w._saw["e"] = set()
    from watchfiles import Change
    w.route({(Change.added, str(folder / f"f{i}.json")) for i in range(Watcher.MAX_NAMED + 1)})
    assert w._saw["e"] is None


def test_a_trusted_export_reads_the_files_the_watch_names_and_scans_when_it_cannot_say(tmp_path: Path) -> None:
    folder = tmp_path / "env"
    folder.mkdir()
    for i in range(3):
        (folder / f"f{i}.json").write_text(json.dumps(flow(f"f{i}")))
    said: list[frozenset[str] | None] = []
    fs = Seam()
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    d.watched_by(lambda: said.pop(0) if said else frozenset())
    first = d.export()
    time.sleep(1.1)  # past the racy second: the next exports may trust what they read
    d.export()
    # an edit the watch names: read without a scan
    (folder / "f1.json").write_text(json.dumps(flow("f1", n=2)))
    said.append(frozenset({"f1.json"}))
    listed = len(fs.ops("scandir"))
    d.trust_watch()
    live = d.export()
    assert len(fs.ops("scandir")) == listed
    assert live.flows[next(k for k in live.flows if k.name == "f1")].oid != first.flows[
        next(k for k in first.flows if k.name == "f1")].oid
    assert live.oids() == DirectoryDriver(folder, rules=RULES).export().oids()
    # an edit the watch cannot vouch for: the export scans and sees it
    (folder / "f2.json").write_text(json.dumps(flow("f2", n=3)))
    said.append(None)
    d.trust_watch()
    assert d.export().oids() == DirectoryDriver(folder, rules=RULES).export().oids()
    assert len(fs.ops("scandir")) == listed + 1
    # not trusted (the schedule, the API): a scan whatever the watch says
    (folder / "f0.json").write_text(json.dumps(flow("f0", n=4)))
    d.trust_watch(False)
    assert d.export().oids() == DirectoryDriver(folder, rules=RULES).export().oids()


def test_a_named_change_still_makes_recovery_look_for_a_crashed_runs_files(tmp_path: Path) -> None:
    """Only a run in which the watch saw nothing change skips recovery's listing (and then so do its writes)."""
    folder = tmp_path / "env"
    folder.mkdir()
    (folder / "f0.json").write_text(json.dumps(flow("f0")))
    said: list[frozenset[str] | None] = []
    fs = Seam()
    d = DirectoryDriver(folder, rules=RULES, fs=fs)
    d.watched_by(lambda: said.pop(0) if said else frozenset())
    d.recover()
    d.export()
    listed = len(fs.ops("scandir"))
    d.trust_watch()
    d.recover()  # nothing changed: no listing
    assert len(fs.ops("scandir")) == listed
    d.export()
    said.append(frozenset({"f0.json"}))
    d.trust_watch()
    d.recover()  # a file changed: the folder is listed for a crashed run's files
    assert len(fs.ops("scandir")) == listed + 1


def test_a_push_is_routed_without_waiting_for_a_burst_of_folder_changes_to_end(tmp_path: Path) -> None:
    """A ref moves in one rename: it is asked for at once; folder events wait for debounce_ms of quiet."""
    repo = Path(pygit2.init_repository(str(tmp_path / "flows.git"), bare=True).path)
    (repo / "refs/heads/env").mkdir(parents=True)
    folder = tmp_path / "env"
    folder.mkdir()
    d = DirectoryDriver(folder)
    rec = Recorder()
    w = Watcher(rec, repo, [WatchSpec("e", d.watch_paths(), d.is_flow_file)], debounce_ms=3000)
    w.start()
    try:
        _wait(lambda: w.ready.is_set() and w.watches("e"), "the watch to start")
        assert w.changed("e") is None
        (folder / "a.json").write_text("{}")
        time.sleep(0.2)
        (repo / "refs/heads/env/production").write_text("0" * 40 + "\n")
        _wait(lambda: ("branch:env/production", "ref") in rec.asked, "the push")
        assert ("e", "folder") not in rec.asked  # its burst has not ended yet
        _wait(lambda: ("e", "folder") in rec.asked, "the folder event after the quiet time")
        assert w.changed("e") == frozenset({"a.json"})
    finally:
        w.stop()
        w.join(10)
