"""The service keeps what its runs read later (when idle, and on stop), not after every run: a process
killed before that must still give the right answers next time, only reading more.

A killed service is played by an engine that made its runs with ``keep_later`` and was then dropped
without :meth:`Engine.keep` (nothing more reaches the disk, as with ``kill -9``); the next process is a
real ``reconciler`` command. Git is real (commits pushed from a clone), folders are real.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pygit2

from reconciler import rerender
from reconciler.config import load_config
from reconciler.engine import Engine
from reconciler.flows import FlowKey
from reconciler.gitstore import GitStore
from reconciler.metrics import Metrics
from reconciler.plan import Action, Plan, State, Step
from reconciler.worker import EnvWorker, WorkerDeps
from tests.conftest import Workspace, flow
from tests.test_rerender import _live, _setup


def _killed_service_engine(ws: Workspace) -> Engine:
    return Engine(load_config(ws.config), keep_later=True)


def _forget_process_memory() -> None:
    """What a new process starts from: nothing of the map in memory."""
    rerender._CACHE.clear()
    rerender._LOGS.clear()
    rerender._LAST.clear()


def _push(ws: Workspace, clone: Path, edit) -> None:
    ws.git("pull", "-q", cwd=clone)
    edit(clone)
    ws.git("add", "-A", cwd=clone)
    ws.git("commit", "-qm", "edit", cwd=clone)
    ws.git("push", "-q", "origin", "env/acc", cwd=clone)


def _plan_text(ws: Workspace) -> tuple[int, str]:
    out = ws.cli("plan", "acc")
    return out.returncode, out.stdout


def test_a_service_killed_before_keeping_its_reads_gives_the_next_process_the_same_answers(ws: Workspace) -> None:
    ws.add_env("acc", drift="adopt")
    for i in range(5):
        ws.put("acc", f"f{i}.json", flow(f"f{i}", n=i))
    ws.cli("export", "acc", check=True)
    engine = _killed_service_engine(ws)
    engine.sync("acc")
    clone = ws.clone("env/acc")
    _push(ws, clone, lambda c: (c / "flows/f1/1.0.json").write_text(json.dumps(flow("f1", n=100), indent=2)))
    out = engine.sync("acc")
    assert [s.key.name for s in out.done] == ["f1"]
    ws.put("acc", "f2.json", flow("f2", n=200))  # an edit in the folder, adopted by the killed service
    out = engine.sync("acc")
    assert [(s.key.name, s.action) for s in out.done] == [("f2", Action.ADOPT)]
    _push(ws, clone, lambda c: (c / "flows/f3/1.0.json").write_text(json.dumps(flow("f3", n=300), indent=2)))
    del engine  # killed: nothing it kept later reached the disk
    _forget_process_memory()
    # the next process plans f3 (pushed, not applied) and nothing else, with and without what was kept
    kept = _plan_text(ws)
    shutil.rmtree(ws.repo / "reconciler" / "index")
    assert kept == _plan_text(ws)
    assert kept[0] == 2 and "f3" in kept[1] and "f1" not in kept[1] and "f2" not in kept[1], kept[1]
    assert ws.cli("sync", "acc").returncode == 0
    assert ws.live("acc")[("f3", "1.0")]["n"] == 300 and ws.live("acc")[("f2", "1.0")]["n"] == 200
    assert ws.cli("plan", "acc").returncode == 0


def _worker(ws: Workspace, keep_idle: float) -> tuple[EnvWorker, Path]:
    ws.add_env("acc", drift="adopt")
    ws.put("acc", "f0.json", flow("f0"))
    ws.cli("export", "acc", check=True)
    index = ws.repo / "reconciler" / "index" / "acc"
    shutil.rmtree(index)  # so what the worker's runs read is to be kept
    time.sleep(1.1)  # f0.json past its racy second: the folder's index may record it
    config = load_config(ws.config)
    engine = Engine(config, keep_later=True)
    return EnvWorker(config.env("acc"), WorkerDeps(engine=engine, store=engine.store, remote=None,
                                                   metrics=Metrics(), keep_idle=keep_idle)), index


def test_the_kept_reads_are_written_once_the_worker_is_idle(ws: Workspace) -> None:
    worker, index = _worker(ws, keep_idle=0.3)
    worker.start()
    try:
        worker.trigger("startup")
        deadline = time.monotonic() + 30
        while not ((index / "desired").exists() and (index / "live").exists()):
            assert time.monotonic() < deadline, ("not kept when idle", list(index.iterdir()) if index.exists() else None)
            time.sleep(0.02)
    finally:
        worker.stop()
        worker.join(30)


def test_the_kept_reads_are_written_on_stop_at_the_latest(ws: Workspace) -> None:
    worker, index = _worker(ws, keep_idle=3600)
    worker.start()
    try:
        worker.trigger("startup")
        time.sleep(0.1)
        assert worker.idle.wait(30)
        assert not (index / "desired").exists() and not (index / "live").exists()  # not on the run's path
    finally:
        worker.stop()
        worker.join(30)
    assert not worker.is_alive()
    assert (index / "desired").exists() and (index / "live").exists()


def test_a_worker_keeps_within_its_bound_even_when_runs_never_stop(tmp_path: Path) -> None:
    """keep_at: idle for keep_idle after the last run, at the latest keep_within after the first unkept one."""
    from tests.test_worker_unit import Clock, worker as unit_worker

    clock = Clock()
    w, *_ = unit_worker(tmp_path, clock)
    assert w.keep_at() is None
    w.reconcile({"startup"})
    first = clock()
    assert w.keep_at() == first + w.deps.keep_idle
    for _ in range(300):
        clock.now += w.deps.keep_idle / 2
        w.reconcile({"ref"})
    assert w.keep_at() == first + w.deps.keep_within
    w.keep()
    assert w.keep_at() is None


# -- the re-render map's log ----------------------------------------------------------------------

def _store(tmp_path: Path) -> GitStore:
    pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    return GitStore(tmp_path / "r.git", author_name="t", author_email="t@localhost")


def _plan(**live: str) -> Plan:
    return Plan(tuple(Step(FlowKey(k, "1"), Action.NONE, State.IN_SYNC, "", v, v, v) for k, v in sorted(live.items())))


def _imported(key: str, old: str, new: str) -> tuple[Plan, set[FlowKey]]:
    k = FlowKey(key, "1")
    return Plan((Step(k, Action.IMPORT, State.PENDING, "", old, new, old),)), {k}


def test_the_re_render_map_appended_by_a_killed_service_is_read_whole_by_the_next_process(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _forget_process_memory()
    rerender.remember(store, "e", _plan(a="1", b="2"), set(), later=True)  # the first write is whole
    assert not store.local_path("rendered-e.log").exists()
    for i in range(3):
        p, done = _imported("a", str(i + 1), str(i + 10))
        rerender.remember(store, "e", Plan((*p.steps, *_plan(b="2").steps)), done, later=True)
    rerender.remember(store, "e", _plan(a="12"), set(), later=True)  # b is gone from the environment
    assert store.local_path("rendered-e.log").exists()
    _forget_process_memory()  # killed before keep(): the next process reads the map and its log
    assert rerender._load(store, "e") == {FlowKey("a", "1"): "12"}
    rerender.keep(store, "e")
    assert not store.local_path("rendered-e.log").exists()
    _forget_process_memory()
    assert rerender._load(store, "e") == {FlowKey("a", "1"): "12"}


def test_a_torn_last_line_or_a_log_beside_another_map_is_not_read(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _forget_process_memory()
    rerender.remember(store, "e", _plan(a="1"), set(), later=True)
    p, done = _imported("a", "1", "2")
    rerender.remember(store, "e", p, done, later=True)
    log = store.local_path("rendered-e.log")
    with open(log, "ab") as f:
        f.write(b'[[["a","1"],"3')  # killed in the middle of a line
    _forget_process_memory()
    assert rerender._load(store, "e") == {FlowKey("a", "1"): "2"}
    # another process (an older version) writes the map whole and leaves the log: the log is not its
    store.write_local("rendered-e.json", json.dumps([[["a", "1"], "7"]]).encode())
    _forget_process_memory()
    assert rerender._load(store, "e") == {FlowKey("a", "1"): "7"}
    # and this process appends only to a log it started: the next change writes the map whole
    p, done = _imported("a", "7", "8")
    rerender.remember(store, "e", p, done, later=True)
    _forget_process_memory()
    assert rerender._load(store, "e") == {FlowKey("a", "1"): "8"}


def test_a_rotated_secret_deployed_by_a_killed_service_is_still_told_apart_from_an_edit(ws: Workspace) -> None:
    """The map's log is what tells the next process that the live flow is what this machine wrote."""
    _setup(ws, "report")
    (ws.root / "secrets" / "DB_PASSWORD").write_text("second-pa55word")
    engine = Engine(load_config(ws.config), keep_later=True)
    engine.sync("production")  # deploys the second secret; the map's change goes to its log
    assert _live(ws)["steps"][1]["config"]["password"] == "second-pa55word"
    del engine
    _forget_process_memory()
    (ws.root / "secrets" / "DB_PASSWORD").write_text("third-pa55word")
    plan = ws.cli("plan", "production")
    assert "secret value changed" in plan.stdout and "drifted 0" in plan.stdout, plan.stdout
    assert ws.cli("sync", "production").returncode == 0
    assert _live(ws)["steps"][1]["config"]["password"] == "third-pa55word"


