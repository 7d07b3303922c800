"""The engine against a real bare repository and real folders.

Wrappers around the directory driver (our own port) inject the races and
failures; git is always real.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import pytest

from reconciler.config import load_config
from reconciler.drivers import Change, Driver, LiveSet
from reconciler.engine import Engine, make_driver
from reconciler.errors import RetryableError
from reconciler.flows import FlowKey
from reconciler.plan import Action
from reconciler.testing import Wrapped
from tests.conftest import Workspace, flow

ORDERS = FlowKey("orders", "1.0")


class Hooked(Wrapped):
    """A real driver with hooks around export and apply (the rest of the port forwarded explicitly)."""

    def __init__(self, inner: Driver, before_export: Callable[[], None] | None = None,
                 refuse: set[FlowKey] | None = None, rewrite: bool = False):
        super().__init__(inner)
        self.before_export, self.refuse, self.rewrite = before_export, refuse or set(), rewrite
        self.applied: list[Change] = []

    def export(self, progress=None) -> LiveSet:
        if self.before_export:
            hook, self.before_export = self.before_export, None
            hook()
        return self.inner.export(progress)

    def apply(self, changes: Sequence[Change], progress=None) -> dict[FlowKey, str]:
        self.applied.extend(changes)
        keep = [c for c in changes if c.key not in self.refuse]
        if self.rewrite:
            keep = [Change(c.key, c.data.replace(b'"POST"', b'"PUT"') if c.data else None, c.expect) for c in keep]
        failed = self.inner.apply(keep, progress)
        failed.update({c.key: "refused by the platform" for c in changes if c.key in self.refuse})
        return failed


def engine_for(ws: Workspace, **drivers: Driver) -> Engine:
    return Engine(load_config(ws.config), drivers=drivers, create_repository=True)


def driver_of(ws: Workspace, env: str) -> Driver:
    return make_driver(load_config(ws.config).env(env))


@pytest.fixture
def two(ws: Workspace) -> Workspace:
    """production holds orders and billing, in sync with env/production."""
    ws.add_env("production", drift="adopt", prune=True)
    ws.put("production", "orders.json", flow("orders", "1.0"))
    ws.put("production", "billing.json", flow("billing", "1"))
    engine_for(ws).export("production")
    return ws


def push_change(ws: Workspace, rel: str, mutate, name: str = "user") -> None:
    clone = ws.root / name
    if clone.exists():
        ws.git("pull", "-q", cwd=clone)
    else:
        ws.clone("env/production", name=name)
    path = clone / rel
    if mutate is None:
        path.unlink()
    else:
        doc = json.loads(path.read_text()) if path.exists() else {}
        mutate(doc)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2))
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-q", "-m", f"edit {rel}", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)


def test_a_push_racing_an_adopt_is_never_lost(two: Workspace) -> None:
    """When the branch moves between read and commit, the engine re-reads and re-plans."""
    ws = two
    ws.put("production", "orders.json", flow("orders", "1.0", owner="ui"))  # drift to adopt
    racing = Hooked(driver_of(ws, "production"),
                    before_export=lambda: push_change(ws, "flows/billing/1.json", lambda d: d.update(pushed=True)))
    out = engine_for(ws, production=racing).sync("production")
    assert not out.failed
    branch = lambda rel: json.loads(ws.git("show", f"env/production:{rel}", cwd=ws.repo))  # noqa: E731
    assert branch("flows/billing/1.json")["pushed"] is True
    assert branch("flows/orders/1.0.json")["owner"] == "ui"
    assert ws.live("production")[("billing", "1")]["pushed"] is True


def test_a_crash_before_the_marker_moves_is_repaired_without_importing_twice(two: Workspace, monkeypatch) -> None:
    """If the process dies after importing but before moving the marker, the next run only advances it."""
    ws = two
    push_change(ws, "flows/orders/1.0.json", lambda d: d.update(retries=2))
    engine = engine_for(ws)
    monkeypatch.setattr(engine.store, "set_marker", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        engine.sync("production")
    assert ws.live("production")[("orders", "1.0")]["retries"] == 2
    watching = Hooked(driver_of(ws, "production"))
    out = engine_for(ws, production=watching).sync("production")
    assert [s.action for s in out.plan.changes] == [Action.ADVANCE]
    assert watching.applied == []
    again = engine_for(ws).sync("production", dry_run=True)
    assert again.plan.changes == ()


def test_a_flow_left_aside_by_a_killed_write_is_not_adopted_as_deleted(two: Workspace) -> None:
    """kill -9 inside the driver's write leaves the old file aside; the next run puts it back first."""
    ws = two
    folder = ws.env_dir("production")
    os.rename(folder / "orders.json", folder / ".reconciler-4242-1.orders.json.aside")
    out = engine_for(ws).sync("production")  # drift policy adopt: a missing file would be a deletion
    assert not out.failed and out.plan.changes == ()
    assert ws.live("production")[("orders", "1.0")]["name"] == "orders"
    assert json.loads(ws.git("show", "env/production:flows/orders/1.0.json", cwd=ws.repo))["name"] == "orders"


