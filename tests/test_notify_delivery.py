"""The dispatcher against real receivers on 127.0.0.1: signed webhooks, Slack, the three forges' statuses,
filters, retries, a bounded queue, the flush on stop, and no credential in any log line."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
import structlog

from reconciler.events import Event
from reconciler.flows import FlowKey
from reconciler.metrics import Metrics
from reconciler.notify import (DeliverySettings, Dispatcher, ForgeNotify, ForgeSink, SlackNotify, SlackSink,
                               WebhookNotify, WebhookSink)
from reconciler.worker import EnvWorker
from tests.servicekit import wait_for
from tests.test_notify_fakes import FakeForge, OpenAPI, SlackReceiver, WebhookReceiver, github_openapi  # noqa: F401
from tests.test_worker_unit import Clock, worker

KEY, TOKEN = "whk-k3y-0123456789abcdef", "gh-t0ken-0123456789abcdef"
FAST = DeliverySettings(retries=3, retry_base=0.02, retry_max=0.1, http_attempts=2, http_backoff=0.01)
SHA = "c" * 40


def ev(kind: str = "applied", env: str = "production", commit: str | None = SHA, at: str = "t1", **kw) -> Event:
    return Event(kind, env, commit, kw.pop("result", "ok"), kw.pop("message", f"{env}: {kind}"), at, **kw)


def count(metrics: Metrics, sink: str, result: str) -> float:
    return metrics.registry.get_sample_value("reconciler_notifications_total", {"sink": sink, "result": result}) or 0.0


def webhook(url: str, **kw) -> WebhookSink:
    settings = WebhookNotify(type="webhook", url=url, secret_env="HOOK_KEY", timeout=kw.pop("timeout", 2.0), **kw)
    return WebhookSink(settings, FAST, environ={"HOOK_KEY": KEY})


def github(gh: FakeForge, *, token: str = TOKEN, settings: DeliverySettings = FAST, timeout: float = 2.0) -> ForgeSink:
    return ForgeSink(ForgeNotify(type="github", api=gh.api, repository="acme/flows", token_env="GH", timeout=timeout),
                     settings, environ={"GH": token})


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def running(sinks, metrics: Metrics, settings: DeliverySettings = FAST) -> Dispatcher:
    d = Dispatcher(sinks, metrics=metrics, settings=settings)
    d.start()
    return d


def test_a_webhook_gets_the_event_as_json_signed_with_its_key(metrics: Metrics) -> None:
    """X-Signature: sha256=<hex HMAC-SHA256 of the body>; the body is Event.as_dict()."""
    with WebhookReceiver(KEY) as rx:
        d = running([webhook(rx.url + "/hooks/flows")], metrics)
        e = ev(flows=(("orders@1.0", "import"),), link="https://r.example.com/environments/production")
        d.publish(e)
        assert d.wait_idle(5)
        assert rx.events == [json.loads(json.dumps(e.as_dict()))]
        assert rx.events[0]["flows"] == [{"flow": "orders@1.0", "action": "import"}]
        assert count(metrics, "webhook", "delivered") == 1
        d.stop(1)


def test_a_webhook_signed_with_another_key_fails_without_retrying(metrics: Metrics) -> None:
    with WebhookReceiver("another-key-0123456789") as rx:
        d = running([webhook(rx.url + "/hooks/flows")], metrics)
        d.publish(ev())
        assert d.wait_idle(5)
        assert [r.status for r in rx.requests] == [401] and rx.events == []
        assert count(metrics, "webhook", "failed") == 1
        d.stop(1)


def test_slack_gets_a_short_text_at_the_url_from_the_secret(metrics: Metrics) -> None:
    with SlackReceiver() as rx:
        sink = SlackSink(SlackNotify(type="slack", url_env="SLACK_URL"), FAST, environ={"SLACK_URL": rx.hook})
        d = running([sink], metrics)
        d.publish(ev("invalid", message="1 flow(s) cannot be used", flows=(("orders@1.0", "invalid"),)))
        assert d.wait_idle(5)
        assert rx.texts == [":x: *production* invalid `cccccccccccc`: 1 flow(s) cannot be used\norders@1.0 (invalid)"]
        d.stop(1)


def test_filters_let_through_only_the_kinds_and_environments_named(metrics: Metrics) -> None:
    with WebhookReceiver(KEY) as rx:
        d = running([webhook(rx.url + "/hooks/flows", events=("applied", "drift"), environments=("production",))],
                    metrics)
        for kind, env in [("pending", "production"), ("applied", "acceptance"), ("applied", "production"),
                          ("drift", "production"), ("failed", "production")]:
            d.publish(ev(kind, env))
        assert d.wait_idle(5)
        assert [(e["kind"], e["environment"]) for e in rx.events] == [("applied", "production"), ("drift", "production")]
        d.stop(1)


@pytest.mark.parametrize("forge", ["github", "gitlab", "gitea"])
def test_each_forge_gets_running_then_the_result_on_the_commit(forge: str, metrics: Metrics,
                                                                github_openapi: OpenAPI) -> None:  # noqa: F811
    """The fake checks method, path, auth header and fields; GitHub's requests against its OpenAPI description."""
    repo = "acme/flows" if forge != "gitlab" else "platform/flows"
    with FakeForge(forge, TOKEN, repo, openapi=github_openapi if forge == "github" else None) as fx:
        sink = ForgeSink(ForgeNotify(type=forge, api=fx.api, repository=repo, token_env="TOK"), FAST,
                         environ={"TOK": TOKEN})
        d = running([sink], metrics)
        link = "https://r.example.com/environments/production"
        d.publish(ev("pending", link=link))
        d.publish(ev("applied", at="t2", link=link))
        assert d.wait_idle(5)
        want = {"github": ["pending", "success"], "gitlab": ["running", "success"], "gitea": ["pending", "success"]}
        assert fx.states(SHA, "flow-reconciler/production") == want[forge]
        assert fx.statuses[(SHA, "flow-reconciler/production")][-1]["target_url"] == link
        assert fx.invalid == [] and count(metrics, forge, "delivered") == 2
        d.stop(1)