def test_remembering_only_the_steps_that_changed_gives_the_map_of_every_step(tmp_path: Path) -> None:
    """remember() looks again only at steps that are not the last run's objects (and at flows done now
    or then): over random runs, the map is the one made from every step."""
    import random

    rng = random.Random(15)
    store = _store(tmp_path)
    _forget_process_memory()
    actions = [Action.NONE, Action.NONE, Action.IMPORT, Action.ADOPT, Action.ADVANCE, Action.DELETE, Action.REPORT]
    ids = [None, "1", "2", "3"]

    def step(name: str) -> Step:
        return Step(FlowKey(name, "1"), rng.choice(actions), State.PENDING, "", rng.choice(ids), rng.choice(ids),
                    rng.choice(ids))

    steps = [step(f"f{i:02d}") for i in range(40)]
    expected: dict[FlowKey, str] = {}
    for run in range(60):
        for i in rng.sample(range(len(steps)), rng.randint(0, 4)):
            steps[i] = step(steps[i].key.name)
        if run % 17 == 16:  # a flow added: the steps no longer line up with the last run's
            steps.append(step(f"g{run}"))
            steps.sort(key=lambda s: s.key)
        done = {s.key for s in rng.sample(steps, rng.randint(0, 3))}
        expected = rerender._now(tuple(steps), done, expected)
        rerender.remember(store, "e", Plan(tuple(steps)), done, later=True)
        assert rerender._load(store, "e") == expected, run
    _forget_process_memory()
    assert rerender._load(store, "e") == expected


def test_a_truncated_or_garbled_re_render_map_vouches_for_nothing(tmp_path: Path) -> None:
    """The map is parsed by orjson: a cut or garbled file, or rows of the wrong shape, give no entry
    (each drifted flow is then checked in full), never an entry it did not hold."""
    store = _store(tmp_path)
    _forget_process_memory()
    rerender.remember(store, "e", _plan(a="1", b="2"), set())
    whole = store.local_path("rendered-e.json").read_bytes()
    for bad, want in ((whole[:-3], {}), (b"\xff\xfe not json", {}), (b'{"a": 1}', {}),
                      (b'[[["a","1"],"1"],[["b"],"2"],[["c","1"],3],"x"]', {FlowKey("a", "1"): "1"})):
        store.write_local("rendered-e.json", bad)
        _forget_process_memory()
        assert rerender._load(store, "e") == want
