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

**Errors**: unreachable, timeouts and 5xx are :class:`RetryableError` naming
the URL; 401/403 are :class:`StallError` naming the environment variable to
check. Tokens and passwords come from environment variables only and never
appear in messages or logs.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import structlog
from pydantic import Field, StrictBool, field_validator, model_validator

from reconciler.canonical import InvalidJSON, Rules, format_pointer, parse_json
from reconciler.drivers import Change, LiveCollector, LiveSet, Progress
from reconciler.envconfig import EnvironmentConfig
from reconciler.errors import LiveMovedError, Problem, RetryableError, StallError
from reconciler.flows import CanonicalFlow, FlowKey, Identity, flow_from_doc

__all__ = ["NodeRedEnvironment", "NodeRedDriver", "SETTINGS", "flow_documents"]

log = structlog.get_logger("reconciler.drivers.node_red")

_ENV_VAR = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Node types that are structure, not installed modules (GET /nodes does not list them).
_BUILTIN_TYPES = frozenset({"tab", "subflow", "group"})
_DOC_KEYS = ("name", "version", "tab", "nodes", "configs", "subflows")
# Properties that never hold a reference to a config node or a subflow.
_NOT_REFS = frozenset({"id", "z", "type", "wires"})
MAX_RESPONSE_BYTES = 512 * 1024 * 1024
# Sort rules every node-red environment has, on top of its own `sort`.
NODE_LISTS_BY_ID = {"/nodes": "/id", "/configs": "/id", "/subflows": "/id"}


# -- settings --------------------------------------------------------------------------


