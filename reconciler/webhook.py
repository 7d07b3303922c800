"""Git server webhooks (pure): authenticate a request, read which refs were pushed.

- GitHub (and Gitea/Forgejo): ``X-Hub-Signature-256: sha256=<hex HMAC of the body>``;
- GitLab: ``X-Gitlab-Token: <secret>``.

Comparisons are constant-time. A request with neither header, or a wrong one,
is refused before its body is parsed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

__all__ = ["WebhookRefused", "WebhookInvalid", "PushEvent", "authenticate", "parse_push"]


class WebhookRefused(Exception):
    """Authentication failed (401)."""


class WebhookInvalid(ValueError):
    """Authenticated, but the payload is not a push we understand (400)."""


@dataclass(frozen=True)
class PushEvent:
    provider: str
    refs: tuple[str, ...]  # full ref names, e.g. refs/heads/env/production
    ping: bool = False

    @property
    def branches(self) -> tuple[str, ...]:
        return tuple(r.removeprefix("refs/heads/") for r in self.refs if r.startswith("refs/heads/"))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for k, v in headers.items():
        if k.lower() == lowered:
            return v
    return None


def authenticate(headers: Mapping[str, str], body: bytes, secret: str | None) -> str:
    """Return the provider ("github" or "gitlab") or raise :class:`WebhookRefused`."""
    if not secret:
        raise WebhookRefused("no webhook secret is configured; set RECONCILER_WEBHOOK_SECRET")
    signature = _header(headers, "X-Hub-Signature-256")
    if signature is not None:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(signature.strip().encode(), expected.encode()):
            return "github"
        raise WebhookRefused("bad X-Hub-Signature-256")
    token = _header(headers, "X-Gitlab-Token")
    if token is not None:
        if hmac.compare_digest(token.encode(), secret.encode()):
            return "gitlab"
        raise WebhookRefused("bad X-Gitlab-Token")
    raise WebhookRefused("missing X-Hub-Signature-256 or X-Gitlab-Token")


def parse_push(provider: str, headers: Mapping[str, str], body: bytes) -> PushEvent:
    """Which refs a push event touched. A GitHub ``ping`` is a no-op event."""
    event = (_header(headers, "X-GitHub-Event") or _header(headers, "X-Gitlab-Event") or "").lower()
    if event == "ping":
        return PushEvent(provider, (), ping=True)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WebhookInvalid(f"payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise WebhookInvalid("payload must be a JSON object")
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/") or len(ref) > 1024:
        raise WebhookInvalid("payload has no 'ref' (only push events are handled)")
    return PushEvent(provider, (ref,))
