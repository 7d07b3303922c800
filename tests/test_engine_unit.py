"""The engine on the in-memory driver (reconciler.testing): fast tests of the decisions it carries out.
Git is real (a bare repository in a temporary folder); the platform is our own fake port."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.canonical import Rules
from reconciler.config import parse_config
from reconciler.engine import Engine, RunResult
from reconciler.errors import MassDeletionRefused, RetryableError, StallError
from reconciler.flows import FlowKey
from reconciler.gitstore import GitStore
from reconciler.plan import Action
from reconciler.testing import MemoryDriver

RULES = Rules.of(["/exportedAt"])


def doc(name: str, version: str = "1", **extra) -> dict:
    return {"name": name, "version": version, "steps": [{"id": "a", "type": "t"}], **extra}


def setup(tmp_path: Path, *, drift: str = "restore", prune: bool = True, flows=("a", "b", "c", "d"), **env):
    (tmp_path / "envs" / "x").mkdir(parents=True)
    config = parse_config({"environment": [{"name": "x", "driver": "directory", "path": "envs/x", "drift": drift,
                                            "prune": prune, "ignore": ["/exportedAt"], **env}]}, base=tmp_path)
    driver = MemoryDriver([doc(n) for n in flows], rules=RULES)
    engine = Engine(config, drivers={"x": driver}, create_repository=True)
    engine.export("x")
    return engine, driver


def commit(engine: Engine, changes: dict[FlowKey, dict | None]) -> None:
    store: GitStore = engine.store
    tip = store.tip("env/x")
    data = {k: (None if v is None else json.dumps(v, indent=2, sort_keys=True).encode() + b"\n") for k, v in changes.items()}
    store.commit_changes("env/x", tip, "flows", data, "a change in git\n")


def test_a_change_in_git_is_imported_and_the_marker_moves(tmp_path) -> None:
    engine, driver = setup(tmp_path)
    commit(engine, {FlowKey("a", "1"): doc("a", note="v2")})
    out = engine.sync("x")
    assert out.result is RunResult.OK and driver.doc(FlowKey("a", "1"))["note"] == "v2"
    assert out.marker == engine.store.tip("env/x")


@pytest.mark.parametrize(("policy", "action"), [("restore", Action.IMPORT), ("adopt", Action.ADOPT),
                                                 ("report", Action.REPORT)])
def test_drift_follows_the_policy(tmp_path, policy, action) -> None:
    engine, driver = setup(tmp_path, drift=policy)
    driver.put(doc("b", note="ui"))
    out = engine.sync("x")
    assert [s.action for s in out.plan.changes or out.plan.steps if s.key == FlowKey("b", "1")] == [action]
    if policy == "restore":
        assert "note" not in driver.doc(FlowKey("b", "1"))
        assert '"ui"' in engine.store.read_blob(engine.store.flows_at(engine.store.tip("drift/x"), "flows").flows[FlowKey("b", "1")]).decode()
    if policy == "adopt":
        assert b'"ui"' in engine.store.read_blob(engine.store.flows_at(engine.store.tip("env/x"), "flows").flows[FlowKey("b", "1")])


def test_a_conflict_touches_neither_side(tmp_path) -> None:
    engine, driver = setup(tmp_path)
    commit(engine, {FlowKey("a", "1"): doc("a", note="git")})
    driver.put(doc("a", note="ui"))
    out = engine.sync("x")
    assert out.result is RunResult.CONFLICT and driver.doc(FlowKey("a", "1"))["note"] == "ui"


def test_an_edit_landing_during_the_write_is_refused_not_clobbered(tmp_path) -> None:
    engine, driver = setup(tmp_path)
    commit(engine, {FlowKey("a", "1"): doc("a", note="git")})
    driver.before_apply = lambda batch: driver.put(doc("a", note="typed meanwhile"))
    out = engine.sync("x")
    assert "since it was read" in out.failed[FlowKey("a", "1")]
    assert driver.doc(FlowKey("a", "1"))["note"] == "typed meanwhile"


def test_a_platform_that_rewrites_flows_fails_the_read_after_write_check(tmp_path) -> None:
    engine, driver = setup(tmp_path)
    driver.rewrite = lambda d: {**d, "stamped": True}
    commit(engine, {FlowKey("c", "1"): doc("c", note="v2")})
    out = engine.sync("x")
    assert "read-after-write" in out.failed[FlowKey("c", "1")]


def test_a_refusal_of_one_flow_leaves_the_marker_truthful(tmp_path) -> None:
    engine, driver = setup(tmp_path)
    driver.refuse = {FlowKey("a", "1")}
    commit(engine, {FlowKey("a", "1"): doc("a", note="v2"), FlowKey("b", "1"): doc("b", note="v2")})
    out = engine.sync("x")
    assert set(out.failed) == {FlowKey("a", "1")}
    again = engine.sync("x", dry_run=True)
    assert [s.key for s in again.plan.changes] == [FlowKey("a", "1")]


def test_a_platform_that_is_down_raises_retryable(tmp_path) -> None:
    engine, driver = setup(tmp_path)
    driver.down = "connection refused"
    with pytest.raises(RetryableError, match="connection refused"):
        engine.sync("x")


def test_mass_deletion_is_refused_before_any_change(tmp_path) -> None:
    engine, driver = setup(tmp_path)
    commit(engine, {FlowKey(n, "1"): None for n in "abc"})
    with pytest.raises(MassDeletionRefused, match="3 of 4"):
        engine.sync("x")
    assert driver.keys == {FlowKey(n, "1") for n in "abcd"}
    engine.sync("x", allow_mass_delete=True)
    assert driver.keys == {FlowKey("d", "1")}


def test_a_missing_branch_is_an_error_for_sync_but_not_for_export(tmp_path) -> None:
    engine, driver = setup(tmp_path)
    engine.store.repo.references.delete("refs/heads/env/x")
    with pytest.raises(StallError, match="does not exist"):
        engine.sync("x")
    assert engine.export("x").commit is not None


def test_the_engine_closes_its_drivers(tmp_path) -> None:
    engine, driver = setup(tmp_path)
    engine.close()
    assert driver.closed


def test_an_unhealthy_flow_is_restored_and_its_commit_quarantined(tmp_path) -> None:
    """The health gate: the previous version is deployed again, the run fails, and the same commit is
    not applied again; a new commit changing the flow lifts the quarantine."""
    engine, driver = setup(tmp_path)
    a, b = FlowKey("a", "1"), FlowKey("b", "1")
    commit(engine, {a: doc("a", note="broken"), b: doc("b", note="fine")})
    driver.unhealthy = {a: "missing-types: node type 'foo' is not installed"}
    out = engine.sync("x")
    assert out.result is RunResult.ERROR and set(out.quarantined) == {a}
    assert "deployed again" in out.failed[a]
    assert "note" not in driver.doc(a) and driver.doc(b)["note"] == "fine"
    again = engine.sync("x")
    step = next(s for s in again.plan.steps if s.key == a)
    assert step.state.value == "quarantined" and "missing-types" in step.reason
    assert again.states["quarantined"] == 1 and not again.quarantined
    assert driver.health_asked == [(a, b)]  # nothing deployed again: nothing asked again
    driver.unhealthy = {}
    commit(engine, {a: doc("a", note="fixed")})
    fixed = engine.sync("x")
    assert fixed.result is RunResult.OK and driver.doc(a)["note"] == "fixed"
    assert engine.store.read_state("refs/reconciler/quarantine/x") is None


def test_with_on_unhealthy_report_the_flow_stays_and_is_quarantined(tmp_path) -> None:
    engine, driver = setup(tmp_path, on_unhealthy="report")
    a = FlowKey("a", "1")
    commit(engine, {a: doc("a", note="broken")})
    driver.unhealthy = {a: "a node failed to start"}
    out = engine.sync("x")
    assert out.result is RunResult.ERROR and driver.doc(a)["note"] == "broken"
    assert engine.sync("x").states["quarantined"] == 1
