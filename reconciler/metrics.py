"""Prometheus metrics of the service, in a registry of their own (no globals).

Every metric of a reconcile is written in one place, :meth:`Metrics.record`, from
its outcome; a notification's in one other, :meth:`Metrics.notified`, by the
dispatcher; the rest of the code never touches a counter.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from reconciler import __version__
from reconciler.outcome import RunResult
from reconciler.plan import Action, State

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.runs = Counter("reconciler_reconcile_runs", "Reconcile runs by result.", ["environment", "result"], registry=r)
        self.duration = Histogram(
            "reconciler_reconcile_duration_seconds", "Time one reconcile took.", ["environment"], registry=r
        )
        self.flows = Gauge("reconciler_flows", "Flows by state after the last reconcile.", ["environment", "state"], registry=r)
        self.drift = Counter(
            "reconciler_drift_events", "Drift handled, by action (restored, adopted, reported).", ["environment", "action"], registry=r
        )
        self.imports = Counter("reconciler_flow_imports", "Flows written to the environment.", ["environment", "result"], registry=r)
        self.deletes = Counter("reconciler_flow_deletes", "Flows deleted from the environment.", ["environment", "result"], registry=r)
        self.exports = Counter("reconciler_flow_exports", "Flows committed from the environment to git.", ["environment"], registry=r)
        self.fetch_failures = Counter("reconciler_git_fetch_failures", "Failed fetches from the remote.", registry=r)
        self.push_failures = Counter("reconciler_git_push_failures", "Failed pushes to the remote.", ["environment"], registry=r)
        self.fetches = Counter("reconciler_git_fetches", "Fetches from the remote.", registry=r)
        self.last_success = Gauge(
            "reconciler_last_success_timestamp_seconds", "When the environment last reconciled without error.", ["environment"], registry=r
        )
        self.latency = Histogram(
            "reconciler_commit_to_applied_seconds",
            "From a commit landing on the branch to the environment holding it.",
            ["environment"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rewrites = Counter(
            "reconciler_branch_rewrites", "Rewrites of an environment's branch on the server (force-push, reset) that were followed.",
            ["environment"], registry=r,
        )
        self.mass_delete_refusals = Counter(
            "reconciler_mass_delete_refusals", "Runs refused because they would delete too many flows.", ["environment"], registry=r
        )
        self.health = Counter(
            "reconciler_health_checks", "Flows the health gate checked after a deploy, by result (healthy, unhealthy).",
            ["environment", "result"], registry=r,
        )
        self.health_restores = Counter(
            "reconciler_health_restores", "Unhealthy flows deployed again in their previous version.", ["environment"],
            registry=r,
        )
        self.quarantined = Gauge(
            "reconciler_quarantined_flows", "Flows whose version in git is quarantined (failed the health gate).",
            ["environment"], registry=r,
        )
        self.triggers = Counter("reconciler_triggers", "Reconcile requests by source.", ["environment", "source"], registry=r)
        self.notifications = Counter(
            "reconciler_notifications", "Notifications ([[notify]] sinks) by result: delivered, failed (for good, "
            "after the retries) or dropped (the queue was full, or the service stopped first).", ["sink", "result"],
            registry=r,
        )
        info = Gauge("reconciler_build_info", "Version of the running reconciler.", ["version"], registry=r)
        info.labels(__version__).set(1)

    def register(self, env: str) -> None:
        """Create an environment's series at zero, so they exist before the first event."""
        for result in RunResult:
            self.runs.labels(env, result.value)
        for action in ("restored", "adopted", "reported"):
            self.drift.labels(env, action)
        for result in ("ok", "failed"):
            self.imports.labels(env, result)
            self.deletes.labels(env, result)
        self.exports.labels(env)
        self.push_failures.labels(env)
        self.rewrites.labels(env)
        self.mass_delete_refusals.labels(env)
        for result in ("healthy", "unhealthy"):
            self.health.labels(env, result)
        self.health_restores.labels(env)
        self.quarantined.labels(env)
        self.duration.labels(env)
        self.latency.labels(env)

    def register_sink(self, sink: str) -> None:
        """Create a notification sink's series at zero."""
        for result in ("delivered", "failed", "dropped"):
            self.notifications.labels(sink, result)

    def notified(self, sink: str, result: str) -> None:
        """One delivery to ``sink`` ended: delivered, failed or dropped (the dispatcher's one counter)."""
        self.notifications.labels(sink, result).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def record(self, env: str, outcome, seconds: float, result: RunResult, new_reports: int,
               latency: float | None) -> None:
        """Everything one finished reconcile says, written at once."""
        self.runs.labels(env, result.value).inc()
        self.duration.labels(env).observe(seconds)
        if outcome is None:
            return
        for state, n in outcome.states.items():
            self.flows.labels(env, state).set(n)
        self.quarantined.labels(env).set(outcome.states.get("quarantined", 0) + len(outcome.quarantined))
        if outcome.health_checked:
            self.health.labels(env, "unhealthy").inc(len(outcome.quarantined))
            self.health.labels(env, "healthy").inc(outcome.health_checked - len(outcome.quarantined))
            restored = sum(1 for k in outcome.quarantined if "deployed again" in outcome.failed.get(k, ""))
            if restored:
                self.health_restores.labels(env).inc(restored)
        done = {s.key for s in outcome.done}
        for s in outcome.plan.changes:
            ok = s.key in done
            if s.action == Action.IMPORT:
                self.imports.labels(env, "ok" if ok else "failed").inc()
            elif s.action == Action.DELETE:
                self.deletes.labels(env, "ok" if ok else "failed").inc()
            elif s.action == Action.ADOPT and ok:
                self.exports.labels(env).inc()
            if ok and s.state == State.DRIFTED:
                self.drift.labels(env, "adopted" if s.action == Action.ADOPT else "restored").inc()
        if new_reports:
            self.drift.labels(env, "reported").inc(new_reports)
        if result in (RunResult.OK, RunResult.CONFLICT):
            self.last_success.labels(env).set(time.time())
        if latency is not None:
            self.latency.labels(env).observe(latency)
