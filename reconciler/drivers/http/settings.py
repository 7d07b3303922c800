"""The settings of an http environment: its mapping as the config file writes it (pydantic models).

What a valid URL, template, pointer or route is, and which routes the other
settings need (an export route unless the listing is full, a delete route when
prune is on). What the settings mean, which request a flow becomes, is
:mod:`.mapping`; every default is here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool, ValidationInfo, field_validator

from reconciler.drivers._common import ENV_VAR, http_url
from reconciler.envconfig import EnvironmentConfig, Model

from .mapping import check_template

if TYPE_CHECKING:
    from .driver import HttpDriver

__all__ = [
    "HttpEnvironment",
    "AuthSettings",
    "ListRoute",
    "ExportRoute",
    "ImportRoute",
    "DeleteRoute",
    "OverrideFlag",
    "SETTINGS",
]

_HEADER = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"


def _pointer(v: str) -> str:
    if not v.startswith("/"):
        raise ValueError("must be a JSON pointer starting with '/'")
    return v


def _root_pointer(v: str) -> str:
    if v != "" and not v.startswith("/"):
        raise ValueError("must be a JSON pointer starting with '/' (or \"\" for the whole document)")
    return v


def _fixed_path(v: str) -> str:
    return check_template(v, ())


#: a path template naming the flow ({name}, {version}), appended to url
Template = Annotated[str, AfterValidator(check_template)]
#: a path without placeholders, appended to url
FixedPath = Annotated[str, AfterValidator(_fixed_path)]
#: a JSON pointer into a document
Pointer = Annotated[str, AfterValidator(_pointer)]
#: a JSON pointer, or "" for the whole document
RootPointer = Annotated[str, AfterValidator(_root_pointer)]


class AuthSettings(Model):
    """A header carrying a token read from an environment variable (never from this file)."""

    env: str = Field(pattern=ENV_VAR, description="Environment variable holding the token.")
    header: str = Field("Authorization", pattern=_HEADER, description="Header carrying it.")
    scheme: str = Field(
        "Bearer", pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]*$", description="Prefix before the token; \"\" sends the token alone."
    )


class ListRoute(Model):
    """GET listing every flow: full exports or summaries carrying name and version."""

    path: FixedPath = Field("/flows", description="Path (appended to url); may carry a query string.")
    items: RootPointer = Field("", description="JSON pointer of the array in the response (\"\" = the response is the array).")
    full: StrictBool = Field(False, description="Items are full flow exports; else summaries fetched from `export`.")
    name: Pointer | None = Field(None, description="Pointer of the name in a summary (default: identity.name).")
    version: Pointer | None = Field(None, description="Pointer of the version in a summary (default: identity.version).")
    next: Pointer | None = Field(None, description="Pointer of the next page's link in a response (same host only).")


class ExportRoute(Model):
    """GET exporting one flow."""

    path: Template = Field(description="URL template with {name} and {version}, appended to url.")
    flow: RootPointer = Field("", description="JSON pointer of the flow in the response (\"\" = the whole response).")


class OverrideFlag(Model):
    """The Override switch: a query parameter (true/false) or a JSON boolean in the body; exactly one."""

    query: str | None = Field(None, pattern=r"^[A-Za-z0-9._~-]+$", description="Query parameter name.")
    field: str | None = Field(
        None, validate_default=True, description="JSON pointer of a boolean field in the request body."
    )

    @field_validator("field")
    @classmethod
    def _field(cls, v: str | None, info: ValidationInfo) -> str | None:
        if (v is None) == (info.data.get("query") is None):
            raise ValueError("set exactly one of query or field")
        return v if v is None else _pointer(v)


class ImportRoute(Model):
    """The request importing one flow (with the Override switch)."""

    method: Literal["POST", "PUT"] = Field("POST", description="HTTP method.")
    path: Template = Field(description="URL template ({name} and {version} allowed), appended to url.")
    flow: RootPointer = Field("", description="JSON pointer where the flow goes in the body (\"\" = the body is the flow).")
    name: Pointer | None = Field(None, description="Pointer of a body field receiving the flow's name.")
    version: Pointer | None = Field(None, description="Pointer of a body field receiving the flow's version.")
    override: OverrideFlag = Field(description="How the Override switch is sent.")


class DeleteRoute(Model):
    """The request deleting one flow."""

    method: Literal["DELETE", "POST"] = Field("DELETE", description="HTTP method.")
    path: Template = Field(description="URL template with {name} and {version}, appended to url.")


class HttpEnvironment(EnvironmentConfig):
    """A DPM-style flow manager reached over a REST API, described declaratively."""

    driver: Literal["http"]
    url: str = Field(description="Base URL of the API (http:// or https://); paths are appended to it.")
    auth: AuthSettings | None = Field(None, description="Credentials: a header whose token comes from an environment variable.")
    list_: ListRoute = Field(ListRoute(), alias="list", description="How flows are listed.")
    export: ExportRoute | None = Field(
        None, validate_default=True, description="How one flow is exported (required unless list.full)."
    )
    import_: ImportRoute = Field(alias="import", description="How one flow is imported.")
    delete: DeleteRoute | None = Field(
        None, validate_default=True, description="How one flow is deleted (required when prune is on)."
    )
    timeout: float = Field(10.0, gt=0, le=600, description="Seconds to wait for a connection and for each read.")
    attempts: int = Field(3, ge=1, le=10, description="Tries per request on a timeout, a 5xx or a 429.")
    backoff: float = Field(0.5, ge=0, le=60, description="First delay (seconds) between tries; doubles each time.")
    concurrency: int = Field(4, ge=1, le=32, description="Flows fetched in parallel on export.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v, credentials_hint="put the token in an environment variable (auth.env)")

    @field_validator("export")
    @classmethod
    def _export(cls, v: ExportRoute | None, info: ValidationInfo) -> ExportRoute | None:
        listing = info.data.get("list_")
        if v is None and listing is not None and not listing.full:
            raise ValueError("required when list.full is false: each listed summary is fetched from it")
        return v

    @field_validator("delete")
    @classmethod
    def _delete(cls, v: DeleteRoute | None, info: ValidationInfo) -> DeleteRoute | None:
        if v is None and info.data.get("prune"):
            raise ValueError("prune = true needs a delete endpoint ([environment.delete])")
        return v

    def build_driver(self) -> HttpDriver:
        from .driver import HttpDriver  # here, not at the top: the driver builds on this module's models


        return HttpDriver(self)


SETTINGS = HttpEnvironment
