"""The worker's coalescing, backoff and recording, on an injected clock (no thread, no process, no sleep)."""

from __future__ import annotations

from pathlib import Path

from reconciler.canonical import Rules
from reconciler.config import parse_config
from reconciler.engine import Engine
from reconciler.events import NullNotifier
from reconciler.flows import FlowKey
from reconciler.metrics import Metrics
from reconciler.testing import MemoryDriver
from reconciler.worker import EnvWorker, WorkerDeps, retry_delay


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def worker(tmp_path: Path, clock: Clock, **server) -> tuple[EnvWorker, MemoryDriver, Metrics, list]:
    (tmp_path / "envs" / "x").mkdir(parents=True, exist_ok=True)
    config = parse_config({"environment": [{"name": "x", "driver": "directory", "path": "envs/x", "drift": "restore"}]},
                          base=tmp_path)
    driver = MemoryDriver([{"name": "a", "version": "1"}], rules=Rules())
    engine = Engine(config, drivers={"x": driver}, create_repository=True)
    engine.export("x")
    metrics, runs = Metrics(), []
    metrics.register("x")
    deps = WorkerDeps(engine=engine, store=engine.store, remote=None, metrics=metrics, clock=clock, wall=clock,
                      retry_base=server.get("retry_base", 1.0), retry_max=server.get("retry_max", 8.0),
                      on_run=lambda env, result: runs.append(result), notifier=NullNotifier(),
                      link=lambda env: f"http://127.0.0.1:9420/environments/{env}")
    return EnvWorker(config.environments[0], deps), driver, metrics, runs


def test_requests_coalesce_into_one_run(tmp_path) -> None:
    clock = Clock()
    w, _, _, runs = worker(tmp_path, clock)
    for reason in ("ref", "folder", "interval", "ref"):
        w.trigger(reason)
    reasons = w.due(clock())
    assert reasons == {"ref", "folder", "interval"}
    w.reconcile(reasons)
    assert runs == ["ok"] and w.due(clock()) is None


def test_a_platform_that_is_down_backs_off_doubling_up_to_the_cap(tmp_path) -> None:
    clock = Clock()
    w, driver, metrics, runs = worker(tmp_path, clock, retry_base=1.0, retry_max=4.0)
    driver.down = "connection refused"
    delays = []
    w.trigger("startup")
    for _ in range(5):
        reasons = w.due(clock())
        assert reasons
        w.reconcile(reasons)
        delays.append(w.status.retry_in)
        w.trigger("ref")  # a trigger during the backoff waits for it
        assert w.due(clock() + w.status.retry_in - 0.01) is None
        clock.now += w.status.retry_in
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert runs == ["retry"] * 5 and w.status.failures == 5
    driver.down = None
    w.reconcile(w.due(clock()))
    assert w.status.result == "ok" and w.status.failures == 0 and w.status.retry_in is None


def test_an_error_waits_for_the_next_trigger_without_retrying(tmp_path) -> None:
    clock = Clock()
    w, driver, _, runs = worker(tmp_path, clock)
    w.engine.store.repo.references.delete("refs/heads/env/x")  # a missing branch: a person must act
    w.trigger("startup")
    w.reconcile(w.due(clock()))
    assert runs == ["error"] and "does not exist" in w.status.error
    clock.now += 10_000
    assert w.due(clock()) is None  # no retry storm


def test_a_run_is_recorded_in_status_and_metrics_in_one_place(tmp_path) -> None:
    clock = Clock()
    w, driver, metrics, _ = worker(tmp_path, clock)
    driver.put({"name": "a", "version": "1", "edited": True})
    w.trigger("folder")
    w.reconcile(w.due(clock()))
    st = w.status
    assert st.runs == 1 and st.result == "ok" and st.counts["in_sync"] == 1
    assert st.as_dict()["last_run"].endswith("Z")
    text = metrics.render().decode()
    assert 'reconciler_drift_events_total{action="restored",environment="x"} 1.0' in text
    assert 'reconciler_triggers_total{environment="x",source="folder"} 1.0' in text


def test_retry_delay_doubles_from_the_base_up_to_the_cap() -> None:
    assert [retry_delay(n, 0.5, 3.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_run_sends_its_events_once_per_commit(tmp_path) -> None:
    """pending when a new tip is seen, applied once it is held, drift with the drift commit; nothing twice."""
    import json

    clock = Clock()
    w, driver, _, _ = worker(tmp_path, clock)
    events = w.deps.notifier.events
    store = w.engine.store
    data = json.dumps({"name": "a", "version": "1", "note": "v2"}).encode()
    store.commit_changes("env/x", store.tip("env/x"), "flows", {FlowKey("a", "1"): data}, "v2\n")
    w.trigger("ref")
    w.reconcile(w.due(clock()))
    assert [e.kind for e in events] == ["pending", "applied"]
    assert events[1].commit == store.tip("env/x") and events[1].link.endswith("/environments/x")
    w.trigger("interval")
    w.reconcile(w.due(clock()))
    assert [e.kind for e in events] == ["pending", "applied"]  # nothing new: no event
    driver.put({"name": "a", "version": "1", "note": "ui"})
    w.trigger("folder")
    w.reconcile(w.due(clock()))
    assert events[-1].kind == "drift" and events[-1].drift_commit == store.tip("drift/x")
    assert events[-1].flows == (("a@1", "import"),)
