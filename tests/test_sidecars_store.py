"""The git store and the engine on the split form: a real bare repository (pygit2 and the git CLI), the
in-memory driver as the platform; and the layout-only decision (pure)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.config import parse_config
from reconciler.engine import Engine, RunResult
from reconciler.flows import FlowKey
from reconciler.gitform import can_split
from reconciler.gitstore import GitStore
from reconciler.layout import relax
from reconciler.plan import Action, Policy, State, Step
from reconciler.sidecars import StoredFlow, entry_parts
from reconciler.testing import MemoryDriver
from tests.conftest import git_env

A = FlowKey("orders", "1")
JSON = b'{"name": "orders", "nodes": [{"func": {"$sidecar": "fn.func.js"}, "id": "fn", "type": "function"}], ' \
       b'"tab": {"id": "t", "type": "tab"}, "version": "1"}\n'


@pytest.fixture
def store(tmp_path: Path) -> GitStore:
    return GitStore(tmp_path / "repo.git", author_name="Bot", author_email="bot@example.com")


def git(store: GitStore, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(["git", *args], cwd=store.path, env=git_env(store.path.parent), check=True,
                          capture_output=True, input=input).stdout.decode()


def split_flow(code: bytes = b"return msg;\n") -> StoredFlow:
    return StoredFlow(JSON, {"fn.func.js": code})


def test_a_change_of_a_sidecar_alone_changes_the_flows_entry_in_full_and_incremental_reads(store: GitStore) -> None:
    c1 = store.commit_changes("env/a", None, "flows", {A: split_flow()}, "one\n")
    first = store.flows_at(c1, "flows").flows[A]
    c2 = store.commit_changes("env/a", c1, "flows", {A: split_flow(b"return 2;\n")}, "two\n")
    incremental = store.flows_at(c2, "flows").flows[A]  # a tree-to-tree diff from c1's tree
    fresh = GitStore(store.path, author_name="x", author_email="y").flows_at(c2, "flows").flows[A]  # a full read
    assert incremental == fresh != first
    assert entry_parts(first)[0] == entry_parts(incremental)[0]  # the JSON is the same blob
    assert store.flow_files(incremental).sidecars == {"fn.func.js": b"return 2;\n"}
    git(store, "fsck", "--strict")


def test_a_flow_going_back_to_one_file_drops_its_sidecar_folder(store: GitStore) -> None:
    c1 = store.commit_changes("env/a", None, "flows", {A: split_flow()}, "split\n")
    c2 = store.commit_changes("env/a", c1, "flows", {A: b'{"name": "orders", "version": "1"}\n'}, "one file\n")
    assert git(store, "ls-tree", "-r", "--name-only", c2).split() == ["flows/orders/1.json"]
    c3 = store.commit_changes("env/a", c2, "flows", {A: None}, "gone\n")
    assert store.flows_at(c3, "flows").flows == {}


@pytest.mark.parametrize(("make", "why"), [
    ("symlink", "its sidecar folder is a symlink"),
    ("file", "its sidecar folder is a file"),
    ("orphan", "a sidecar folder without its flow"),
])
def test_a_sidecar_folder_that_is_not_one_makes_the_flow_invalid_never_absent(store: GitStore, make: str, why: str) -> None:
    c1 = store.commit_changes("env/a", None, "flows", {A: split_flow()}, "one\n")
    store.flows_at(c1, "flows")  # so that the next read is incremental
    work = store.path.parent / "work"
    subprocess.run(["git", "clone", "-q", "-b", "env/a", str(store.path), str(work)], env=git_env(store.path.parent), check=True)
    run = lambda *a: subprocess.run(["git", *a], cwd=work, env=git_env(store.path.parent), check=True, capture_output=True)  # noqa: E731
    folder = work / "flows/orders/1"
    if make in ("symlink", "file"):
        run("rm", "-rq", "flows/orders/1")
        if make == "symlink":
            folder.symlink_to("/etc")
        else:
            folder.write_text("not a folder\n")
    else:
        run("rm", "-q", "flows/orders/1.json")
    run("add", "-A")
    run("commit", "-qm", make)
    run("push", "-q", "origin", "env/a")
    tip = store.tip("env/a")
    for reader in (store, GitStore(store.path, author_name="x", author_email="y")):
        tree = reader.flows_at(tip, "flows")
        assert A not in tree.flows and why in tree.bad[A], tree


def test_a_version_ending_in_json_keeps_one_file() -> None:
    """Its sidecar folder would be named like another version's JSON (1.json for 1): never split."""
    assert can_split(FlowKey("orders", "1")) and not can_split(FlowKey("orders", "1.json"))


def test_the_flows_of_a_merge_in_memory_are_the_flows_of_the_same_merge_committed(store: GitStore) -> None:
    base = store.commit_changes("env/a", None, "flows", {A: StoredFlow(JSON.replace(b"}]", b', "initialize": {"$sidecar": "fn.initialize.js"}}]'),
                                                                        {"fn.func.js": b"1\n", "fn.initialize.js": b"i\n"})}, "base\n")
    ours = store.commit_changes("env/a", base, "flows", {A: StoredFlow(store.flow_files(store.flows_at(base, "flows").flows[A]).json,
                                                                       {"fn.func.js": b"2\n", "fn.initialize.js": b"i\n"})}, "ours\n")
    store.create_branch("env/b", base, "b")
    theirs = store.commit_changes("env/b", base, "flows", {A: StoredFlow(store.flow_files(store.flows_at(base, "flows").flows[A]).json,
                                                                         {"fn.func.js": b"1\n", "fn.initialize.js": b"j\n"})}, "theirs\n")
    merge = store.merge(None, ours, theirs, write=False)
    assert merge.conflicts == ()
    in_memory = store.flows_in(merge.entries, "flows")
    committed = store.commit(None, ours, store.merge(None, ours, theirs).tree, "merge\n", extra_parents=(theirs,))
    assert in_memory.flows == store.flows_at(committed, "flows").flows
    assert store.flow_files(in_memory.flows[A]).sidecars == {"fn.func.js": b"2\n", "fn.initialize.js": b"j\n"}


