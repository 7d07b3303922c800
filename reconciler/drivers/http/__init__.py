"""The HTTP driver: a declarative mapping onto DPM-style flow managers, and n8n (``driver = "http"``).

Products like the DPM export a flow as JSON carrying its name and version, and
import it with an optional name/version change and an *Override* switch. Their
REST APIs differ only in paths and field names, so this driver is configured,
not coded. A complete mapping (every key shown; defaults noted)::

    [[environment]]
    name = "production"
    driver = "http"
    url = "https://dpm.example.com/api/v1"   # base URL; http or https, no credentials in it
    drift = "restore"
    prune = true                             # needs [environment.delete]
    identity = { name = "/name", version = "/version" }  # where an export keeps them
    ignore = ["/exportedAt", "/revision"]    # fields the platform sets on export/import
    timeout = 10                             # seconds per request (connect, and each read)
    attempts = 3                             # tries per request on a timeout or a 5xx/429
    backoff = 0.5                            # first delay between tries, doubling
    concurrency = 4                          # flows fetched in parallel on export

    [environment.auth]                       # omit when the API needs no credentials
    env = "DPM_TOKEN"                        # environment variable holding the token
    header = "Authorization"                 # default
    scheme = "Bearer"                        # sent as "Bearer <token>"; "" sends the token alone

    [environment.list]
    path = "/flows"                          # GET; the response holds an array ...
    items = "/items"                         # ... at this JSON pointer ("" = the response is the array)
    full = false                             # items are summaries: each flow is fetched from `export`
    name = "/name"                           # where a summary keeps the name (default: identity.name)
    version = "/version"                     # ... and the version (default: identity.version)
    next = "/next"                           # optional: link to the next page (same host only)

    [environment.export]                     # required unless list.full = true
    path = "/flows/{name}/versions/{version}/export"   # GET
    flow = ""                                # pointer of the flow in the response ("" = all of it)

    [environment.import]
    method = "POST"                          # or PUT
    path = "/flows/import"                   # {name} and {version} allowed here too
    flow = "/flow"                           # where the flow goes in the body ("" = the body is the flow)
    name = "/name"                           # optional body fields carrying the target name ...
    version = "/version"                     # ... and version (the DPM's "change name/version")
    override = { query = "override" }        # ?override=true|false, or { field = "/override" } (JSON boolean)

    [environment.delete]                     # optional; without it prune cannot be on
    method = "DELETE"                        # or POST
    path = "/flows/{name}/versions/{version}"

Paths are appended to ``url``; ``{name}`` and ``{version}`` are percent-encoded
as one path segment each (``/`` becomes ``%2F``, spaces ``%20``, non-ASCII its
UTF-8 bytes; ``.`` and ``..`` are escaped too), so any flow name is safe.

A platform that addresses a flow by an id of its own, adds fields to what it
stores and has no versions (n8n; ``manifests/examples/n8n/``) is mapped with
these keys as well::

    identity = { name = "/name", fixed_version = "1" }   # no versions: a flow is its name, always version 1
    fields = ["/name", "/nodes", "/connections", "/settings"]   # the flow is these fields (an allow-list)
    defaults = { "/settings/callerPolicy" = "workflowsFromSameOwner" }   # values the platform fills in

    [environment.list]
    id = "/id"                               # the platform's id of a listed item: {id} in templates
    cursor = { from = "/nextCursor", param = "cursor" }   # pages by an opaque cursor (instead of next)
    name_query = "name"                      # ?name= narrows the listing (a superset: names compared here)
    recheck = true                           # pages read again until two passes agree (default with cursor)

    [environment.export]
    path = "/workflows/{id}"

    [environment.create]                     # instead of the import with override off
    method = "POST"                          # or PUT
    path = "/workflows"                      # flow, name and version: where they go, as for the import

    [environment.update]                     # instead of the import with override on
    method = "PUT"                           # or POST, PATCH
    path = "/workflows/{id}"                 # in place
    merged = ["/settings"]                   # objects the platform merges: removing a key there is refused

    [environment.delete]
    path = "/workflows/{id}"

    [environment.credentials]                # optional: credential references checked before import
    url = "http://127.0.0.1:5678"            # default: the environment's url
    path = "/rest/credentials"               # GET; items, id, name and type at pointers (defaults below)
    items = "/data"
    id = "/id"
    name = "/name"
    type = "/type"
    auth = { env = "N8N_SESSION", header = "Cookie", scheme = "" }   # default: the environment's auth
    nodes = "/nodes"                         # the nodes of a flow ...
    refs = "/credentials"                    # ... each naming its credentials as {type: {id, name}}
    label = "/name"                          # ... and called this in messages

With ``create`` and ``update`` the import route (and its Override switch) is
optional; ``{id}`` may appear in the export, update and delete paths, and needs
``list.id``.

Behaviour:

- **Preconditions.** Before replacing or deleting a flow the driver re-reads it
  (one GET) and compares its canonical blob id with what the plan saw; if it
  changed (an edit in the UI), that flow fails with a clear message and is left
  as it is; the next run sees drift or a conflict. A new flow is imported with
  override *off*, so the platform itself refuses it if someone created it in the
  meantime: a 409 (or a 4xx saying "already exists") is that flow's failure,
  reported once, not retried. The window between the re-read and the write is
  one round trip; closing it needs a revision precondition from the platform,
  which DPM-style APIs do not offer.
- **Transient failures.** Timeouts, refused connections, 5xx, 408 and 429 are
  retried ``attempts`` times with exponential backoff, then the run stops with
  a :class:`RetryableError` naming the URL (the service backs off; the CLI
  exits 1). A dead platform therefore costs a bounded number of requests.
- **Refusals.** Other 4xx are not retried: the platform's message (``message``,
  ``error``, ``detail`` or ``title`` of a JSON body, else the text) is that
  flow's failure. 401/403 stop the run with a :class:`StallError` naming the
  environment variable; so does a missing token.
- **Listing safety.** A listed flow that cannot be exported (any 4xx, including
  404) makes the live set incomplete, so its absence is never taken for a
  deletion. So does a listing of several pages that changed each time it was
  read (``recheck``: offset pages skip an item deleted between two of them).
- **Ids.** The platform's id of each flow is learnt from the listing (or looked
  up by name for a flow it did not show); a name two flows hold is reported for
  that flow and never resolved to one of them. An update and a delete address
  the id the re-read found, so a flow is replaced in place, never copied.
- **New flows.** With a ``create`` route the listing is read for the flow's name
  first (narrowed by ``name_query``): a platform that allows two flows of one
  name would not refuse a flow created in its UI meanwhile, so the driver does.
- **Shape.** Every document read is reduced to ``fields`` and stripped of values
  equal to their ``defaults`` before it is canonicalised. A document from git
  that this would change (a field outside the list, a default written out)
  could never read back as written: it is refused before import, naming the
  pointer. An update that would remove a key of a ``merged`` object is refused
  too (the platform would keep it).
- **Credentials.** With ``[environment.credentials]`` the target's credentials
  are listed once per batch of writes; a flow naming one that is missing, or a
  name two of them share, is refused before import, naming the node, the
  credential's type and its name.
- **Writes** are sent one after the other, never in parallel (n8n's default
  sqlite loses concurrent writes); reads run ``concurrency`` at a time.
- **Secrets.** The token is read from the environment at each request, never
  from the config file, and never logged or put in a message. Redirects are not
  followed (the token would travel with them); a ``next`` page on another host
  is refused for the same reason.
- **Transport.** The HTTP client every HTTP driver shares
  (:mod:`reconciler.drivers._http`): standard library only, keep-alive
  connections pooled per environment, answers over 64 MiB refused. TLS uses the
  system's trust store (``SSL_CERT_FILE`` points at another bundle); proxies are
  not supported.

The package: :mod:`.settings` (the models above), :mod:`.mapping` (what they
mean, as requests; pure), :mod:`.shape` (``fields`` and ``defaults``; pure),
:mod:`.listing` (the pages, and a listing that can be trusted), :mod:`.reading`
(one flow, by name or by id), :mod:`.credentials` (references checked),
:mod:`.driver` (:class:`HttpDriver`: the requests, in order, with their
preconditions).
"""

