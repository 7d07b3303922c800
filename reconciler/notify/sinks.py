"""The sinks: what a delivery is for a webhook, Slack and a forge's commit status, on the shared HTTP client.

A sink turns an event into :class:`Delivery` values (:meth:`Sink.deliveries`:
cheap, no I/O, called as the event is published) and sends one
(:meth:`Sink.send`: the request, in the dispatcher's thread). Whatever goes
wrong is a :class:`DeliveryFailed` saying whether trying again may help (a
receiver down or answering 5xx: yes; a refused token, a 4xx: no).

Every request goes through :class:`~reconciler.drivers._http.HttpClient`
(keep-alive, its own quick retries, status mapping, TLS). Credentials are read
at each delivery (:mod:`reconciler.notify.secret`) and never put in a message:
a Slack webhook URL is a credential, so errors about it are told without it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import orjson

from reconciler.drivers._common import http_url
from reconciler.drivers._http import HttpClient, Response
from reconciler.errors import RetryableError, StallError
from reconciler.events import Event

from .secret import Secret, SecretAuth
from .settingsbase import DeliverySettings, ForgeMethods, SlackMethods, WebhookMethods
from .status import AUTH, RANK, CommitStatus, forge_request, forge_state, status_of, superseded

if TYPE_CHECKING:  # a model or its view (reconciler.configview): the type is the mixin's
    from .settings import ForgeNotify, NotifyBase, SlackNotify, WebhookNotify

__all__ = ["Sink", "Delivery", "DeliveryFailed", "WebhookSink", "SlackSink", "ForgeSink", "build_sinks", "sign",
           "slack_text"]

Seen = Callable[[Iterable[str]], None]


@dataclass(frozen=True)
class Delivery:
    """One request to make: ``payload`` is the sink's own (an event, a commit status)."""

    sink: str
    what: str  # for logs: "applied production@0123abcd4567"; never a credential
    payload: Any
    key: Hashable | None = None  # once a newer delivery with this key landed, an older one is obsolete


class DeliveryFailed(Exception):
    """A delivery did not land; ``retry``: whether trying again later may help."""

    def __init__(self, message: str, *, retry: bool):
        super().__init__(message)
        self.message, self.retry = message, retry


class Sink(Protocol):
    """Where events go."""

    settings: NotifyBase

    @property
    def name(self) -> str:
        ...

    def deliveries(self, event: Event) -> list[Delivery]:
        """What to send for ``event`` (the filters already let it through); no I/O."""
        ...

    def send(self, delivery: Delivery) -> None:
        """Make the request; raises DeliveryFailed."""
        ...

    def problem(self) -> str | None:
        """Why deliveries will fail as things are (a credential missing), or None; reads the credential."""
        ...

    def close(self) -> None:
        ...


def sign(key: str, body: bytes) -> str:
    """The ``X-Signature`` of a body: ``sha256=<hex HMAC-SHA256>`` (Flux's generic-hmac convention)."""
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def _post(client: HttpClient, target: str, body: bytes, headers: Mapping[str, str], *,
          hide: Sequence[str] = ()) -> Response:
    """POST through the shared client; its errors become DeliveryFailed (with ``hide`` masked out)."""
    try:
        return client.request("POST", target, body, headers)
    except (RetryableError, StallError) as exc:
        message = str(exc)
        for secret in hide:
            message = message.replace(secret, "<the webhook URL>")
        failed = DeliveryFailed(message, retry=isinstance(exc, RetryableError))
        if hide:
            raise failed from None  # the cause's text holds the credential
        raise failed from exc


def _what(event: Event) -> str:
    return f"{event.kind} {event.environment}" + (f"@{event.commit[:12]}" if event.commit else "")


class _HttpSink:
    def __init__(self, settings: NotifyBase, delivery: DeliverySettings):
        self.settings, self.delivery = settings, delivery

    @property
    def name(self) -> str:
        return self.settings.sink

    def _client(self, url: str, **kw: Any) -> HttpClient:
        return HttpClient(url, timeout=self.settings.timeout, attempts=kw.pop("attempts", self.delivery.http_attempts),
                          backoff=self.delivery.http_backoff, max_body=1024 * 1024, **kw)

    secret: Secret

    def problem(self) -> str | None:
        try:
            self.secret.value()
        except StallError as exc:
            return str(exc)
        return None

    def _refused(self, resp: Response, what: str) -> DeliveryFailed:
        return DeliveryFailed(f"{what}: {resp.message}", retry=False)  # the receiver said no: asking again changes nothing


