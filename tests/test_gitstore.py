"""The git store against real bare repositories, with the git CLI checking its work."""

from __future__ import annotations

import subprocess
import zlib
from pathlib import Path

import pytest

from reconciler.errors import BranchMovedError
from reconciler.flows import FlowKey
from reconciler.gitstore import GitStore
from tests.conftest import git_env

A, B = FlowKey("orders", "1.0"), FlowKey("Ünïcode flow", "2")


@pytest.fixture
def store(tmp_path: Path) -> GitStore:
    return GitStore(tmp_path / "repo.git", author_name="Bot", author_email="bot@example.com")


def git(store: GitStore, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=store.path, env=git_env(store.path.parent), check=True,
                          capture_output=True, text=True).stdout


def test_a_missing_repository_is_created_bare(store: GitStore) -> None:
    """The store creates a bare repository the git CLI recognises."""
    assert git(store, "rev-parse", "--is-bare-repository").strip() == "true"


def test_commits_write_the_layout_and_the_author(store: GitStore) -> None:
    """flows/<name>/<version>.json with encoded names, authored as configured."""
    c = store.commit_changes("env/a", None, "flows", {A: b"{}\n", B: b"[]\n"}, "add two\n")
    assert git(store, "ls-tree", "-r", "--name-only", c).split("\n")[:2] == [
        "flows/orders/1.0.json", "flows/~%C3%9Cn%C3%AFcode%20flow/2.json"]
    assert git(store, "log", "-1", "--format=%an <%ae>|%s", "env/a").strip() == "Bot <bot@example.com>|add two"
    git(store, "fsck", "--strict")


def test_an_unchanged_tree_makes_no_commit(store: GitStore) -> None:
    """Writing the same content again returns None and leaves the branch alone."""
    c = store.commit_changes("env/a", None, "flows", {A: b"{}\n"}, "one")
    assert store.commit_changes("env/a", c, "flows", {A: b"{}\n"}, "again") is None
    assert store.tip("env/a") == c


def test_a_moved_tip_makes_the_commit_fail_instead_of_losing_the_push(store: GitStore) -> None:
    """Compare-and-swap: a commit based on a stale tip raises BranchMovedError."""
    c1 = store.commit_changes("env/a", None, "flows", {A: b"1\n"}, "one")
    c2 = store.commit_changes("env/a", c1, "flows", {A: b"2\n"}, "two (someone else)")
    with pytest.raises(BranchMovedError):
        store.commit_changes("env/a", c1, "flows", {B: b"3\n"}, "stale")
    assert store.tip("env/a") == c2


def test_removing_the_last_version_removes_the_name_folder(store: GitStore) -> None:
    """No empty trees are left behind."""
    c1 = store.commit_changes("env/a", None, "flows", {A: b"1\n", B: b"2\n"}, "one")
    c2 = store.commit_changes("env/a", c1, "flows", {A: None}, "rm")
    assert git(store, "ls-tree", "-r", "--name-only", c2).strip() == "flows/~%C3%9Cn%C3%AFcode%20flow/2.json"


def test_entries_that_are_not_flow_paths_are_reported_not_read(store: GitStore, tmp_path: Path) -> None:
    """A stray file or a non-canonical encoded name in flows/ is a problem with its path."""
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(store.path), str(work)], env=git_env(tmp_path), check=True)
    (work / "flows" / "~abc").mkdir(parents=True)
    (work / "flows" / "~abc" / "1.json").write_text("{}")
    (work / "flows" / "README.md").write_text("hi")
    (work / "flows" / "ok").mkdir()
    (work / "flows" / "ok" / "1.json").write_text("{}")
    for cmd in (["checkout", "-q", "-b", "env/a"], ["add", "-A"], ["commit", "-q", "-m", "x"], ["push", "-q", "origin", "env/a"]):
        subprocess.run(["git", *cmd], cwd=work, env=git_env(tmp_path), check=True)
    tree = store.flows_at(store.tip("env/a"), "flows")
    assert list(tree.flows) == [FlowKey("ok", "1")]
    assert sorted(p.where for p in tree.problems) == ["flows/README.md", "flows/~abc/1.json"]