def test_a_gitlab_status_already_set_by_a_try_that_landed_counts_as_delivered() -> None:
    """GitLab answers 400 "Cannot transition status" to the same state twice: the first try had landed."""
    with FakeForge("gitlab", TOKEN, "platform/flows") as gl:
        sink = ForgeSink(ForgeNotify(type="gitlab", api=gl.api, repository="platform/flows", token_env="TOK"), FAST,
                         environ={"TOK": TOKEN})
        status = sink.deliveries(ev("pending"))[0].payload
        sink.post(status)
        sink.post(status)
        assert [r.status for r in gl.requests] == [201, 400] and gl.states(SHA, "flow-reconciler/production") == ["running"]


def test_a_refused_token_fails_at_once_naming_its_variable_not_its_value(metrics: Metrics) -> None:
    with FakeForge("github", TOKEN, "acme/flows") as gh, structlog.testing.capture_logs() as logs:
        d = running([github(gh, token="wrong-t0ken-0123456789")], metrics)
        d.publish(ev())
        assert d.wait_idle(5)
        assert [r.status for r in gh.requests] == [401]
        failed = [e for e in logs if e["event"] == "notification failed"]
        assert "the forge refused the token in $GH" in failed[0]["error"] and "wrong-t0ken" not in str(logs)
        assert count(metrics, "github", "failed") == 1
        d.stop(1)


def _reconciled(tmp_path: Path, notifier) -> tuple[float, EnvWorker]:
    """One real reconcile of a new commit (pending and applied events) with ``notifier``; its duration."""
    w, _, _, _ = worker(tmp_path, Clock())
    w = EnvWorker(w.env, replace(w.deps, notifier=notifier))
    store = w.engine.store
    data = json.dumps({"name": "a", "version": "1", "note": str(time.time())}).encode()
    store.commit_changes("env/x", store.tip("env/x"), "flows", {FlowKey("a", "1"): data}, "v2\n")
    w.trigger("ref")
    started = time.monotonic()
    w.reconcile(w.due(w.deps.clock()))
    return time.monotonic() - started, w


@pytest.mark.parametrize("trouble", ["hangs", "answers 500"])
def test_a_receiver_in_trouble_delays_no_reconcile_and_is_retried(trouble: str, tmp_path: Path,
                                                                   metrics: Metrics) -> None:
    """The run takes as long as without notifications; the statuses land once the receiver is back."""
    from reconciler.events import NullNotifier

    baseline, _ = _reconciled(tmp_path / "baseline", NullNotifier())
    with FakeForge("github", TOKEN, "acme/flows") as gh, structlog.testing.capture_logs() as logs:
        if trouble == "hangs":
            gh.hang = 30.0
        else:
            gh.fail = 3
        settings = replace(FAST, http_attempts=1 if trouble == "hangs" else 2)
        d = running([github(gh, timeout=1.0, settings=settings)], metrics, settings)
        seconds, w = _reconciled(tmp_path / "notified", d)
        assert w.status.result == "ok"
        assert seconds < baseline + 0.3 < 1.0, (seconds, baseline)  # a blocked publish would take the 1 s timeout
        wait_for(lambda: any(e["event"] == "notification failed, will retry" for e in list(logs)), timeout=10,
                 what="a delivery to fail and wait for its retry")
        gh.hang, gh.fail = 0.0, 0
        gh.release.set()
        tip = w.engine.store.tip("env/x")
        assert d.wait_idle(15)
        assert gh.states(tip, "flow-reconciler/x")[-1:] == ["success"]
        assert count(metrics, "github", "delivered") >= 1 and count(metrics, "github", "failed") == 0
        d.stop(2)