def test_after_a_partial_apply_the_marker_holds_exactly_what_the_environment_holds(two: Workspace) -> None:
    """A refused import keeps its old base; an imported flow later deleted in git is seen as deleted in git."""
    ws = two
    push_change(ws, "flows/orders/1.0.json", lambda d: d.update(retries=2))
    push_change(ws, "flows/fresh/1.json", lambda d: d.update(flow("fresh", "1")))
    refusing = Hooked(driver_of(ws, "production"), refuse={ORDERS})
    out = engine_for(ws, production=refusing).sync("production")
    assert set(out.failed) == {ORDERS}
    plan = engine_for(ws).sync("production", dry_run=True).plan
    assert {s.key: s.action for s in plan.changes} == {ORDERS: Action.IMPORT}
    push_change(ws, "flows/fresh/1.json", None)
    plan = engine_for(ws).sync("production", dry_run=True).plan
    step = next(s for s in plan.steps if s.key == FlowKey("fresh", "1"))
    assert (step.action, step.reason) == (Action.DELETE, "deleted in git")


def test_an_edit_made_during_a_sync_is_not_clobbered(two: Workspace) -> None:
    """The driver refuses to overwrite a file whose content changed after the plan read it."""
    ws = two
    push_change(ws, "flows/orders/1.0.json", lambda d: d.update(retries=2))
    engine = engine_for(ws)
    env = engine.config.env("production")
    snap = engine.read(env)
    plan = engine.plan(env, snap)
    ws.put("production", "orders.json", flow("orders", "1.0", typed_in_the_ui=True))
    out = engine.apply(env, snap, plan)
    assert ORDERS in out.failed and "since it was read" in out.failed[ORDERS]
    assert ws.live("production")[ORDERS.name, ORDERS.version]["typed_in_the_ui"] is True
    nxt = engine_for(ws).sync("production", dry_run=True).plan
    assert next(s for s in nxt.steps if s.key == ORDERS).action == Action.CONFLICT


def test_the_read_after_write_check_catches_a_platform_that_rewrites_flows(two: Workspace) -> None:
    """If the environment holds something else after an import, the flow is reported, never retried blindly."""
    ws = two
    push_change(ws, "flows/orders/1.0.json", lambda d: d.update(retries=2))
    rewriting = Hooked(driver_of(ws, "production"), rewrite=True)
    out = engine_for(ws, production=rewriting).sync("production")
    assert "read-after-write" in out.failed[ORDERS]
    nxt = engine_for(ws).sync("production", dry_run=True).plan
    # The environment now holds neither git's version nor the old one: a person decides.
    assert next(s for s in nxt.steps if s.key == ORDERS).action == Action.CONFLICT