class NodeRedEnvironment(EnvironmentConfig):
    """A Node-RED instance, through its Admin HTTP API."""

    driver: Literal["node-red"]
    url: str = Field(description="Base URL of the Admin API (httpAdminRoot), e.g. http://127.0.0.1:1880.")
    token_env: str | None = Field(
        None, pattern=_ENV_VAR, description="Environment variable holding a bearer token (adminAuth tokens, or one from POST /auth/token)."
    )
    username_env: str | None = Field(
        None, pattern=_ENV_VAR, description="Environment variable holding the adminAuth user name (with password_env)."
    )
    password_env: str | None = Field(
        None, pattern=_ENV_VAR, description="Environment variable holding that user's password."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds to wait for any one HTTP request.")
    check_types: StrictBool = Field(
        True, description="Refuse a flow using node types the instance does not have (GET /nodes)."
    )
    version_env: str = Field(
        "FLOW_VERSION", pattern=_ENV_VAR, description="Name of the tab env entry holding the flow's version."
    )
    default_version: str = Field("1", min_length=1, description="Version of a tab that has no such env entry.")
    deploy: Literal["flows", "full"] = Field(
        "flows", description="Node-RED-Deployment-Type of the write: 'flows' restarts only changed tabs."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urllib.parse.urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use token_env or username_env/password_env")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _auth_and_identity(self) -> "NodeRedEnvironment":
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("username_env and password_env go together")
        if self.token_env is not None and self.username_env is not None:
            raise ValueError("use either token_env or username_env/password_env, not both")
        if (self.identity.name, self.identity.version) != ("/name", "/version"):
            raise ValueError("identity: the node-red driver keeps name and version at /name and /version")
        return self

    @property
    def rules(self) -> Rules:
        """The environment's rules, plus: every list of nodes is sorted by id (the order means nothing)."""
        return Rules.of(self.ignore, {**NODE_LISTS_BY_ID, **self.sort})

    def build_driver(self) -> "NodeRedDriver":
        return NodeRedDriver(
            self.url,
            self.flow_identity,
            self.rules,
            token_env=self.token_env,
            username_env=self.username_env,
            password_env=self.password_env,
            timeout=self.timeout,
            check_types=self.check_types,
            version_env=self.version_env,
            default_version=self.default_version,
            deploy=self.deploy,
        )


SETTINGS = NodeRedEnvironment


# -- the mapping (pure): a Node-RED configuration <-> flow documents ----------------------


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _by_id(nodes: Iterable[dict]) -> list[dict]:
    return sorted(nodes, key=lambda n: str(n.get("id")))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class _Index:
    """A Node-RED configuration (the list of nodes of GET /flows), indexed."""

    def __init__(self, nodes: list[dict]):
        self.nodes = nodes
        self.tabs: list[dict] = []
        self.subflows: dict[str, dict] = {}
        self.configs: dict[str, dict] = {}
        self.members: dict[str, list[dict]] = {}
        for n in nodes:
            kind, nid, z = n.get("type"), _str(n.get("id")), _str(n.get("z"))
            if kind == "tab":
                self.tabs.append(n)
            elif kind == "subflow" and nid:
                self.subflows[nid] = n
            elif z:
                self.members.setdefault(z, []).append(n)
            elif nid:
                self.configs[nid] = n
        self._refs: dict[int, frozenset[str]] = {}

    def refs(self, node: dict) -> frozenset[str]:
        """Ids of the config nodes and subflows a node refers to directly."""
        got = self._refs.get(id(node))
        if got is None:
            found: set[str] = set()
            kind = node.get("type")
            if isinstance(kind, str) and kind.startswith("subflow:") and kind[8:] in self.subflows:
                found.add(kind[8:])
            if self.configs or self.subflows:
                stack = [v for k, v in node.items() if k not in _NOT_REFS]
                while stack:
                    v = stack.pop()
                    if isinstance(v, str):
                        if v in self.configs or v in self.subflows:
                            found.add(v)
                    elif isinstance(v, dict):
                        stack.extend(v.values())
                    elif isinstance(v, list):
                        stack.extend(v)
            got = self._refs[id(node)] = frozenset(found)
        return got

    def uses(self, container: str) -> set[str]:
        """Config nodes and subflows a tab (or subflow) uses, transitively."""
        seen: set[str] = set()
        stack = [r for n in self.members.get(container, ()) for r in self.refs(n)]
        while stack:
            d = stack.pop()
            if d in seen or d == container:
                continue
            seen.add(d)
            if d in self.configs:
                stack.extend(self.refs(self.configs[d]))
            else:
                stack.extend(self.refs(self.subflows[d]))
                stack.extend(r for n in self.members.get(d, ()) for r in self.refs(n))
        return seen

    def definition(self, d: str) -> list[dict]:
        """A config node, or a subflow with its nodes: what 'the same definition' compares."""
        if d in self.configs:
            return [self.configs[d]]
        return [self.subflows[d], *_by_id(self.members.get(d, ()))]

    def describe(self, d: str) -> str:
        node = self.configs.get(d) or self.subflows.get(d) or {}
        kind = "subflow" if d in self.subflows else f"config node ({node.get('type')})"
        label = node.get("name") or ""
        return f"{kind} {d}" + (f" {label!r}" if label else "")


def _document(index: _Index, tab: dict, version_env: str, default_version: str) -> dict[str, Any]:
    """The flow document of one tab (a fresh copy; the index is not modified)."""
    doc_tab = {k: _clone(v) for k, v in tab.items() if k != "label"}
    version: Any = default_version
    env = doc_tab.get("env")
    if isinstance(env, list):
        for i, entry in enumerate(env):
            if isinstance(entry, dict) and entry.get("name") == version_env:
                version = entry.get("value")
                del env[i]
                break
        if not env:
            del doc_tab["env"]
    doc: dict[str, Any] = {"name": tab.get("label"), "version": version, "tab": doc_tab}
    tid = _str(tab.get("id"))
    nodes = index.members.get(tid, []) if tid else []
    uses = index.uses(tid) if tid else set()
    configs = [index.configs[d] for d in uses if d in index.configs]
    subflows = [n for d in uses if d in index.subflows for n in index.definition(d)]
    for key, items in (("nodes", nodes), ("configs", configs), ("subflows", subflows)):
        if items:
            doc[key] = [_clone(n) for n in _by_id(items)]
    if doc["name"] is None:
        del doc["name"]
    return doc


def flow_documents(nodes: list[dict], version_env: str = "FLOW_VERSION", default_version: str = "1") -> dict[str, dict]:
    """Tab id -> flow document, for a Node-RED configuration (pure; see the module docstring)."""
    index = _Index(nodes)
    return {str(t.get("id")): _document(index, t, version_env, default_version) for t in index.tabs}


@dataclass
class _Incoming:
    """A flow document from git, split back into Node-RED nodes."""

    key: FlowKey
    oid: str
    doc: dict
    tab: dict
    nodes: list[dict]
    configs: dict[str, dict]
    subflows: dict[str, list[dict]]  # subflow id -> [definition, its nodes...]

    @property
    def tab_id(self) -> str:
        return self.tab["id"]

    def own_ids(self) -> list[str]:
        return [self.tab_id, *(n["id"] for n in self.nodes)]

    def definition(self, d: str) -> list[dict]:
        """As :meth:`_Index.definition`: a config node, or a subflow and its nodes sorted by id."""
        if d in self.configs:
            return [self.configs[d]]
        return [self.subflows[d][0], *_by_id(self.subflows[d][1:])]

    def definitions(self) -> list[str]:
        return [*self.configs, *self.subflows]

    def types(self) -> set[str]:
        every = [*self.nodes, *self.configs.values(), *(n for ns in self.subflows.values() for n in ns[1:])]
        return {n["type"] for n in every}


class _Refused(Exception):
    pass


def _incoming(change: Change, identity: Identity, rules: Rules, version_env: str) -> _Incoming:
    """Parse and check a document from git; raises :class:`_Refused` saying what is wrong and where."""
    assert change.data is not None
    try:
        doc = parse_json(change.data)
    except InvalidJSON as exc:
        raise _Refused(f"not JSON: {exc}") from exc
    got = flow_from_doc(_clone(doc), identity, rules, where=str(change.key))
    if isinstance(got, Problem):
        raise _Refused(got.message)
    if not isinstance(doc, dict):
        raise _Refused("a Node-RED flow document must be a JSON object")
    unknown = sorted(set(doc) - set(_DOC_KEYS))
    if unknown:
        raise _Refused(f"/{unknown[0]}: unknown key; a Node-RED flow document has {', '.join(_DOC_KEYS)}")
    tab = doc.get("tab")
    if not isinstance(tab, dict) or tab.get("type") != "tab" or not _str(tab.get("id")):
        raise _Refused('/tab: must be an object with "type": "tab" and a non-empty "id"')
    seen: set[str] = set()

    def nodes_at(key: str) -> list[dict]:
        items = doc.get(key, [])
        if not isinstance(items, list):
            raise _Refused(f"/{key}: must be an array of nodes")
        for i, n in enumerate(items):
            if not isinstance(n, dict) or not _str(n.get("id")) or not _str(n.get("type")):
                raise _Refused(f"/{key}/{i}: a node must be an object with a non-empty string id and type")
            if n["id"] in seen or n["id"] == tab["id"]:
                raise _Refused(f"/{key}/{i}: id {n['id']!r} appears twice in the flow")
            seen.add(n["id"])
        return items

    nodes, configs, subflow_nodes = nodes_at("nodes"), nodes_at("configs"), nodes_at("subflows")
    for i, n in enumerate(nodes):
        if n.get("z") != tab["id"]:
            raise _Refused(f"/nodes/{i}: z is {n.get('z')!r}, not the tab's id {tab['id']!r}")
    for i, n in enumerate(configs):
        if "z" in n or n["type"] in _BUILTIN_TYPES:
            raise _Refused(f"/configs/{i}: a global config node has no z and is not a {n['type']}")
    subflows: dict[str, list[dict]] = {n["id"]: [n] for n in subflow_nodes if n["type"] == "subflow"}
    for i, n in enumerate(subflow_nodes):
        if n["type"] != "subflow":
            if n.get("z") not in subflows:
                raise _Refused(f"/subflows/{i}: z {n.get('z')!r} is not a subflow of this document")
            subflows[n["z"]].append(n)
    for where, items in (("nodes", nodes), ("subflows", subflow_nodes)):
        for i, n in enumerate(items):
            kind = n["type"]
            if kind.startswith("subflow:") and kind[8:] not in subflows:
                raise _Refused(f"/{where}/{i}: uses subflow {kind[8:]!r}, which the document does not carry")
    if not isinstance(tab.get("env", []), list) or not all(isinstance(e, dict) for e in tab.get("env", [])):
        raise _Refused("/tab/env: must be an array of {name, value, type} objects")
    tab = dict(tab, label=change.key.name)
    env = [e for e in tab.get("env", []) if e.get("name") != version_env]
    tab["env"] = [{"name": version_env, "value": change.key.version, "type": "str"}, *env]
    return _Incoming(change.key, got.oid, doc, tab, nodes, {n["id"]: n for n in configs}, subflows)


def _first_difference(a: Any, b: Any, path: tuple[str, ...] = ()) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k, _MISSING) != b.get(k, _MISSING):
                return _first_difference(a.get(k, _MISSING), b.get(k, _MISSING), (*path, k))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, (*path, str(i)))
    return format_pointer(path) or "/"