def test_a_receiver_that_stays_down_fails_after_the_retries(metrics: Metrics) -> None:
    with FakeForge("github", TOKEN, "acme/flows") as gh, structlog.testing.capture_logs() as logs:
        gh.fail = 1000
        d = running([github(gh)], metrics)
        d.publish(ev())
        wait_for(lambda: count(metrics, "github", "failed") == 1, timeout=10, what="the delivery to fail")
        assert len(gh.requests) == (FAST.retries + 1) * FAST.http_attempts
        assert [e["attempt"] for e in logs if e["event"] == "notification failed, will retry"] == [1, 2, 3]
        d.stop(1)


def test_a_late_retry_does_not_overwrite_a_newer_status_of_the_same_commit(metrics: Metrics) -> None:
    """running fails, success lands meanwhile: the retry of running is not sent."""
    with FakeForge("github", TOKEN, "acme/flows") as gh:
        gh.fail = FAST.http_attempts  # the first delivery's tries
        d = running([github(gh, settings=replace(FAST, retry_base=0.5))], metrics, replace(FAST, retry_base=0.5))
        d.publish(ev("pending"))
        wait_for(lambda: len(gh.requests) == FAST.http_attempts, what="the first delivery to fail")
        d.publish(ev("applied"))
        assert d.wait_idle(5)
        assert gh.states(SHA, "flow-reconciler/production") == ["success"]
        d.stop(1)


def test_a_full_queue_drops_the_oldest_and_counts_it(metrics: Metrics) -> None:
    with WebhookReceiver(KEY) as rx, structlog.testing.capture_logs() as logs:
        d = Dispatcher([webhook(rx.url + "/hooks/flows")], metrics=metrics, settings=replace(FAST, queue_size=3))
        for i in range(5):
            d.publish(ev(message=f"event {i}"))
        assert d.queued == 3 and count(metrics, "webhook", "dropped") == 2
        assert len([e for e in logs if e["event"] == "notification queue full, dropped the oldest"]) == 2
        d.start()
        assert d.wait_idle(5)
        assert [e["message"] for e in rx.events] == ["event 2", "event 3", "event 4"]
        d.stop(1)


def test_stop_delivers_what_is_queued(metrics: Metrics) -> None:
    with WebhookReceiver(KEY) as rx:
        d = running([webhook(rx.url + "/hooks/flows")], metrics)
        for i in range(3):
            d.publish(ev(message=f"event {i}"))
        assert d.stop(5) is True
        assert len(rx.events) == 3
        d.publish(ev(message="after"))  # refused quietly: stopping
        assert len(rx.events) == 3 and d.queued == 0


def test_stop_gives_up_at_its_deadline_and_counts_what_is_left(metrics: Metrics) -> None:
    with WebhookReceiver(KEY) as rx:
        rx.hang = 30.0
        d = running([webhook(rx.url + "/hooks/flows", timeout=20.0)], metrics)
        for i in range(3):
            d.publish(ev(message=f"event {i}"))
        wait_for(lambda: rx.requests, what="the first request")
        started = time.monotonic()
        assert d.stop(0.5) is False
        assert time.monotonic() - started < 2.0
        assert count(metrics, "webhook", "dropped") == 2  # the third is in flight


def test_publish_never_raises_even_when_a_sink_is_broken(metrics: Metrics) -> None:
    class Broken(WebhookSink):
        def deliveries(self, event):
            raise RuntimeError("a bug")

    d = Dispatcher([Broken(WebhookNotify(type="webhook", url="http://127.0.0.1:9/x", secret_env="K"))], metrics=metrics)
    d.publish(ev())
    assert d.queued == 0


def test_no_credential_is_in_any_log_line(metrics: Metrics) -> None:
    """Refused tokens and keys, a Slack receiver down, retries: the log names sinks and variables only."""
    slack_path = "/services/T0001/B0001/xoxb-s3cr3t-hook-path"
    with (FakeForge("github", TOKEN, "acme/flows") as gh, SlackReceiver(slack_path) as sl,
          WebhookReceiver("another-key-0123456789") as wh, structlog.testing.capture_logs() as logs):
        sl.fail = 2
        sinks = [github(gh, token="wrong-t0ken-0123456789"),
                 SlackSink(SlackNotify(type="slack", url_env="SLACK_URL"), FAST, environ={"SLACK_URL": sl.hook}),
                 SlackSink(SlackNotify(type="slack", name="slack-typo", url_env="SLACK_URL"), FAST,
                           environ={"SLACK_URL": sl.url + "/services/T0001/B0001/xoxb-wr0ng-hook-path"}),
                 webhook(wh.url + "/hooks/flows")]
        d = running(sinks, metrics)
        d.publish(ev())
        assert d.wait_idle(10)
        d.stop(1)
    assert sl.texts and count(metrics, "slack-typo", "failed") == 1 and count(metrics, "github", "failed") == 1
    text = json.dumps(logs, default=str)
    for secret in ("wrong-t0ken-0123456789", KEY, sl.hook, "xoxb-s3cr3t-hook-path", "xoxb-wr0ng-hook-path"):
        assert secret not in text
    assert "notification failed, will retry" in text and "$GH" in text