class WebhookSink(_HttpSink):
    """``Event.as_dict()`` as JSON, signed with the sink's HMAC key."""

    def __init__(self, settings: WebhookNotify, delivery: DeliverySettings = DeliverySettings(), *,
                 seen: Seen | None = None, environ: Mapping[str, str] | None = None):
        super().__init__(settings, delivery)
        self.secret = Secret(settings.secret_env, settings.secret_file, f"notify {self.name!r} (webhook key)",
                             environ, seen)
        self.client = self._client(settings.url, where=f"the webhook receiver of notify {self.name!r}",
                                   no_auth_hint="check the key it expects")

    def deliveries(self, event: Event) -> list[Delivery]:
        return [Delivery(self.name, _what(event), event)]

    def send(self, delivery: Delivery) -> None:
        body = orjson.dumps(delivery.payload.as_dict())
        try:
            signature = sign(self.secret.value(), body)
        except StallError as exc:
            raise DeliveryFailed(str(exc), retry=False) from exc
        resp = _post(self.client, self.client.target("") or "/", body, {"X-Signature": signature})
        if not resp.ok:
            raise self._refused(resp, f"POST {self.settings.url}")

    def close(self) -> None:
        self.client.close()


_ICONS = {"pending": ":hourglass_flowing_sand:", "applied": ":white_check_mark:", "failed": ":x:", "invalid": ":x:",
          "conflict": ":x:", "unhealthy": ":x:", "drift": ":warning:", "restored": ":leftwards_arrow_with_hook:",
          "suspended": ":double_vertical_bar:", "resumed": ":arrow_forward:"}


