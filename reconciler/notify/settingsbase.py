"""What the ``[[notify]]`` settings do, without pydantic (see :mod:`reconciler.configbase`): one copy of
each method, for the models of :mod:`.settings` and the frozen views a cached config is made of."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["NotifyMethods", "WebhookMethods", "SlackMethods", "ForgeMethods", "FORGE_API", "DeliverySettings"]

#: the API base URL of a forge when ``api`` is not given (only GitHub has one address for everybody)
FORGE_API = {"github": "https://api.github.com"}


class NotifyMethods:
    """What every sink has: a name, its filters."""

    __slots__ = ()

    @property
    def sink(self: Any) -> str:
        return self.name or self.type

    def wants(self: Any, kind: str, environment: str) -> bool:
        """Do this sink's filters let an event of ``kind`` about ``environment`` through?"""
        return kind in self.events and (not self.environments or environment in self.environments)

    def secret_files(self: Any) -> tuple[str, ...]:
        """The names of this model's fields holding a path to a credential (resolved against the config's folder)."""
        return (self.credential[1],)


class WebhookMethods(NotifyMethods):
    __slots__ = ()
    #: the sink's credential: (the key naming its variable, the key naming its file, what it is)
    credential = ("secret_env", "secret_file", "the key that signs the body")


class SlackMethods(NotifyMethods):
    __slots__ = ()
    credential = ("url_env", "url_file", "the incoming-webhook URL (it is a credential)")


class ForgeMethods(NotifyMethods):
    __slots__ = ()
    credential = ("token_env", "token_file", "the API token")

    @property
    def base_url(self: Any) -> str:
        return self.api or FORGE_API[self.type]


@dataclass(frozen=True)
class DeliverySettings:
    """How the dispatcher delivers (not in the config file: the defaults suit every receiver we know).

    A delivery is tried ``http_attempts`` times by the HTTP client (``http_backoff``
    apart); when that fails with something transient it is queued again after
    ``retry_base``, 2x, 4x… (at most ``retry_max``) seconds, ``retries`` times.
    """

    queue_size: int = 1000  # deliveries waiting; when full, the oldest is dropped (and counted)
    retries: int = 5
    retry_base: float = 2.0
    retry_max: float = 300.0
    http_attempts: int = 2
    http_backoff: float = 0.5
