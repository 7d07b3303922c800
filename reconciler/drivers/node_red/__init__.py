"""The Node-RED driver: an environment is one Node-RED instance, reached through its Admin HTTP API.

**A flow is one tab**, and what no tab uses is one more document, so every
node of the instance is in git. A tab's document (``flows/<name>/<version>.json``)::

    {"name": "<tab label>", "version": "<FLOW_VERSION>",
     "tab":      {the tab node, without its label; its env list as Node-RED holds it},
     "nodes":    [the nodes whose z is the tab's id (groups, junctions, tab-scoped config nodes)],
     "configs":  [the global config nodes the flow uses, transitively],
     "subflows": [the subflow definitions the flow uses, transitively, and their nodes]}

and the instance document (``flows/_instance/1.json``, :mod:`.instance`): the
global config nodes and subflows no tab uses (``global-config`` with the
global env vars, dashboard bases and pages, brokers not used yet), nodes of no
tab, and the tab order when it is not by name.

- *Name* = the tab's label (``_instance`` is reserved). *Version* = the value
  of the tab's env entry ``FLOW_VERSION`` (setting ``version_env``), the
  flow-level environment variables of the editor's "Edit flow" dialog; a tab
  without one has version ``default_version`` ("1"). The entry stays in place
  in ``/tab/env`` without its value (:mod:`.versions`): import adds or moves
  nothing in a tab's env list.
- A node's "uses" are found by value: a string property (at any depth, except
  ``id``, ``z``, ``type``, ``wires`` and ``credentials``) equal to the id of a
  global config node or a subflow, and ``type = "subflow:<id>"``; config nodes
  and subflows are followed in turn (a broker's ``tls-config``, a subflow
  inside a subflow).
- **Shared config nodes and subflows** (used by several tabs) are carried, as
  identical copies, by every flow that uses them. An import may change such a
  definition only if every live flow that uses it gets the same copy in the
  same run; otherwise the import is refused, naming the other flow. A change
  that would change the instance document (a new tab while ``/tabs`` is there,
  a definition no tab used taken into use) needs that document in the same
  commit too. Deleting or replacing a flow removes the definitions only it used.
- Node ids (tab id included) are kept, as Node-RED's own export does; ids are
  unique per instance, so a flow whose ids another flow already uses is
  refused (copy a flow with the editor's "import as copy").
- **Canonical form**: every list of nodes sorted by ``id`` (the environment's
  sort rules always include ``/nodes``, ``/configs`` and ``/subflows`` by
  ``/id``); empty ``nodes``, ``configs`` and ``subflows`` are omitted; a global
  config node's ``z`` is dropped (Node-RED 1.x wrote ``"z": ""``, the same for
  Node-RED). Nothing the runtime writes by itself is volatile: the revision
  (``rev``) is not part of a flow. Layout (``x``, ``y``, ``w``, ``h``) is
  content; drop it with the environment's ``ignore`` if it should not count.
- **Tabs with one label and version** are all left out, with a problem naming
  every tab id and how to tell them apart (rename, or give each its own
  ``FLOW_VERSION``); they are left as they are in Node-RED.
- **Credentials** (:mod:`.credentials`) are ``${secret:NAME}`` placeholders in
  a node's ``credentials`` (every such object is a secret field of a node-red
  environment); the engine renders them, the driver sends them when they
  changed and remembers fingerprints (never values) in
  ``refs/reconciler/driver/<env>``, so a rotated secret is sent again.

**Writes** are one ``POST /flows`` per batch carrying the whole configuration
and the ``rev`` read by the export the plan was made from (deployment type
``flows``: only the tabs that changed restart). Node-RED answers 409 when a
deploy happened in between: the driver raises :class:`LiveMovedError`, and the
engine re-reads, re-plans and retries. Each change is also checked against
``Change.expect`` (a flow that is already what the change writes is done).
Before deploying, the driver derives every flow back from the configuration it
is about to send (:mod:`.checks`): an imported flow that would not read back as
written, or a flow outside the batch that would change, refuses the change
responsible (per flow; the rest of the batch goes on). With ``check_types``
(default), node types that the instance does not have (``GET /nodes``) refuse
the flow.

**Health gate** (:mod:`.health`): the deploy is watched on ``/comms`` from
before it is sent; the flows are healthy once Node-RED reports the deploy's
revision started, no type or module missing, no node of theirs logging an
error as it starts, and they read back as written. The engine restores and
quarantines the others.

**Errors**: a refused connection, a timeout, a 5xx, 408 or 429 is tried again
(``attempts`` tries, waiting ``backoff`` seconds, then twice as long…), then it
is a :class:`RetryableError` naming the URL (so is a ``/comms`` that cannot be
reached before a deploy); 401/403 are a :class:`StallError` naming the
environment variable to check (with a user and password, a 401 logs in again
once first: the token may have expired). Redirects are not followed and an
answer over 64 MiB is refused (both a :class:`StallError`). Tokens and
passwords come from environment variables only and never appear in messages
or logs.

Modules: :mod:`.settings` (the environment's settings), :mod:`.mapping` (tabs
<-> documents, pure), :mod:`.versions` (the version in a tab's env list),
:mod:`.instance` (the instance document and the tab order), :mod:`.credentials`
(what is sent and remembered), :mod:`.build` (the configuration a batch
leaves), :mod:`.checks` (a batch's checks before a deploy, pure), :mod:`.api`
(the Admin API on the shared HTTP client), :mod:`.comms` (the ``/comms``
websocket), :mod:`.health` (the gate), :mod:`.driver` (export, apply, gate).
"""

from typing import TYPE_CHECKING

from reconciler.lazy import lazy_attributes

if TYPE_CHECKING:
    from .driver import NodeRedDriver
    from .mapping import flow_documents, instance_document
    from .settings import SETTINGS, NodeRedEnvironment

__all__ = ["NodeRedEnvironment", "NodeRedDriver", "SETTINGS", "flow_documents", "instance_document"]

# Imported when first named: a directory environment's write reads the Node-RED code declarations
# (:mod:`.code`, which every kind of document shares) and must not pay for the HTTP driver (~23 ms).
_WHERE = {"NodeRedDriver": "driver", "flow_documents": "mapping", "instance_document": "mapping",
          "SETTINGS": "settings", "NodeRedEnvironment": "settings"}


__getattr__ = lazy_attributes(__name__, _WHERE)
