"""The rendered bytes a read keeps for its run's write (:mod:`reconciler.rendered`): the write takes them
only for the very git entry and the id the plan used; past the budget, for a flow the read did not render
(derived from the last read), or for another entry, it reads and renders again, and what is written is
what rendering the flow in full gives, every time."""

from __future__ import annotations

import json

import pytest

from reconciler.canonical import blob_id
from reconciler.errors import Problem
from reconciler.flows import CanonicalFlow, FlowKey
from reconciler.rendered import Rendered
from tests.conftest import Workspace, flow
from tests.test_fullsync import API, canon, holds, prod_from_acceptance

K = FlowKey("a", "1")


def test_kept_bytes_are_given_for_their_entry_and_id_only() -> None:
    data = b'{"name": "a"}\n'
    r = Rendered()
    r.keep(K, "entry-1", CanonicalFlow(K, data, blob_id(data)))
    assert r.data(K, "entry-1", blob_id(data)) == data
    assert r.data(K, "entry-2", blob_id(data)) is None  # another git entry: read it
    assert r.data(K, "entry-1", "0" * 40) is None  # not the id the plan used
    assert r.data(K, None, blob_id(data)) is None and r.data(K, "entry-1", None) is None
    assert r.data(FlowKey("b", "1"), "entry-1", blob_id(data)) is None
    assert r.keep(K, "e", Problem("x", "bad", "", str(K))) is not None and r.data(K, "e", None) is None
    assert "name" not in repr(r)  # a rendered flow may hold secret values: never in a repr


def test_the_budget_bounds_what_is_kept() -> None:
    small, big = b'{"n": 1}\n', b'{"n": "' + b"x" * 100 + b'"}\n'
    r = Rendered(budget=len(small) + 10)
    r.keep(FlowKey("big", "1"), "e1", CanonicalFlow(FlowKey("big", "1"), big, blob_id(big)))
    r.keep(K, "e2", CanonicalFlow(K, small, blob_id(small)))
    assert len(r) == 1 and r.data(K, "e2", blob_id(small)) == small
    assert r.data(FlowKey("big", "1"), "e1", blob_id(big)) is None
    assert len(Rendered(budget=0)) == 0


@pytest.mark.parametrize("budget", [None, 0, 400])
def test_a_full_sync_writes_what_rendering_every_flow_gives_whatever_was_kept(ws: Workspace, monkeypatch,
                                                                            budget) -> None:
    """The write renders again exactly the flows the read did not keep (none; every one past a budget of
    0; those past a budget of a few flows), and every file is what was meant."""
    from reconciler import apply, rendered as rendered_module
    from reconciler.config import load_config
    from reconciler.engine import Engine

    if budget is not None:
        monkeypatch.setattr(rendered_module, "BUDGET", budget)
    want = prod_from_acceptance(ws, 12, extra=True)
    again: list[str] = []
    full = apply.read_git_flow

    def spy(store, entry, env, **kw):
        again.append(kw["where"])
        return full(store, entry, env, **kw)

    monkeypatch.setattr(apply, "read_git_flow", spy)
    engine = Engine(load_config(ws.config))
    out = engine.sync("production")
    assert not out.failed and len(out.done) == len(want)
    assert holds(ws.env_dir("production")) == want
    if budget is None:
        assert again == []  # every flow rendered once, by the read
    elif budget == 0:
        assert sorted(again) == ["loose@1.0", "templ@1.0"]  # git's bytes for the canonical rest, as before
    else:
        assert len(again) <= 2
    assert engine.sync("production").plan.changes == ()


def test_a_flow_changed_in_git_after_a_read_that_kept_it_is_written_from_the_new_version(ws: Workspace) -> None:
    """The same engine, two syncs: the second reads only the changed flow from git (the rest comes from
    the first read), and writes the new version, and the live drift restored from git's bytes."""
    from reconciler.config import load_config
    from reconciler.engine import Engine

    want = prod_from_acceptance(ws, 5, extra=True)
    engine = Engine(load_config(ws.config))
    assert not engine.sync("production").failed
    clone = ws.clone("env/production", name="edit")
    templ = flow("templ", "1.0", url="${param:API}/v2")
    (clone / "flows" / "templ" / "1.0.json").write_bytes(canon(templ))
    ws.git("commit", "-qam", "templ v2", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    want[FlowKey("templ", "1.0")] = canon(flow("templ", "1.0", url=f"{API}/v2"))
    drifted = next(p for p in ws.env_dir("production").rglob("*.json") if json.loads(p.read_bytes())["name"] == "f001")
    drifted.write_text(json.dumps(flow("f001", "1.0", note="edited live")))
    out = engine.sync("production")
    assert not out.failed and {str(s.key) for s in out.done} == {"templ@1.0", "f001@1.0"}
    assert holds(ws.env_dir("production")) == want
    assert engine.sync("production").plan.changes == ()
