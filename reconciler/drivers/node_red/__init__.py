"""The Node-RED driver: an environment is one Node-RED instance, reached through its Admin HTTP API.

**A flow is one tab.** Its document (what lands in git as
``flows/<name>/<version>.json``) is::

    {"name": "<tab label>", "version": "<FLOW_VERSION>",
     "tab":      {the tab node, without its label and its FLOW_VERSION env entry},
     "nodes":    [the nodes whose z is the tab's id (groups, junctions, tab-scoped config nodes)],
     "configs":  [the global config nodes the flow uses, transitively],
     "subflows": [the subflow definitions the flow uses, transitively, and their nodes]}

- *Name* = the tab's label. *Version* = the value of the entry named
  ``FLOW_VERSION`` (setting ``version_env``) in the tab's ``env`` list, the
  flow-level environment variables of the editor's "Edit flow" dialog (so a
  function node can read it with ``env.get("FLOW_VERSION")``). A tab without
  that entry has version ``default_version`` ("1"). Import writes the entry as
  the first of the tab's env list; it is not repeated inside ``tab``.
- A node's "uses" are found by value: a string property (at any depth, except
  ``id``, ``z``, ``type`` and ``wires``) equal to the id of a global config node
  or a subflow, and ``type = "subflow:<id>"``; config nodes and subflows are
  followed in turn (a broker's ``tls-config``, a subflow inside a subflow).
- **Shared config nodes and subflows** (used by several tabs) are carried, as
  identical copies, by every flow that uses them. An import may change such a
  definition only if every live flow that uses it gets the same copy in the
  same run; otherwise the import is refused, naming the other flow (a
  definition edited in one file of git would silently change other flows).
  Keep environment-specific values (hosts, topics) in ``${ENV_VARS}`` so one
  copy fits every environment. Config and subflow definitions no tab uses are
  not part of any flow and are left alone; deleting or replacing a flow
  removes the definitions only it used.
- Node ids (tab id included) are kept, as Node-RED's own export does, so a
  flow promoted between instances keeps its ids; ids are unique per instance,
  so a flow whose ids another flow already uses is refused (copy a flow to a
  new version with new ids: the editor's "import as copy").
- **Canonical form**: every list of nodes sorted by ``id`` (the environment's
  sort rules always include ``/nodes``, ``/configs`` and ``/subflows`` by
  ``/id``, so the order in a file written by hand does not matter); empty ``nodes``,
  ``configs``, ``subflows`` and tab ``env`` are omitted. Nothing the runtime
  writes by itself is volatile: the revision (``rev``) is not part of a flow,
  and credentials are never returned by ``GET /flows``, so they are never in
  git and an import keeps the credentials the instance holds for a node id.
  Layout (``x``, ``y``, ``w``, ``h``) is content; drop it with the
  environment's ``ignore`` (e.g. ``/nodes/*/x``) if it should not count.

**Writes** are one ``POST /flows`` per batch carrying the whole configuration
and the ``rev`` read by the export the plan was made from (deployment type
``flows``: only the tabs that changed restart). Node-RED answers 409 when a
deploy happened in between: the driver raises :class:`LiveMovedError`, and the
engine re-reads, re-plans and retries, so a deploy made in the editor during a
sync is never overwritten: it shows up as drift or a conflict. Each change is
also checked against ``Change.expect``. Before deploying, the driver derives
every flow back from the configuration it is about to send: an imported flow
that would not read back as written, or a flow outside the batch that would
change, refuses the import responsible (per flow; the rest of the batch goes
on). With ``check_types`` (default), node types that the instance does not
have (``GET /nodes``) refuse the flow: Node-RED would accept it and never
start it.

**Errors**: a refused connection, a timeout, a 5xx, 408 or 429 is tried again
(``attempts`` tries, waiting ``backoff`` seconds, then twice as long…), then it
is a :class:`RetryableError` naming the URL; 401/403 are a :class:`StallError`
naming the environment variable to check (with a user and password, a 401 logs
in again once first: the token may have expired). Redirects are not followed
and an answer over 64 MiB is refused (both a :class:`StallError`). Tokens and
passwords come from environment variables only and never appear in messages
or logs.

Modules: :mod:`.settings` (the environment's settings), :mod:`.mapping` (tabs
<-> documents, pure), :mod:`.checks` (a batch's checks before a deploy, pure),
:mod:`.api` (the Admin API on the shared HTTP client), :mod:`.driver` (export
and apply).
"""

from .driver import NodeRedDriver
from .mapping import flow_documents
from .settings import SETTINGS, NodeRedEnvironment

__all__ = ["NodeRedEnvironment", "NodeRedDriver", "SETTINGS", "flow_documents"]