# -- the engine -----------------------------------------------------------------------------------------


def nr_doc(code: str = "return msg;", x: int = 100) -> dict:
    return {"name": "orders", "version": "1", "tab": {"id": "t", "type": "tab"},
            "nodes": [{"id": "fn", "type": "function", "func": code, "x": x, "y": 1}]}


def engine_with(tmp_path: Path, **env) -> tuple[Engine, MemoryDriver]:
    (tmp_path / "envs/x").mkdir(parents=True)
    config = parse_config({"environment": [{"name": "x", "driver": "directory", "path": "envs/x", **env}]}, base=tmp_path)
    driver = MemoryDriver([nr_doc()])
    engine = Engine(config, drivers={"x": driver}, create_repository=True)
    engine.export("x")
    return engine, driver


def test_a_no_change_reconcile_reads_no_flow_from_git_again(tmp_path: Path) -> None:
    engine, driver = engine_with(tmp_path, drift="restore")
    engine.sync("x")
    reads = []
    real = engine.store.flow_files
    engine.store.flow_files = lambda entry: reads.append(entry) or real(entry)  # type: ignore[method-assign]
    out = engine.sync("x")
    assert out.result is RunResult.OK and not out.plan.changes and reads == []


@pytest.mark.parametrize(("layout", "expect"), [("ignore", Action.NONE), ("content", Action.IMPORT)])
def test_layout_only_drift_counts_only_with_layout_content(tmp_path: Path, layout: str, expect: Action) -> None:
    engine, driver = engine_with(tmp_path, drift="restore", layout=layout)
    driver.put(nr_doc(x=500))
    out = engine.sync("x")
    (step,) = out.plan.steps
    assert step.action is expect
    assert driver.doc(A)["nodes"][0]["x"] == (500 if layout == "ignore" else 100)


def test_with_layout_ignore_a_change_in_git_still_replaces_a_layout_only_drift(tmp_path: Path) -> None:
    engine, driver = engine_with(tmp_path, drift="restore", layout="ignore")
    driver.put(nr_doc(x=500))
    tip = engine.store.tip("env/x")
    engine.store.commit_changes("env/x", tip, "flows", {A: StoredFlow(engine.store.flow_files(
        engine.store.flows_at(tip, "flows").flows[A]).json, {"fn.func.js": b"return 2;\n"})}, "code\n")
    out = engine.sync("x")
    (step,) = out.plan.steps
    assert (step.action, step.state) == (Action.IMPORT, State.PENDING) and "layout only" in step.reason
    assert driver.doc(A)["nodes"][0]["func"] == "return 2;"
    saved = engine.store.flows_at(engine.store.tip("drift/x"), "flows").flows[A]
    assert b'"x": 500' in engine.store.flow_files(saved).json  # the live layout was saved before it was replaced


# -- relax (pure) ---------------------------------------------------------------------------------------


def step(action: Action, state: State, a: str | None, d: str | None, live: str | None) -> Step:
    return Step(A, action, state, "", a, d, live)


SAME = {("a", "l"), ("d", "l")}


def same(x: str, y: str) -> bool:
    return (x, y) in SAME


@pytest.mark.parametrize(("given", "want"), [
    (step(Action.IMPORT, State.DRIFTED, "a", "a", "l"), Action.NONE),
    (step(Action.ADOPT, State.DRIFTED, "a", "a", "l"), Action.NONE),
    (step(Action.REPORT, State.DRIFTED, "a", "a", "l"), Action.NONE),
    (step(Action.IMPORT, State.DRIFTED, "a", "a", "other"), Action.IMPORT),
    (step(Action.CONFLICT, State.CONFLICT, "a", "d", "l"), Action.ADVANCE),
    (step(Action.IMPORT, State.DRIFTED, "a", "a", None), Action.IMPORT),
    (step(Action.IMPORT, State.PENDING, "a", "d", "a"), Action.IMPORT),
])
def test_relax_decides_again_without_layout(given: Step, want: Action) -> None:
    assert relax(given, Policy(drift="restore", prune=True), same).action is want


def test_relax_turns_a_conflict_with_layout_only_drift_into_the_change_in_git() -> None:
    got = relax(step(Action.CONFLICT, State.CONFLICT, "a", "d2", "l"), Policy(drift="restore"), same)
    assert (got.action, got.live, got.desired) == (Action.IMPORT, "l", "d2")
    deleted = relax(step(Action.CONFLICT, State.CONFLICT, "a", None, "l"), Policy(drift="restore", prune=False), same)
    assert deleted.action is Action.BLOCKED


def test_the_entry_id_of_a_flow_is_computed_as_put_flow_gives_it_without_queuing_anything(tmp_path) -> None:
    from reconciler.gitstore import GitStore
    from reconciler.sidecars import StoredFlow

    store = GitStore(tmp_path / "r.git", author_name="Bot", author_email="bot@example.com")
    for flow in (b'{"a": 1}\n', StoredFlow(b'{"a": 1}\n'),
                 StoredFlow(b'{"f": {"$sidecar": "n.func.js"}}\n', {"n.func.js": b"return msg;\n", "t.info.md": b"x\n"})):
        computed = store.flow_entry_id(flow)
        assert len(store._pending) == 0
        assert store.put_flow(flow) == computed
        store._pending.clear()
