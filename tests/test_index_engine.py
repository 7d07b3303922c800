"""What a read derived from git, kept for the next process, never gives a wrong answer.

A new :class:`Engine` plays the next process; git is real (commits made with the git CLI in a
clone, as a user pushes them), and the store counts the blobs it reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.engine import Engine
from reconciler.flows import FlowKey
from reconciler.gitstore import GitStore
from reconciler.plan import Action
from tests.conftest import Workspace, flow


class Counting(GitStore):
    """The real store, counting the blobs read."""

    reads: int = 0

    def read_blob(self, oid: str) -> bytes:
        self.reads += 1
        return super().read_blob(oid)


def fresh(ws: Workspace) -> tuple[Engine, Counting]:
    config = load_config(ws.config)
    store = Counting.from_config(config.repository)
    return Engine(config, store=store), store


def plan_of(ws: Workspace, env: str = "acc"):
    engine, store = fresh(ws)
    out = engine.sync(env, dry_run=True)
    return out, store.reads


@pytest.fixture()
def acc(ws: Workspace) -> Workspace:
    ws.add_env("acc", drift="adopt")
    set_api(ws, "https://acc.example.com")
    for i in range(6):
        ws.put("acc", f"f{i}.json", flow(f"f{i}", url="https://acc.example.com/x" if i == 0 else f"/{i}"))
    ws.cli("export", "acc", check=True)
    return ws


def set_api(ws: Workspace, url: str) -> None:
    ws.write_config(f'[environment.params]\nAPI = "{url}"\n')


def push(ws: Workspace, edit) -> None:
    clone = ws.root / "clone"
    if not clone.exists():
        ws.clone("env/acc")
    ws.git("pull", "-q", cwd=clone)
    edit(clone)
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-qm", "edit", cwd=clone)
    ws.git("push", "-q", "origin", "env/acc", cwd=clone)


def test_a_fresh_plan_reads_no_blob_once_a_process_has_read_the_tip(acc: Workspace) -> None:
    """The export committed the tip without reading it back; the first plan reads it and keeps it."""
    first, reads = plan_of(acc)
    assert first.states["in_sync"] == 6 and reads == 6
    out, reads = plan_of(acc)
    assert out.states["in_sync"] == 6 and reads == 0


def test_a_push_is_seen_by_the_next_process_which_reads_only_the_changed_blob(acc: Workspace) -> None:
    plan_of(acc)

    def edit(clone: Path) -> None:
        path = clone / "flows" / "f3" / "1.0.json"
        doc = json.loads(path.read_text())
        doc["retries"] = 7
        path.write_text(json.dumps(doc))

    push(acc, edit)
    out, reads = plan_of(acc)
    changed = [s for s in out.plan.steps if s.action != Action.NONE]
    assert [(s.key, s.reason) for s in changed] == [(FlowKey("f3", "1.0"), "changed in git")]
    assert reads == 1


def test_a_flow_invalid_in_git_stays_invalid_and_is_never_taken_for_deleted(acc: Workspace) -> None:
    push(acc, lambda clone: (clone / "flows" / "f2" / "1.0.json").write_text('{"name": "f2", "version": "1.0", '))
    for _ in range(2):  # the second process starts from what the first kept
        out, _ = plan_of(acc)
        step = next(s for s in out.plan.steps if s.key == FlowKey("f2", "1.0"))
        assert step.action == Action.INVALID and "f2/1.0.json" in str([p.where for p in out.problems])


def test_another_parameter_value_renders_every_flow_again(acc: Workspace) -> None:
    before, _ = plan_of(acc)
    set_api(acc, "https://elsewhere.example.com")
    out, reads = plan_of(acc)
    assert reads == 6
    step = next(s for s in out.plan.steps if s.key == FlowKey("f0", "1.0"))
    assert step.desired != next(s for s in before.plan.steps if s.key == FlowKey("f0", "1.0")).desired


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_a_damaged_kept_read_means_reading_everything_and_the_same_answer(acc: Workspace, damage: str) -> None:
    before, _ = plan_of(acc)
    kept = acc.repo / "reconciler" / "index" / "acc" / "desired"
    raw = kept.read_bytes()
    if damage == "truncate":
        kept.write_bytes(raw[:-20])
    elif damage == "garbage":
        kept.write_bytes(os.urandom(200))
    else:
        kept.unlink()
    out, reads = plan_of(acc)
    assert reads == 6
    assert out.plan.steps == before.plan.steps


@pytest.mark.parametrize("damage", ["short row", "long row", "int name", "int canonical id", "row not a list",
                                    "rows not a list", "a key twice", "tree not a string"])
def test_kept_reads_with_damaged_rows_mean_reading_everything_and_the_same_answer(acc: Workspace, damage: str) -> None:
    """A well-formed file (valid checksum, this code's fingerprint) whose rows are wrong: the rows are
    checked whole, and anything off means a full read, never a shifted or retyped entry."""
    from reconciler.localcache import read_cache, write_cache

    before, _ = plan_of(acc)
    kept = acc.repo / "reconciler" / "index" / "acc" / "desired"
    body = json.loads(kept.read_bytes().partition(b"\n")[2])
    fingerprint = body.pop("fingerprint")
    rows = body["desired"]["rows"]
    if damage == "short row":
        rows[1].pop()
    elif damage == "long row":
        rows[1].append("x")
    elif damage == "int name":
        rows[0][0] = 5
    elif damage == "int canonical id":
        rows[0][3] = 5
    elif damage == "row not a list":
        rows[2] = "abcd"
    elif damage == "rows not a list":
        body["desired"]["rows"] = {"a": rows}
    elif damage == "a key twice":
        rows[1][:2] = rows[0][:2]
    else:
        body["desired"]["tree"] = 17
    write_cache(kept, "engine-reads", fingerprint, body)
    assert read_cache(kept, "engine-reads", fingerprint) is not None
    out, reads = plan_of(acc)
    assert reads == 6
    assert out.plan.steps == before.plan.steps


def test_the_kept_reads_are_in_the_git_dir_and_never_in_its_history(acc: Workspace) -> None:
    plan_of(acc)
    index = acc.repo / "reconciler" / "index" / "acc"
    assert "desired" in {p.name for p in index.iterdir()}  # "live" too, once the files are a second old
    names = acc.git("log", "--all", "--name-only", "--format=", cwd=acc.repo)
    assert "reconciler/index" not in names and "desired" not in names
    acc.git("fsck", "--strict", cwd=acc.repo)
