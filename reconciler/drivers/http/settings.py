"""The settings of an http environment: its mapping as the config file writes it (pydantic models).

What a valid URL, template, pointer or route is, and which routes the other
settings need (an export route unless the listing is full, a delete route when
prune is on, an import route unless both create and update are given, a listed
id wherever a template names ``{id}``). What the settings mean, which request a
flow becomes, is :mod:`.mapping`; every default is here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, StrictBool, ValidationInfo, field_validator, model_validator

from reconciler.drivers._common import ENV_VAR, http_url
from reconciler.envconfig import EnvironmentConfig, IdentityConfig, Model
from reconciler.names import InvalidName, encode

from .mapping import ID_FIELDS, check_template, placeholders
from .settingsbase import HttpMethods, ListRouteMethods

__all__ = [
    "HttpEnvironment",
    "AuthSettings",
    "ListRoute",
    "ExportRoute",
    "ImportRoute",
    "DeleteRoute",
    "OverrideFlag",
    "CreateRoute",
    "UpdateRoute",
    "CursorPaging",
    "CredentialsRoute",
    "HealthRoute",
    "HttpIdentity",
    "SETTINGS",
]

_HEADER = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_QUERY_NAME = r"^[A-Za-z0-9._~-]+$"


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


def _id_template(v: str) -> str:
    return check_template(v, ID_FIELDS)


def _plain_pointer(v: str) -> str:
    _pointer(v)
    if "*" in v.split("/"):
        raise ValueError("names one field: no '*'")
    return v


#: a path template naming the flow ({name}, {version}), appended to url
Template = Annotated[str, AfterValidator(check_template)]
#: the same, where the platform's own id ({id}, read from the listing) may appear too
IdTemplate = Annotated[str, AfterValidator(_id_template)]
#: a path without placeholders, appended to url
FixedPath = Annotated[str, AfterValidator(_fixed_path)]
#: a JSON pointer into a document
Pointer = Annotated[str, AfterValidator(_pointer)]
#: a JSON pointer, or "" for the whole document
RootPointer = Annotated[str, AfterValidator(_root_pointer)]
#: a JSON pointer naming one field (no '*')
PlainPointer = Annotated[str, AfterValidator(_plain_pointer)]


class AuthSettings(Model):
    """A header carrying a token read from an environment variable (never from this file)."""

    env: str = Field(pattern=ENV_VAR, description="Environment variable holding the token.")
    header: str = Field("Authorization", pattern=_HEADER, description="Header carrying it.")
    scheme: str = Field(
        "Bearer", pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]*$", description="Prefix before the token; \"\" sends the token alone."
    )


class CursorPaging(Model):
    """The next page as an opaque cursor: read at ``from`` in a page, sent back as ``?<param>=<cursor>``."""

    from_: Pointer = Field(
        alias="from", description="Pointer of the cursor in a page (absent, null or \"\" on the last)."
    )
    param: str = Field(pattern=_QUERY_NAME, description="Query parameter carrying it on the next request.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ListRoute(ListRouteMethods, Model):
    """GET listing every flow: full exports or summaries carrying name and version."""

    path: FixedPath = Field("/flows", description="Path (appended to url); may carry a query string.")
    items: RootPointer = Field("", description="JSON pointer of the array in the response (\"\" = the response is the array).")
    full: StrictBool = Field(False, description="Items are full flow exports; else summaries fetched from `export`.")
    name: Pointer | None = Field(None, description="Pointer of the name in a summary (default: identity.name).")
    version: Pointer | None = Field(None, description="Pointer of the version in a summary (default: identity.version).")
    next: Pointer | None = Field(None, description="Pointer of the next page's link in a response (same host only).")
    cursor: CursorPaging | None = Field(None, description="The next page by an opaque cursor (instead of `next`).")
    id: Pointer | None = Field(None, description="Pointer of the platform's own id in a listed item: {id} in templates.")
    name_query: str | None = Field(
        None, pattern=_QUERY_NAME,
        description="Query parameter narrowing the listing to a name (the platform may match more, substrings say; "
        "the name is compared exactly here). Used to find one flow, and before a create.",
    )
    recheck: StrictBool | None = Field(
        None, description="Read a listing of several pages again until two passes agree (offset pages skip an item "
        "deleted between two pages); else the live set is incomplete. Default: on with `cursor`, off with `next`.",
    )

    @field_validator("cursor")
    @classmethod
    def _one_way(cls, v: CursorPaging | None, info: ValidationInfo) -> CursorPaging | None:
        if v is not None and info.data.get("next") is not None:
            raise ValueError("set next (a link) or cursor, not both")
        return v

class ExportRoute(Model):
    """GET exporting one flow."""

    path: IdTemplate = Field(description="URL template with {name} and {version} (or {id}), appended to url.")
    flow: RootPointer = Field("", description="JSON pointer of the flow in the response (\"\" = the whole response).")


class OverrideFlag(Model):
    """The Override switch: a query parameter (true/false) or a JSON boolean in the body; exactly one."""

    query: str | None = Field(None, pattern=_QUERY_NAME, description="Query parameter name.")
    field: str | None = Field(
        None, validate_default=True, description="JSON pointer of a boolean field in the request body."
    )

    @field_validator("field")
    @classmethod
    def _field(cls, v: str | None, info: ValidationInfo) -> str | None:
        if (v is None) == (info.data.get("query") is None):
            raise ValueError("set exactly one of query or field")
        return v if v is None else _pointer(v)


class Body(Model):
    """Where a write puts the flow, and the target name and version, in its body."""

    flow: RootPointer = Field("", description="JSON pointer where the flow goes in the body (\"\" = the body is the flow).")
    name: Pointer | None = Field(None, description="Pointer of a body field receiving the flow's name.")
    version: Pointer | None = Field(None, description="Pointer of a body field receiving the flow's version.")


class ImportRoute(Body):
    """The request importing one flow, new or existing (the Override switch says which)."""

    method: Literal["POST", "PUT"] = Field("POST", description="HTTP method.")
    path: Template = Field(description="URL template ({name} and {version} allowed), appended to url.")
    override: OverrideFlag | None = Field(
        None, description="How the Override switch is sent; required unless [environment.update] replaces flows."
    )


class CreateRoute(Body):
    """The request creating a new flow. The listing is read for its name first (a platform that allows
    two flows of one name would not refuse one created meanwhile)."""

    method: Literal["POST", "PUT"] = Field("POST", description="HTTP method.")
    path: Template = Field(description="URL template ({name} and {version} allowed), appended to url.")


class UpdateRoute(Body):
    """The request replacing an existing flow (in place: by {id} where the platform addresses flows so)."""

    method: Literal["PUT", "POST", "PATCH"] = Field("PUT", description="HTTP method.")
    path: IdTemplate = Field(description="URL template ({name}, {version} or {id}), appended to url.")
    merged: tuple[PlainPointer, ...] = Field(
        (), description="Objects the platform merges on update (a key left out stays): an update that would remove "
        "a key there is refused, naming it.",
    )


class DeleteRoute(Model):
    """The request deleting one flow."""

    method: Literal["DELETE", "POST"] = Field("DELETE", description="HTTP method.")
    path: IdTemplate = Field(description="URL template with {name} and {version} (or {id}), appended to url.")


class HealthRoute(Model):
    """After a write, the platform's own word on each written flow: GET ``path`` until the state at
    ``state`` is one of ``healthy`` (it runs), one of ``unhealthy`` (it failed: restored or reported per
    ``on_unhealthy``), or ``health_timeout`` passes (unhealthy too). Anything else (starting, a 404 while
    the platform deploys) means: ask again after ``interval`` seconds."""

    path: IdTemplate = Field(description="URL template ({name}, {version} or {id}), appended to url.")
    state: RootPointer = Field(description="JSON pointer of the flow's state in the answer.")
    healthy: tuple[str | int | bool, ...] = Field(min_length=1, description="States that mean the flow runs.")
    unhealthy: tuple[str | int | bool, ...] = Field(
        (), description="States that mean it failed to start (stop waiting); any other state: wait."
    )
    message: Pointer | None = Field(None, description="Pointer of the platform's reason in the answer, quoted.")
    interval: float = Field(0.5, gt=0, le=60, description="Seconds between two reads of a flow's state.")


class CredentialsRoute(Model):
    """GET listing the credentials flows may reference; a flow whose reference does not resolve is refused
    before import. Each node at ``nodes`` keeps its references at ``refs`` as ``{type: {id, name}}``."""

    url: str | None = Field(None, description="Base URL of this route (default: the environment's url).")
    path: FixedPath = Field(description="Path (appended to the url).")
    items: RootPointer = Field(
        "", description="JSON pointer of the array in the response (\"\" = the response is the array)."
    )
    id: Pointer = Field("/id", description="Pointer of a credential's id in an item.")
    name: Pointer = Field("/name", description="Pointer of its name.")
    type: Pointer = Field("/type", description="Pointer of its type.")
    auth: AuthSettings | None = Field(None, description="Credentials for this route (default: the environment's auth).")
    nodes: Pointer = Field("/nodes", description="Pointer of the array of nodes in a flow.")
    refs: Pointer = Field("/credentials", description="Pointer, in a node, of its references: {type: {id, name}}.")
    label: Pointer = Field("/name", description="Pointer, in a node, of the name messages show.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return v if v is None else http_url(v, credentials_hint="put them in an environment variable (auth.env)")


class HttpIdentity(IdentityConfig):
    """Where the flows keep their name and version; or a fixed version, for a platform without versions."""

    fixed_version: str | None = Field(
        None, description="The version of every flow when the platform has none: identity by name alone "
        "(git keeps flows/<name>/<fixed_version>.json; `version` is not read).",
    )

    @field_validator("fixed_version")
    @classmethod
    def _fixed(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                encode(v)
            except InvalidName as exc:
                raise ValueError(str(exc)) from exc
        return v

    @model_validator(mode="after")
    def _either(self) -> "HttpIdentity":
        if self.fixed_version is not None and "version" in self.model_fields_set:
            raise ValueError("set version (a pointer) or fixed_version, not both")
        return self


class HttpEnvironment(HttpMethods, EnvironmentConfig):
    """A DPM-style flow manager reached over a REST API, described declaratively."""

    driver: Literal["http"]
    url: str = Field(description="Base URL of the API (http:// or https://); paths are appended to it.")
    identity: HttpIdentity = HttpIdentity()
    auth: AuthSettings | None = Field(None, description="Credentials: a header whose token comes from an environment variable.")
    fields: tuple[PlainPointer, ...] | None = Field(
        None, min_length=1, description="The fields a flow is made of (an allow-list, instead of a long `ignore`): "
        "the flow document holds these only, and so does every body sent.",
    )
    defaults: dict[str, Any] = Field(
        {}, description="Pointer -> the value the platform fills in when a flow leaves it out: such a value is left "
        "out of the flow document, so a flow written without it does not drift.",
    )
    list_: ListRoute = Field(ListRoute(), alias="list", description="How flows are listed.")
    export: ExportRoute | None = Field(
        None, validate_default=True, description="How one flow is exported (required unless list.full)."
    )
    import_: ImportRoute | None = Field(
        None, alias="import", description="How one flow is imported (required unless create and update are given)."
    )
    create: CreateRoute | None = Field(
        None, description="How a new flow is created (default: the import, override off)."
    )
    update: UpdateRoute | None = Field(
        None, description="How an existing flow is replaced (default: the import, override on)."
    )
    delete: DeleteRoute | None = Field(
        None, validate_default=True, description="How one flow is deleted (required when prune is on)."
    )
    credentials: CredentialsRoute | None = Field(
        None, description="Where the credentials flows reference are listed, to refuse a flow whose references do "
        "not resolve (optional: without it they are not checked).",
    )
    health: HealthRoute | None = Field(
        None, description="A health endpoint per flow: the health gate after each write (optional: without it "
        "a write the platform accepted counts as running).",
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
        return _listed_id(v, info)

    @field_validator("update")
    @classmethod
    def _update(cls, v: UpdateRoute | None, info: ValidationInfo) -> UpdateRoute | None:
        return _listed_id(v, info)

    @field_validator("delete")
    @classmethod
    def _delete(cls, v: DeleteRoute | None, info: ValidationInfo) -> DeleteRoute | None:
        if v is None and info.data.get("prune"):
            raise ValueError("prune = true needs a delete endpoint ([environment.delete])")
        return _listed_id(v, info)

    @field_validator("health")
    @classmethod
    def _health(cls, v: HealthRoute | None, info: ValidationInfo) -> HealthRoute | None:
        return _listed_id(v, info)

    @field_validator("defaults")
    @classmethod
    def _defaults(cls, v: dict[str, Any]) -> dict[str, Any]:
        for pointer in v:
            _plain_pointer(pointer)
        return v

    @model_validator(mode="after")
    def _writes(self) -> "HttpEnvironment":
        if self.import_ is None and (self.create is None or self.update is None):
            raise ValueError("set [environment.import], or both [environment.create] and [environment.update]")
        if self.update is None and self.import_ is not None and self.import_.override is None:
            raise ValueError("import.override is required without [environment.update]: it is how an existing "
                             "flow is replaced")
        return self

def _listed_id(route: Any, info: ValidationInfo) -> Any:
    """A route whose path names {id} needs list.id: the id comes from the listing."""
    listing = info.data.get("list_")
    if route is not None and "id" in placeholders(route.path) and listing is not None and listing.id is None:
        raise ValueError("its path names {id}: set list.id, the pointer of the id in a listed item")
    return route


SETTINGS = HttpEnvironment