_MISSING = object()


# -- the Admin HTTP API -------------------------------------------------------------------


class _AdminAPI:
    """HTTP to one Node-RED (standard library only): auth, timeouts, errors translated."""

    def __init__(self, url: str, *, timeout: float, token_env: str | None, username_env: str | None,
                 password_env: str | None, environ: Mapping[str, str] | None = None):
        self.url, self.timeout = url, timeout
        self.token_env, self.username_env, self.password_env = token_env, username_env, password_env
        self.environ = os.environ if environ is None else environ
        self._token: str | None = None  # from POST /auth/token; never logged

    def _secret(self, var: str) -> str:
        value = self.environ.get(var, "")
        if not value:
            raise StallError(f"Node-RED at {self.url}: environment variable {var} is not set (or empty)")
        return value

    def _auth_header(self) -> dict[str, str]:
        if self.token_env:
            return {"Authorization": f"Bearer {self._secret(self.token_env)}"}
        if self.username_env:
            if self._token is None:
                self._token = self._login()
            return {"Authorization": f"Bearer {self._token}"}
        return {}

    def _login(self) -> str:
        assert self.username_env and self.password_env
        form = urllib.parse.urlencode({
            "client_id": "node-red-admin", "grant_type": "password", "scope": "*",
            "username": self._secret(self.username_env), "password": self._secret(self.password_env),
        }).encode()
        status, data = self._send("POST", "/auth/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
        if status in (400, 401, 403):
            raise StallError(
                f"Node-RED at {self.url} refused the user name and password from ${self.username_env} and "
                f"${self.password_env} (HTTP {status}: {_summary(data)}); check those environment variables"
            )
        self._check(status, data, "POST", "/auth/token")
        try:
            token = orjson.loads(data)["access_token"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise StallError(f"Node-RED at {self.url}: POST /auth/token gave no access token; is adminAuth on?") from exc
        return str(token)

    def request(self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None,
                *, expect: Iterable[int] = (200,)) -> tuple[int, bytes]:
        """Send with auth; a 401 re-logs in once (password auth); other failures raise typed errors."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        status, data = self._send(method, path, body, {**all_headers, **self._auth_header()})
        if status == 401 and self.username_env:
            self._token = None  # expired or revoked: log in again, once
            status, data = self._send(method, path, body, {**all_headers, **self._auth_header()})
        if status in expect:
            return status, data
        self._check(status, data, method, path)
        return status, data

    def _check(self, status: int, data: bytes, method: str, path: str) -> None:
        what = f"Node-RED at {self.url} answered {status} to {method} {path}"
        if status == 401:
            if self.token_env:
                hint = f"the token in ${self.token_env} was refused; check that environment variable"
            elif self.username_env:
                hint = f"the login of ${self.username_env} was not accepted; check ${self.username_env} and ${self.password_env}"
            else:
                hint = "it requires authentication: set token_env, or username_env and password_env"
            raise StallError(f"{what} (unauthorized): {hint}")
        if status == 403:
            raise StallError(f"{what} (forbidden): the user lacks permission for it (give it '*' in adminAuth)")
        if status >= 500 or status in (408, 429):
            raise RetryableError(f"{what}: {_summary(data)}; retrying later")
        if status >= 300:
            raise StallError(f"{what}: {_summary(data)}")

    def _send(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=dict(headers))
        try:
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return resp.status, resp.read(MAX_RESPONSE_BYTES)
            except urllib.error.HTTPError as exc:
                with exc:
                    return exc.code, exc.read(64 * 1024)
        except urllib.error.URLError as exc:
            reason = exc.reason
            raise RetryableError(f"Node-RED at {self.url} is unreachable ({_reason(reason)}); retrying later") from exc
        except (TimeoutError, socket.timeout) as exc:
            raise RetryableError(
                f"Node-RED at {self.url} did not answer {method} {path} within {self.timeout:g} s; retrying later"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise RetryableError(f"Node-RED at {self.url}: {method} {path} failed ({_reason(exc)}); retrying later") from exc

    # -- the calls the driver makes

    def get_flows(self) -> tuple[str, list[dict]]:
        _, data = self.request("GET", "/flows", headers={"Node-RED-API-Version": "v2"})
        try:
            body = parse_json(data)
        except InvalidJSON as exc:
            raise RetryableError(f"Node-RED at {self.url}: GET /flows is not JSON ({exc})") from exc
        if not isinstance(body, dict) or not isinstance(body.get("flows"), list) or not isinstance(body.get("rev"), str):
            raise StallError(f"Node-RED at {self.url}: GET /flows did not give {{rev, flows}} (Node-RED >= 1.0 needed)")
        nodes = [n for n in body["flows"] if isinstance(n, dict)]
        if len(nodes) != len(body["flows"]):
            raise StallError(f"Node-RED at {self.url}: GET /flows holds entries that are not nodes")
        return body["rev"], nodes

    def node_types(self) -> set[str]:
        _, data = self.request("GET", "/nodes")
        try:
            sets = orjson.loads(data)
            return {t for s in sets if s.get("enabled", True) for t in s.get("types", [])}
        except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
            raise RetryableError(f"Node-RED at {self.url}: GET /nodes is not the expected JSON") from exc

    def deploy(self, rev: str, nodes: list[dict], deployment_type: str) -> str:
        """POST /flows guarded by ``rev``; raises LiveMovedError when a deploy happened since."""
        try:
            body = orjson.dumps({"rev": rev, "flows": nodes})
        except orjson.JSONEncodeError as exc:
            raise StallError(f"cannot encode the flows for Node-RED at {self.url}: {exc}") from exc
        headers = {"Content-Type": "application/json", "Node-RED-API-Version": "v2",
                   "Node-RED-Deployment-Type": deployment_type}
        status, data = self.request("POST", "/flows", body, headers, expect=(200, 204, 409))
        if status == 409:
            raise LiveMovedError(f"Node-RED at {self.url} was deployed to since its flows were read (rev {rev[:12]})")
        try:
            return str(orjson.loads(data).get("rev", ""))
        except (orjson.JSONDecodeError, AttributeError):
            return ""


def _summary(data: bytes) -> str:
    try:
        body = orjson.loads(data)
        if isinstance(body, dict):
            text = " ".join(str(body[k]) for k in ("code", "message", "error", "error_description") if body.get(k))
            if text:
                return text[:300]
    except orjson.JSONDecodeError:
        pass
    text = data[:300].decode("utf-8", "replace").strip()
    return re.sub(r"<[^>]+>|\s+", " ", text).strip() or "no message"


def _reason(exc: object) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# -- the driver ------------------------------------------------------------------------------


@dataclass
class _Snapshot:
    """One GET /flows, as the plan saw it."""

    rev: str
    index: _Index
    live: LiveSet
    keys: dict[str, FlowKey]  # tab id -> key, for the tabs that are valid flows
    signature: dict[str, str]  # tab id -> canonical oid, or the problem it has
    tab_of: dict[FlowKey, str] = field(default_factory=dict)


class NodeRedDriver:
    """The Driver protocol over Node-RED's Admin HTTP API (see the module docstring)."""

    def __init__(self, url: str, identity: Identity = Identity(), rules: Rules | None = None, *,
                 token_env: str | None = None, username_env: str | None = None, password_env: str | None = None,
                 timeout: float = 30.0, check_types: bool = True, version_env: str = "FLOW_VERSION",
                 default_version: str = "1", deploy: str = "flows", environ: Mapping[str, str] | None = None):
        self.url = url.rstrip("/")
        self.location = self.url
        self.identity = identity
        self.rules = rules if rules is not None else Rules.of((), NODE_LISTS_BY_ID)
        self.check_types, self.version_env, self.default_version = check_types, version_env, default_version
        self.deployment_type = deploy
        self.api = _AdminAPI(self.url, timeout=timeout, token_env=token_env, username_env=username_env,
                             password_env=password_env, environ=environ)
        self._snapshot: _Snapshot | None = None

    # -- export --------------------------------------------------------------------------

    def export(self, progress: Progress | None = None) -> LiveSet:
        rev, nodes = self.api.get_flows()
        index = _Index(nodes)
        collect = LiveCollector(self.identity, self.rules)
        keys: dict[str, FlowKey] = {}
        signature: dict[str, str] = {}
        total = len(index.tabs)
        for i, tab in enumerate(index.tabs, 1):
            tid = str(tab.get("id"))
            got = collect.add(_document(index, tab, self.version_env, self.default_version), f"{self.url} tab {tid}")
            if got is not None:
                keys[tid], signature[tid] = got.key, got.oid
            else:  # a duplicate name+version, or no usable name: still compared before every write
                signature[tid] = self._signature(index, tab)
            if progress is not None and (i % 200 == 0 or i == total):
                progress(i, total)
        live = collect.result()
        keys = {t: k for t, k in keys.items() if k in live.flows}
        self._snapshot = _Snapshot(rev, index, live, keys, signature, {k: t for t, k in keys.items()})
        return live

    def _signature(self, index: _Index, tab: dict) -> str:
        """The canonical blob id of a tab's document, or the problem it has."""
        got = flow_from_doc(_document(index, tab, self.version_env, self.default_version), self.identity, self.rules, where="")
        return got.oid if isinstance(got, CanonicalFlow) else f"problem: {got.message}"

    def _signatures(self, index: _Index) -> dict[str, str]:
        return {str(tab.get("id")): self._signature(index, tab) for tab in index.tabs}

    # -- apply ---------------------------------------------------------------------------

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> dict[FlowKey, str]:
        """One deploy for the batch, guarded by the rev of the export the plan saw."""
        if self._snapshot is None:
            self.export()
        snap = self._snapshot
        assert snap is not None
        failed: dict[FlowKey, str] = {}
        imports: dict[FlowKey, _Incoming] = {}
        deletes: set[FlowKey] = set()
        for change in changes:
            reason = self._precheck(snap, change)
            if reason:
                failed[change.key] = reason
            elif change.data is None:
                if change.key in snap.tab_of:
                    deletes.add(change.key)
            else:
                try:
                    imports[change.key] = _incoming(change, self.identity, self.rules, self.version_env)
                except _Refused as exc:
                    failed[change.key] = f"flow {change.key} cannot be imported: {exc}"
        if imports and self.check_types:
            self._check_types(imports, failed)
        nodes = self._settle(snap, imports, deletes, failed)
        if progress is not None:
            progress(len(changes) - len(failed), len(changes))
        if nodes is not None and (imports or deletes):
            self._snapshot = None  # whatever happens next, the next apply reads again
            new_rev = self.api.deploy(snap.rev, nodes, self.deployment_type)
            log.info("node-red deployed", url=self.url, imported=len(imports), deleted=len(deletes),
                     rev=new_rev[:12], type=self.deployment_type)
        return failed

    def _precheck(self, snap: _Snapshot, change: Change) -> str | None:
        if change.key in snap.live.invalid:
            return f"{snap.live.invalid[change.key]}; left as it is"
        current = snap.live.flows.get(change.key)
        found = current.oid if current is not None else None
        if found != change.expect:
            return (f"flow {change.key} changed in Node-RED at {self.url} since it was read (expected "
                    f"{_short(change.expect)}, found {_short(found)}); left as it is, the next run re-checks it")
        return None

    def _check_types(self, imports: dict[FlowKey, _Incoming], failed: dict[FlowKey, str]) -> None:
        known = self.api.node_types() | _BUILTIN_TYPES
        for key, inc in list(imports.items()):
            missing = sorted(t for t in inc.types() if t not in known and not t.startswith("subflow:"))
            if missing:
                failed[key] = (
                    f"flow {key} uses node types that Node-RED at {self.url} does not have: "
                    f"{', '.join(repr(t) for t in missing)}; install the modules providing them first "
                    "(Node-RED would accept the flow and never start it)"
                )
                del imports[key]

    def _settle(self, snap: _Snapshot, imports: dict[FlowKey, _Incoming], deletes: set[FlowKey],
                failed: dict[FlowKey, str]) -> list[dict] | None:
        """Build the configuration to deploy; drop imports until every flow reads back as meant."""
        while imports or deletes:
            nodes = _build(snap, imports, deletes)
            bad = self._verify(snap, nodes, imports, deletes)
            if not bad:
                return nodes
            for key, why in bad.items():
                failed[key] = why
                imports.pop(key, None)
        return None

    def _verify(self, snap: _Snapshot, nodes: list[dict], imports: dict[FlowKey, _Incoming],
                deletes: set[FlowKey]) -> dict[FlowKey, str]:
        after = _Index(nodes)
        bad: dict[FlowKey, str] = {}
        # Ids are unique per instance.
        counts = Counter(n.get("id") for n in nodes)
        before = Counter(n.get("id") for n in snap.index.nodes)
        for key, inc in imports.items():
            own = [*inc.own_ids(), *inc.configs, *(n["id"] for ns in inc.subflows.values() for n in ns)]
            clash = next((i for i in own if counts[i] > 1 and before[i] <= 1), None)
            if clash is not None:
                bad[key] = (f"flow {key} cannot be imported: node id {clash!r} is already used by "
                            f"{self._owner(snap, clash, inc, imports)} in Node-RED at {self.url}; ids are unique per "
                            "instance (to copy a flow, import it as a copy in the editor, which gives new ids)")
        signature = self._signatures(after)
        # Each import reads back exactly as written.
        for key, inc in imports.items():
            if key in bad:
                continue
            if signature.get(inc.tab_id) != inc.oid:
                bad[key] = self._mismatch(after, inc, imports)
        # Nothing outside the batch changes.
        removed = {snap.tab_of[k] for k in (*imports, *deletes) if k in snap.tab_of}
        for tid, was in snap.signature.items():
            if tid in removed or signature.get(tid) == was:
                continue
            uses = snap.index.uses(tid) | after.uses(tid)
            culprits = [k for k, inc in imports.items() if self._changes(snap, inc) & uses]
            other = snap.keys.get(tid) or f"tab {tid}"
            for k in culprits or list(imports):
                shared = sorted(self._changes(snap, imports[k]) & uses)
                what = ", ".join(snap.index.describe(d) if d in snap.index.configs or d in snap.index.subflows
                                 else d for d in shared) or "the configuration"
                bad.setdefault(k, (
                    f"flow {k} cannot be imported: it changes {what}, which flow {other} also uses and which "
                    "this run does not update; a shared config node or subflow must change in every flow "
                    "that uses it, in the same commit"
                ))
        return bad

    @staticmethod
    def _changes(snap: _Snapshot, inc: _Incoming) -> set[str]:
        """Definitions an import adds or changes."""
        index = snap.index
        return {
            d for d in inc.definitions()
            if (d not in index.configs and d not in index.subflows) or index.definition(d) != inc.definition(d)
        }

    def _mismatch(self, after: _Index, inc: _Incoming, imports: dict[FlowKey, _Incoming]) -> str:
        for d in inc.definitions():
            if (d in after.configs or d in after.subflows) and after.definition(d) != inc.definition(d):
                other = next((o.key for o in imports.values() if o is not inc and d in o.definitions()), None)
                by = f"flow {other}, imported in the same run" if other else f"Node-RED at {self.url}"
                return (f"flow {inc.key} cannot be imported: it carries a copy of {after.describe(d)} that differs "
                        f"from the one in {by}; flows sharing a definition must carry identical copies")
        tab = next((t for t in after.tabs if t.get("id") == inc.tab_id), None)
        derived: Any = _document(after, tab, self.version_env, self.default_version) if tab else {}
        got = flow_from_doc(derived, self.identity, self.rules, where="")
        have = parse_json(got.data) if isinstance(got, CanonicalFlow) else derived
        want = flow_from_doc(_clone(inc.doc), self.identity, self.rules, where="")
        where = _first_difference(parse_json(want.data), have) if isinstance(want, CanonicalFlow) else "/"
        return (f"flow {inc.key} cannot be imported: Node-RED would not hold it as written (it would differ at "
                f"{where}); a document must be as the driver exports it: the tab's label and version only in "
                "/name and /version, every config node and subflow the flow uses, and no others")

    @staticmethod
    def _owner(snap: _Snapshot, nid: str, inc: _Incoming, imports: dict[FlowKey, _Incoming]) -> str:
        for n in snap.index.nodes:
            if n.get("id") == nid:
                z = _str(n.get("z"))
                if n.get("type") == "tab":
                    return f"the tab of flow {snap.keys.get(nid, nid)}"
                if z in snap.keys:
                    return f"a node of flow {snap.keys[z]}"
                if z in snap.index.subflows:
                    return f"a node of subflow {z}"
                return f"{n.get('type')} node {nid}"
        other = next((o.key for o in imports.values() if o is not inc and nid in o.own_ids()), None)
        return f"flow {other}, imported in the same run" if other else "another node"


def _build(snap: _Snapshot, imports: dict[FlowKey, _Incoming], deletes: set[FlowKey]) -> list[dict]:
    """The configuration after the batch: live order kept, replaced tabs and definitions in place, new ones appended."""
    index = snap.index
    configs: dict[str, dict] = {}
    subflows: dict[str, list[dict]] = {}
    for inc in imports.values():
        configs.update(inc.configs)
        subflows.update({d: inc.definition(d) for d in inc.subflows})
    replaced = {snap.tab_of[k]: inc for k, inc in imports.items() if k in snap.tab_of}
    removed = set(replaced) | {snap.tab_of[k] for k in deletes if k in snap.tab_of}
    rewritten = set(subflows) & set(index.subflows)  # their old nodes go, the new ones come with the definition
    out: list[dict] = []
    for n in index.nodes:
        kind, nid, z = n.get("type"), _str(n.get("id")), _str(n.get("z"))
        if kind == "tab":
            if nid in removed:
                inc = replaced.get(nid or "")
                if inc is not None:
                    out += [inc.tab, *_by_id(inc.nodes)]
                continue
        elif kind == "subflow":
            if nid in subflows and index.subflows.get(nid) is n:
                out += subflows.pop(nid)
                continue
        elif z:
            if z in removed or z in rewritten:
                continue
        elif nid in configs and index.configs.get(nid) is n:
            out.append(configs.pop(nid))
            continue
        out.append(n)
    for ns in subflows.values():
        out += ns
    out += configs.values()
    for k, inc in imports.items():
        if k not in snap.tab_of:
            out += [inc.tab, *_by_id(inc.nodes)]
    if removed:
        out = _collect_garbage(out, {d for t in removed for d in index.uses(t)})
    return out


def _collect_garbage(nodes: list[dict], candidates: set[str]) -> list[dict]:
    """Drop the definitions that removed tabs used and nothing else uses any more."""
    index = _Index(nodes)
    candidates = {d for d in candidates if d in index.configs or d in index.subflows}
    if not candidates:
        return nodes
    inside = lambda n: n.get("id") in candidates or n.get("z") in candidates  # noqa: E731
    used: set[str] = set()
    stack = [r for n in nodes if not inside(n) for r in index.refs(n)]
    while stack:
        d = stack.pop()
        if d in used:
            continue
        used.add(d)
        for n in index.definition(d):
            stack.extend(index.refs(n))
    drop = candidates - used
    return [n for n in nodes if n.get("id") not in drop and n.get("z") not in drop]


def _short(oid: str | None) -> str:
    return "nothing" if oid is None else oid[:12]