def test_a_reformatted_file_pushed_by_a_user_is_still_in_sync(two: Workspace) -> None:
    """Comparison is on canonical bytes: whitespace and key order in git do not matter."""
    ws = two
    push_change(ws, "flows/orders/1.0.json", lambda d: None)  # rewritten with json.dumps(indent=2), keys unsorted
    clone = ws.root / "user"
    path = clone / "flows/orders/1.0.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(dict(reversed(list(doc.items()))), separators=(",", ":")))
    ws.git("commit", "-q", "-am", "minified", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    watching = Hooked(driver_of(ws, "production"))
    out = engine_for(ws, production=watching).sync("production")
    assert watching.applied == []
    assert out.states["in_sync"] == 2


def test_changing_the_ignore_rules_converges_without_imports(two: Workspace) -> None:
    """Both sides re-canonicalise the same way, so the marker just advances."""
    ws = two
    ws.envs["production"]["ignore"] = ["/exportedAt", "/steps/*/id"]
    ws.write_config()
    watching = Hooked(driver_of(ws, "production"))
    out = engine_for(ws, production=watching).sync("production")
    assert watching.applied == []
    assert not out.failed and out.conflicts == 0


def test_adopting_a_name_that_differs_only_in_case_is_refused(two: Workspace) -> None:
    """Orders and orders would collide on a case-insensitive checkout."""
    ws = two
    ws.put("production", "upper.json", flow("Orders", "1.0"))
    out = engine_for(ws).sync("production")
    assert "differs only in case" in out.failed[FlowKey("Orders", "1.0")]
    assert "flows/Orders" not in ws.git("ls-tree", "-r", "--name-only", "env/production", cwd=ws.repo)


def test_an_unreadable_live_file_is_not_taken_for_a_deletion(two: Workspace) -> None:
    """With adopt, a broken file in the folder must not remove its flow from git."""
    ws = two
    (ws.env_dir("production") / "orders.json").write_text("{ half saved")
    out = engine_for(ws).sync("production")
    assert any("orders.json" in p.where for p in out.problems)
    assert "flows/orders/1.0.json" in ws.git("ls-tree", "-r", "--name-only", "env/production", cwd=ws.repo)
    assert (ws.env_dir("production") / "orders.json").read_text() == "{ half saved"


def test_two_files_holding_the_same_flow_are_invalid(two: Workspace) -> None:
    """Duplicates are reported and neither copy is touched."""
    ws = two
    ws.put("production", "copy.json", flow("orders", "1.0", copy=True))
    out = engine_for(ws).sync("production")
    assert next(s for s in out.plan.steps if s.key == ORDERS).action == Action.INVALID
    assert (ws.env_dir("production") / "copy.json").exists() and (ws.env_dir("production") / "orders.json").exists()


def test_a_flow_failing_the_environment_schema_is_not_imported(ws: Workspace) -> None:
    """With schema = "...", every flow is validated before import; the error has the pointer."""
    (ws.root / "flow.schema.json").write_text(json.dumps({
        "type": "object", "required": ["name", "version", "steps"],
        "properties": {"steps": {"type": "array", "items": {"type": "object", "required": ["id"]}}},
    }))
    ws.add_env("acceptance", drift="adopt")
    ws.add_env("production", schema="flow.schema.json")
    ws.put("acceptance", "a.json", flow("good"))
    bad = flow("bad")
    del bad["steps"][1]["id"]
    ws.put("acceptance", "b.json", bad)
    engine_for(ws).export("acceptance")
    ws.git("update-ref", "refs/heads/env/production", "refs/heads/env/acceptance", cwd=ws.repo)
    out = engine_for(ws).sync("production")
    prob = next(p for p in out.problems if p.flow == "bad@1.0")
    assert prob.pointer == "/steps/1" and "'id' is a required property" in prob.message
    assert set(ws.live("production")) == {("good", "1.0")}


def test_names_that_would_escape_the_folder_stay_inside_it(ws: Workspace) -> None:
    """A flow named ../../etc/passwd is written inside the environment folder, and to git under flows/."""
    ws.add_env("acceptance", drift="adopt")
    ws.add_env("production")
    ws.put("acceptance", "evil.json", flow("../../etc/passwd", "../1"))
    engine_for(ws).export("acceptance")
    tree = ws.git("ls-tree", "-r", "--name-only", "env/acceptance", cwd=ws.repo).split()
    assert tree == ["flows/~..%2F..%2Fetc%2Fpasswd/~..%2F1.json"]
    ws.git("update-ref", "refs/heads/env/production", "refs/heads/env/acceptance", cwd=ws.repo)
    engine_for(ws).sync("production")
    assert [p.name for p in ws.env_dir("production").iterdir()] == ["~..%2F..%2Fetc%2Fpasswd@~..%2F1.json"]
    assert not (ws.root / "etc").exists()


def test_only_one_sync_of_an_environment_runs_at_a_time(two: Workspace) -> None:
    """A second process finds the lock held and gets a retryable error."""
    ws = two
    engine = engine_for(ws)
    with engine.store.lock("production"):
        with pytest.raises(RetryableError, match="being reconciled by another process"):
            engine_for(ws).sync("production")


def test_export_leaves_changes_made_in_git_pending(two: Workspace) -> None:
    """An export never undoes a push: a flow changed in git and not yet synced stays as pushed."""
    ws = two
    push_change(ws, "flows/orders/1.0.json", lambda d: d.update(retries=7))
    out = engine_for(ws).export("production")
    assert out.commit is None
    assert '"retries": 7' in ws.git("show", "env/production:flows/orders/1.0.json", cwd=ws.repo)
    assert "retries" not in ws.live("production")[("orders", "1.0")]