from typing import TYPE_CHECKING

from reconciler.lazy import lazy_attributes

if TYPE_CHECKING:
    from .driver import HttpDriver
    from .settings import (
        SETTINGS,
        AuthSettings,
        CreateRoute,
        CredentialsRoute,
        CursorPaging,
        DeleteRoute,
        ExportRoute,
        HealthRoute,
        HttpEnvironment,
        HttpIdentity,
        ImportRoute,
        ListRoute,
        OverrideFlag,
        UpdateRoute,
    )

# Imported when first named (PEP 562), as the directory driver's: a command whose config comes from its
# cache (reconciler.configcache) builds the driver from a view of the settings and imports no pydantic model.
_SETTINGS_NAMES = ("SETTINGS", "AuthSettings", "CreateRoute", "CredentialsRoute", "CursorPaging", "DeleteRoute",
                   "ExportRoute", "HealthRoute", "HttpEnvironment", "HttpIdentity", "ImportRoute", "ListRoute",
                   "OverrideFlag", "UpdateRoute")
_WHERE = {"HttpDriver": "driver", "settings": None, **{n: "settings" for n in _SETTINGS_NAMES}}

__all__ = ["HttpDriver", *_SETTINGS_NAMES]


__getattr__ = lazy_attributes(__name__, _WHERE)
