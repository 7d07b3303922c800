"""The ``[[notify]]`` tables: where events go, filtered by kind and environment; every default of delivery.

One model per ``type`` (:data:`NOTIFY_MODELS`): ``webhook`` (the JSON event,
signed), ``slack`` (a short text), ``github`` / ``gitlab`` / ``gitea`` (a commit
status on the commit being applied). Every sink has a ``name`` (the ``sink``
label of ``reconciler_notifications_total``; its type by default) and two
filters, ``events`` and ``environments`` (empty: all).

A credential is never written in the config: each model names an environment
variable *or* a file holding it (exactly one of the two). A Slack webhook URL is
a credential too (whoever has it can post), so it comes the same way.
"""

# No `from __future__ import annotations`: pydantic would compile and eval each field's annotation string
# when the model class is created (every command's import of the config); evaluated here, they are bytecode.

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, field_validator, model_validator

from reconciler.drivers._common import ENV_VAR, http_url
from reconciler.envconfig import Model
from reconciler.events import KINDS

from .settingsbase import FORGE_API, DeliverySettings, ForgeMethods, NotifyMethods, SlackMethods, WebhookMethods

__all__ = ["NotifyBase", "WebhookNotify", "SlackNotify", "ForgeNotify", "NotifyConfig", "NOTIFY_MODELS",
           "DeliverySettings", "FORGE_API"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class NotifyBase(NotifyMethods, Model):
    """What every sink has: a name, its filters, a timeout."""

    type: str
    name: str | None = Field(None, pattern=_NAME, description="Name of the sink in logs and metrics; default its type.")
    events: tuple[str, ...] = Field(
        KINDS, description=f"Kinds of events to send (default all): {', '.join(KINDS)}."
    )
    environments: tuple[str, ...] = Field((), description="Environments whose events to send; empty: every one.")
    timeout: float = Field(10.0, gt=0, le=120, description="Seconds one request to the receiver may take.")

    @field_validator("events")
    @classmethod
    def _kinds(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [k for k in v if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown event kind(s) {', '.join(map(repr, unknown))}; use some of {', '.join(KINDS)}")
        return v

    #: the sink's credential: (the key naming its variable, the key naming its file, what it is)
    credential: ClassVar[tuple[str, str, str]]

    @model_validator(mode="after")
    def _one_credential(self) -> "NotifyBase":
        env_key, file_key, what = self.credential
        if (getattr(self, env_key) is None) == (getattr(self, file_key) is None):
            raise ValueError(f"set exactly one of {env_key} (an environment variable) or {file_key} (a file) "
                             f"holding {what}")
        return self


def _url(v: str) -> str:
    return http_url(v, credentials_hint="put credentials in the variable or file named by this table")


class WebhookNotify(WebhookMethods, NotifyBase):
    """The event as JSON, POSTed with ``X-Signature: sha256=<hex HMAC-SHA256 of the body>`` (Flux's generic-hmac)."""

    type: Literal["webhook"]
    url: str = Field(description="Where to POST the events (http:// or https://).")
    secret_env: str | None = Field(None, pattern=ENV_VAR, description="Environment variable holding the HMAC key.")
    secret_file: Path | None = Field(None, description="File holding the HMAC key.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return _url(v)


class SlackNotify(SlackMethods, NotifyBase):
    """A short summary as ``{"text": ...}`` to a Slack-compatible incoming webhook."""

    type: Literal["slack"]
    url_env: str | None = Field(None, pattern=ENV_VAR, description="Environment variable holding the webhook URL.")
    url_file: Path | None = Field(None, description="File holding the webhook URL.")


class ForgeNotify(ForgeMethods, NotifyBase):
    """A commit status (context ``flow-reconciler/<env>``) on the commit an event is about."""

    type: Literal["github", "gitlab", "gitea"]
    api: str | None = Field(
        None, description="Base URL of the forge's API: https://api.github.com (GitHub's default), "
        "https://gitlab.example.com/api/v4, https://gitea.example.com/api/v1.",
    )
    repository: str = Field(
        min_length=1, description="owner/repo (GitHub, Gitea), or the project's id or path (GitLab: 42, group/flows).",
    )
    token_env: str | None = Field(None, pattern=ENV_VAR, description="Environment variable holding the API token.")
    token_file: Path | None = Field(None, description="File holding the API token.")

    @field_validator("api")
    @classmethod
    def _api(cls, v: str | None) -> str | None:
        return None if v is None else _url(v)

    @model_validator(mode="after")
    def _check(self) -> "ForgeNotify":
        if self.api is None and self.type not in FORGE_API:
            raise ValueError(f"api is required for {self.type} (its API's base URL, e.g. "
                             f"https://{self.type}.example.com/api/{'v4' if self.type == 'gitlab' else 'v1'})")
        owner, _, repo = self.repository.partition("/")
        if self.type != "gitlab" and (not owner or not repo or "/" in repo):
            raise ValueError(f"repository = {self.repository!r}: must be owner/repo for {self.type}")
        return self


NotifyConfig = Annotated[Union[WebhookNotify, SlackNotify, ForgeNotify], Field(discriminator="type")]

#: ``type`` -> its settings model
NOTIFY_MODELS: dict[str, type[NotifyBase]] = {
    "webhook": WebhookNotify, "slack": SlackNotify, "github": ForgeNotify, "gitlab": ForgeNotify, "gitea": ForgeNotify,
}
