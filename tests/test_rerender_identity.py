"""The re-render check skips its full comparison only where it provably cannot be true: an environment
with no parameter and no secret, a driver without write-only fields, and git's version holding no
``${`` or ``\\u`` (so it is its own rendering). These tests run the full comparison beside the skip on
real drift of every kind in a real directory environment and assert they agree, and that the plan is
the same with and without the skip."""

from __future__ import annotations

import json

import pytest

from reconciler import rerender
from reconciler.config import load_config
from reconciler.engine import Engine
from reconciler.plan import State
from tests.conftest import Workspace

FLOWS = {
    "edited": {"name": "edited", "version": "1", "steps": [{"id": "a", "config": {"retries": 1}}]},
    "ignored": {"name": "ignored", "version": "1", "exportedAt": "2020-01-01", "steps": []},
    "reordered": {"name": "reordered", "version": "1", "b": 1, "a": [1, 2]},
    "unicode": {"name": "unicode", "version": "1", "text": "caf\u00e9 \u0001"},  # git holds a \u escape
    "dollar": {"name": "dollar", "version": "1", "text": "costs $5 {literally}"},
    "added": {"name": "added", "version": "1", "steps": []},
}


def _setup(ws: Workspace) -> None:
    ws.add_env("production", drift="report")
    ws.write_config()
    ws.init_repo()
    clone = ws.clone()
    ws.git("checkout", "-q", "-b", "env/production", cwd=clone)
    for name, doc in FLOWS.items():
        (clone / "flows" / name).mkdir(parents=True)
        (clone / "flows" / name / "1.json").write_text(json.dumps(doc, indent=2))
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-qm", "flows", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    assert ws.cli("sync", "production").returncode == 0


def _edit(ws: Workspace) -> None:
    for path in ws.env_dir("production").glob("*.json"):
        doc = json.loads(path.read_text())
        name = doc["name"]
        if name == "edited":
            doc["steps"][0]["config"]["retries"] = 2
        elif name == "ignored":
            doc["exportedAt"] = "2021-02-02"  # an ignored field only: not drift at all
        elif name == "reordered":
            doc = {"a": [1, 2], "version": "1", "b": 1, "name": "reordered"}  # same document, other text
        elif name == "unicode":
            doc["text"] = "caf\u00e9 \u0002"
        elif name == "dollar":
            doc["text"] = "costs ${5} {literally}"  # a live value that looks like a placeholder
        elif name == "added":
            doc["steps"].append({"id": "new"})
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=name != "unicode"))


def _engine(ws: Workspace) -> Engine:
    return Engine(load_config(ws.config), create_repository=True)


def _run(ws: Workspace, monkeypatch, skip: bool) -> tuple[object, dict, dict]:
    """The plan of a fresh engine, what the full check answered for each flow it ran for, and what the
    skip's test answered (``skip`` False: it is never used)."""
    full: dict = {}
    asked: dict = {}
    same, stored_is_rendered = rerender._same_as_git, rerender._stored_is_rendered

    def spy(driver, store, env, snap, key, entry):
        full[key.name] = same(driver, store, env, snap, key, entry)
        return full[key.name]

    def skip_spy(store, entry):
        asked[entry] = stored_is_rendered(store, entry) if skip else False
        return asked[entry]

    with monkeypatch.context() as m:
        m.setattr(rerender, "_same_as_git", spy)
        m.setattr(rerender, "_stored_is_rendered", skip_spy)
        engine = _engine(ws)
        try:
            env = engine.config.env("production")
            snap = engine.read(env)
            p = engine.plan(env, snap)
            names = {b: k.name for k, b in snap.tip_blobs.items()}
        finally:
            engine.close()
    return p, full, {names[b]: v for b, v in asked.items()}


def test_the_skip_answers_only_where_the_full_check_is_false(ws: Workspace, monkeypatch) -> None:
    _setup(ws)
    _edit(ws)
    slow, full, _ = _run(ws, monkeypatch, skip=False)
    drifted = {s.key.name for s in slow.steps if s.state == State.DRIFTED}
    assert drifted == {"edited", "unicode", "dollar", "added"}
    assert set(full) == drifted and not any(full.values())  # the full check ran for each, none re-rendered
    fast, ran, asked = _run(ws, monkeypatch, skip=True)
    assert fast == slow
    assert asked == {"edited": True, "added": True, "dollar": True, "unicode": False}
    assert set(ran) == {"unicode"}  # git's version holds a \\u escape: the full check decides


def test_a_parameter_or_a_placeholder_in_git_keeps_the_full_check(ws: Workspace, monkeypatch) -> None:
    """With a parameter the skip is never asked; a flow whose git version holds a placeholder is always
    checked in full, and a re-rendered flow is still found and deployed."""
    _setup(ws)
    text = ws.config.read_text().replace('name = "production"\n', 'name = "production"\nparams = { API = "old" }\n')
    ws.config.write_text(text)
    clone = ws.root / "clone"  # _setup's clone, at the branch's tip
    (clone / "flows/withparam").mkdir(parents=True)
    (clone / "flows/withparam/1.json").write_text(json.dumps({"name": "withparam", "version": "1", "url": "${param:API}/x"}))
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-qm", "param", cwd=clone)
    ws.git("push", "-q", "origin", "env/production", cwd=clone)
    assert ws.cli("sync", "production").returncode == 0
    ws.config.write_text(text.replace('API = "old"', 'API = "new"'))
    _edit(ws)
    fast, ran, asked = _run(ws, monkeypatch, skip=True)
    slow, _, _ = _run(ws, monkeypatch, skip=False)
    assert fast == slow and asked == {}
    assert set(ran) == {"edited", "unicode", "dollar", "added"}  # with a parameter, every drift in full
    step = next(s for s in fast.steps if s.key.name == "withparam")
    assert step.reason.startswith(rerender.REASON)


def test_a_driver_presenting_flows_in_its_own_form_keeps_the_full_check(ws: Workspace, monkeypatch) -> None:
    """A :class:`~reconciler.drivers.Rendering` driver compares ids of its own form, not of git's: the skip
    is never asked, and every drifted flow is checked in full."""
    from reconciler.drivers import Rendering
    from reconciler.engine import make_driver

    _setup(ws)
    _edit(ws)
    config = load_config(ws.config)
    inner = make_driver(config.env("production"))

    class Presenting(type(inner)):  # the directory driver, presenting git's flows as they are
        one_way = "a test driver"

        def prepare(self, secrets) -> None:
            pass

        def present(self, flow, where):
            return flow

    driver = Presenting.__new__(Presenting)
    driver.__dict__.update(inner.__dict__)
    assert isinstance(driver, Rendering)
    asked: list = []
    ran: list = []
    same = rerender._same_as_git
    monkeypatch.setattr(rerender, "_stored_is_rendered", lambda store, entry: asked.append(entry) or True)
    monkeypatch.setattr(rerender, "_same_as_git", lambda d, s, e, snap, key, entry: ran.append(key.name) or same(d, s, e, snap, key, entry))
    engine = Engine(config, drivers={"production": driver}, create_repository=True)
    try:
        env = engine.config.env("production")
        engine.plan(env, engine.read(env))
    finally:
        engine.close()
    assert asked == [] and set(ran) == {"edited", "unicode", "dollar", "added"}