def _esc(text: str) -> str:
    """Slack's mrkdwn escapes: &, < and > are control characters there."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(event: Event, *, most: int = 5) -> str:
    """A short summary: icon, environment, kind, commit, the message, a few flows, the link."""
    commit = f" `{event.commit[:12]}`" if event.commit else ""
    lines = [f"{_ICONS.get(event.kind, '')} *{_esc(event.environment)}* {event.kind}{commit}: {_esc(event.message)}"]
    if event.flows:
        shown = ", ".join(f"{_esc(f)} ({a})" for f, a in event.flows[:most])
        more = len(event.flows) - most
        lines.append(shown + (f" and {more} more" if more > 0 else ""))
    if event.drift_commit:
        lines.append(f"live versions saved in drift/{_esc(event.environment)} at `{event.drift_commit[:12]}`")
    if event.link:
        lines.append(f"<{event.link}|status of {_esc(event.environment)}>")
    return "\n".join(lines)


class SlackSink(_HttpSink):
    """``{"text": ...}`` to a Slack-compatible incoming webhook whose URL is a credential."""

    def __init__(self, settings: SlackNotify, delivery: DeliverySettings = DeliverySettings(), *,
                 seen: Seen | None = None, environ: Mapping[str, str] | None = None):
        super().__init__(settings, delivery)
        self.seen = seen
        self.secret = Secret(settings.url_env, settings.url_file, f"notify {self.name!r} (Slack webhook URL)",
                             environ, seen)
        self._clients: dict[str, HttpClient] = {}

    def deliveries(self, event: Event) -> list[Delivery]:
        return [Delivery(self.name, _what(event), event)]

    def _url(self) -> tuple[str, str]:
        """The webhook URL and its path (the secret part); raises DeliveryFailed."""
        try:
            url = self.secret.value()
            http_url(url, credentials_hint="the URL Slack gave is the credential; nothing else is needed")
        except StallError as exc:
            raise DeliveryFailed(str(exc), retry=False) from exc
        except ValueError as exc:
            raise DeliveryFailed(f"{self.secret.what}: the URL in {self.secret.where} {exc}", retry=False) from None
        path = urlsplit(url).path
        if self.seen is not None:
            self.seen([path])  # a message quoting the request line must not show the token in the path
        return url, path

    def problem(self) -> str | None:
        try:
            self._url()
        except DeliveryFailed as exc:
            return exc.message
        return None

    def send(self, delivery: Delivery) -> None:
        url, path = self._url()
        client = self._clients.get(url)
        if client is None:
            # One attempt per delivery: the client logs the URL of a request it retries, and this URL is the
            # credential; the dispatcher's own retries (which log the sink's name only) take over.
            for old in self._clients.values():
                old.close()
            client = self._clients[url] = self._client(url, attempts=1, where=f"the Slack webhook of notify {self.name!r}")
        body = orjson.dumps({"text": slack_text(delivery.payload)})
        resp = _post(client, client.target("") or "/", body, {}, hide=(url, path))
        if not resp.ok:
            raise self._refused(resp, f"POST to the Slack webhook of notify {self.name!r}")

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


class ForgeSink(_HttpSink):
    """A commit status per environment (GitHub, GitLab, Gitea), the worst of a run, superseded commits closed."""

    def __init__(self, settings: ForgeNotify, delivery: DeliverySettings = DeliverySettings(), *,
                 seen: Seen | None = None, environ: Mapping[str, str] | None = None):
        super().__init__(settings, delivery)
        self.forge = settings.type
        self.secret = Secret(settings.token_env, settings.token_file, f"notify {self.name!r} ({self.forge} token)",
                             environ, seen)
        header, scheme = AUTH[self.forge]
        self.client = self._client(settings.base_url, auth=SecretAuth(self.secret, header, scheme),
                                   where=f"{self.forge} at {settings.base_url}")
        self._open: dict[str, CommitStatus] = {}  # env -> a running/pending status no final one followed yet
        self._last: dict[str, tuple[str, str, int]] = {}  # env -> (sha, run's time, rank) of the last final status

    def deliveries(self, event: Event) -> list[Delivery]:
        status = status_of(event)
        if status is None:
            return []
        return [self._delivery(s) for s in self.track(event.environment, event.at, status)]

    def track(self, env: str, at: str, status: CommitStatus) -> list[CommitStatus]:
        """The statuses to post for ``status``: none when the same run already said worse; a ``canceled`` first
        for the commit still running when a newer one starts."""
        out = []
        still_open = self._open.get(env)
        if not status.final:
            if still_open is not None and still_open.sha != status.sha:
                out.append(superseded(still_open, status.sha))
            self._open[env] = status
        else:
            rank = RANK[status.state]
            last = self._last.get(env)
            if last is not None and last[:2] == (status.sha, at) and last[2] > rank:
                return []  # events of one run share their time: a worse state was already posted for it
            self._last[env] = (status.sha, at, rank)
            if still_open is not None and still_open.sha == status.sha:
                del self._open[env]
        out.append(status)
        return out

    def _delivery(self, status: CommitStatus) -> Delivery:
        what = f"{forge_state(self.forge, status.state)} {status.context}@{status.sha[:12]}"
        return Delivery(self.name, what, status, key=(status.context, status.sha))

    def send(self, delivery: Delivery) -> None:
        self.post(delivery.payload)

    def post(self, status: CommitStatus) -> None:
        """Set ``status`` on the forge now (with the client's quick retries); raises DeliveryFailed."""
        method, path, body, headers = forge_request(self.forge, self.settings.repository, status)
        target = self.client.target(path)
        resp = _post(self.client, target, orjson.dumps(body), headers)
        if resp.ok:
            return
        if self.forge == "gitlab" and resp.status == 400 and "Cannot transition status" in resp.message:
            return  # GitLab refuses to set a state the status already has: a retry whose first try landed
        raise self._refused(resp, f"{method} {self.client.full(target)}")

    def close(self) -> None:
        self.client.close()


def build_sinks(settings: Sequence[NotifyBase], delivery: DeliverySettings = DeliverySettings(), *,
                seen: Seen | None = None, environ: Mapping[str, str] | None = None) -> list[Sink]:
    """One sink per ``[[notify]]`` table."""
    out: list[Sink] = []
    for s in settings:
        if isinstance(s, WebhookMethods):
            out.append(WebhookSink(s, delivery, seen=seen, environ=environ))
        elif isinstance(s, SlackMethods):
            out.append(SlackSink(s, delivery, seen=seen, environ=environ))
        elif isinstance(s, ForgeMethods):
            out.append(ForgeSink(s, delivery, seen=seen, environ=environ))
        else:  # pragma: no cover - NOTIFY_MODELS and this list are kept together
            raise TypeError(f"no sink for {type(s).__name__}")
    return out