def test_history_of_a_flow_lists_only_the_commits_that_changed_it(store: GitStore) -> None:
    """history(path) skips commits that left the file alone."""
    c1 = store.commit_changes("env/a", None, "flows", {A: b"1\n"}, "a1")
    c2 = store.commit_changes("env/a", c1, "flows", {B: b"1\n"}, "b1")
    store.commit_changes("env/a", c2, "flows", {A: b"2\n"}, "a2")
    assert [c.message for c in store.history("env/a", "flows/orders/1.0.json")] == ["a2", "a1"]
    assert [c.message for c in store.history("env/a")] == ["a2", "b1", "a1"]


def test_the_drift_branch_accumulates_saved_versions(store: GitStore) -> None:
    """Each save is a commit on drift/<env>; earlier saves stay in its tree."""
    store.save_drift("prod", "flows", {A: b"live 1\n"}, "save a")
    store.save_drift("prod", "flows", {B: b"live 2\n"}, "save b")
    assert git(store, "show", "drift/prod:flows/orders/1.0.json") == "live 1\n"
    assert git(store, "rev-list", "--count", "drift/prod").strip() == "2"


def test_the_marker_is_a_ref_outside_the_branches(store: GitStore) -> None:
    """refs/reconciler/applied/<env> is set and read back, invisible to git branch."""
    c = store.commit_changes("env/a", None, "flows", {A: b"1\n"}, "one")
    store.set_marker("a", c)
    assert store.marker("a") == c
    assert git(store, "rev-parse", "refs/reconciler/applied/a").strip() == c
    assert "applied" not in git(store, "branch", "-a")


def test_a_large_commit_is_written_as_one_valid_pack(store: GitStore) -> None:
    """Hundreds of flows become one pack that git fsck --strict accepts, readable by the git CLI."""
    flows = {FlowKey(f"flow-{i}", "1"): b'{"n": %d}\n' % i for i in range(300)}
    c = store.commit_changes("env/a", None, "flows", flows, "many")
    packs = list((store.path / "objects" / "pack").glob("*.pack"))
    assert len(packs) == 1
    git(store, "fsck", "--strict", "--no-dangling")
    assert git(store, "show", f"{c}:flows/flow-7/1.json") == '{"n": 7}\n'
    c2 = store.commit_changes("env/a", c, "flows", {FlowKey("flow-7", "1"): None}, "one less")
    assert git(store, "ls-tree", "-r", "--name-only", c2).count("\n") == 299
    git(store, "fsck", "--strict", "--no-dangling")


def test_objects_of_every_size_around_the_deflate_windows_are_read_back_by_git(store: GitStore) -> None:
    """The pack's small-window zlib streams (sized to each object) inflate in git and in pygit2, byte for byte."""
    import random

    from reconciler.gitstore.packwriter import deflate

    rnd = random.Random(3)
    sizes = [0, 1, 249, 250, 251, 511, 512, 513, 1000, 4095, 4096, 4097, 32505, 32506, 32507, 40000, 200000]
    blobs = {FlowKey(f"f{n}", "1"): bytes(rnd.choice(b"abc {}\n\"0123") for _ in range(n)) for n in sizes}
    blobs.update({FlowKey(f"r{n}", "1"): rnd.randbytes(n) for n in (300, 5000, 33000)})
    blobs.update({FlowKey(f"more-{i}", "1"): b'{"n": %d}\n' % i for i in range(40)})  # enough objects for a pack
    c = store.commit_changes("env/a", None, "flows", blobs, "sizes")
    assert len(list((store.path / "objects" / "pack").glob("*.pack"))) == 1
    git(store, "fsck", "--strict", "--no-dangling")
    for key, data in blobs.items():
        got = subprocess.run(["git", "cat-file", "blob", f"{c}:flows/{key.name}/1.json"], cwd=store.path,
                             capture_output=True, check=True).stdout
        assert got == data, key
        assert zlib.decompress(deflate(data)) == data
