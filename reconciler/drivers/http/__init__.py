"""The HTTP driver: a declarative mapping onto DPM-style flow managers (``driver = "http"``).

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
  deletion.
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
mean, as requests; pure), :mod:`.driver` (:class:`HttpDriver`: the requests, in
order, with their preconditions).
"""

from . import settings
from .driver import HttpDriver
from .settings import (
    SETTINGS,
    AuthSettings,
    DeleteRoute,
    ExportRoute,
    HttpEnvironment,
    ImportRoute,
    ListRoute,
    OverrideFlag,
)

__all__ = ["HttpDriver"]
__all__ += settings.__all__
