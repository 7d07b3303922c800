"""The settings of a Node-RED environment (``driver = "node-red"``): where the instance is, how to log in
and how hard to try, how tabs become flows, how to deploy. Every default of the driver is here."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from reconciler.drivers._common import ENV_VAR, http_url
from reconciler.envconfig import EnvironmentConfig

from .credentials import CREDENTIAL_POINTERS
from .settingsbase import NodeRedMethods

__all__ = ["NodeRedEnvironment", "SETTINGS"]

class NodeRedEnvironment(NodeRedMethods, EnvironmentConfig):
    """A Node-RED instance, through its Admin HTTP API."""

    driver: Literal["node-red"]
    url: str = Field(description="Base URL of the Admin API (httpAdminRoot), e.g. http://127.0.0.1:1880.")
    token_env: str | None = Field(
        None, pattern=ENV_VAR, description="Environment variable holding a bearer token (adminAuth tokens, or one from POST /auth/token)."
    )
    username_env: str | None = Field(
        None, pattern=ENV_VAR, description="Environment variable holding the adminAuth user name (with password_env)."
    )
    password_env: str | None = Field(
        None, pattern=ENV_VAR, description="Environment variable holding that user's password."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds to wait for any one HTTP request.")
    attempts: int = Field(3, ge=1, le=10, description="Tries per request on a timeout, a refused connection, a 5xx, "
                          "a 408 or a 429.")
    backoff: float = Field(0.5, ge=0, le=60, description="First delay (seconds) between tries; doubles each time.")
    check_types: StrictBool = Field(
        True, description="Refuse a flow using node types the instance does not have (GET /nodes)."
    )
    version_env: str = Field(
        "FLOW_VERSION", pattern=ENV_VAR, description="Name of the tab env entry holding the flow's version."
    )
    default_version: str = Field("1", min_length=1, description="Version of a tab that has no such env entry.")
    deploy: Literal["flows", "full"] = Field(
        "flows", description="Node-RED-Deployment-Type of the write: 'flows' restarts only changed tabs."
    )
    health_check: StrictBool = Field(
        True, description="After a deploy, wait (at most health_timeout) until Node-RED reports the flows "
        "started (its /comms websocket) with no node failing to start; false: no health gate."
    )
    health_settle: float = Field(
        0.5, ge=0, le=60, description="Seconds to keep listening for node errors after Node-RED reports the "
        "deploy started (a function's On Start failing after an await is only seen within it); flows made only "
        "of core nodes that start nothing asynchronous end it as soon as Node-RED answers a message sent then."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v, credentials_hint="use token_env or username_env/password_env")

    @model_validator(mode="after")
    def _auth_and_identity(self) -> "NodeRedEnvironment":
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("username_env and password_env go together")
        if self.token_env is not None and self.username_env is not None:
            raise ValueError("use either token_env or username_env/password_env, not both")
        if (self.identity.name, self.identity.version) != ("/name", "/version"):
            raise ValueError("identity: the node-red driver keeps name and version at /name and /version")
        # Every credentials object is a secret field (Node-RED never returns one: git holds placeholders only).
        missing = tuple(p for p in CREDENTIAL_POINTERS if p not in self.secret_fields)
        if missing:
            object.__setattr__(self, "secret_fields", (*self.secret_fields, *missing))
        return self


SETTINGS = NodeRedEnvironment
