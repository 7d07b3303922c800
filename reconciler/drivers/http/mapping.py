"""The declarative mapping, interpreted (pure, no I/O): which request a flow becomes, what an answer holds.

The settings (:mod:`.settings`) say *where* things are, as URL templates and
JSON pointers; this module says what they mean, once, for the driver and for
the settings' validation:

- **templates**: a path appended to the base URL; ``{name}`` and ``{version}``
  are replaced by the flow's values, ``{id}`` by the platform's own id of the
  flow (read from the listing at ``list.id``), each percent-encoded as exactly
  one path segment (``/`` is ``%2F``; ``.`` and ``..`` are escaped, so no dot
  segment is resolved away on the way);
- **the listing**: the array at ``list.items`` of each page, where each item was
  found, the key and the id of an item (``list.name``/``list.version``, else the
  identity's pointers; ``list.id``), and the next page: the link at
  ``list.next``, followed only on the same origin (the token must never travel
  to another host), or the cursor at ``list.cursor.from`` sent back as a query
  parameter; a listing narrowed to one name (``list.name_query``);
- **the export**: the flow at ``export.flow`` of the answer;
- **the writes**: method, path (with the Override switch as a query parameter,
  if so configured) and body: the flow at the route's ``flow``, the target name,
  the version and the Override boolean at their pointers
  (:func:`reconciler.pointers.put`), written with the standard library so
  integers beyond 64 bits survive. ``create`` and ``update`` routes, where
  given, replace the import with override off and on;
- **the delete**: method and path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

from reconciler import pointers
from reconciler.canonical import parse_json
from reconciler.errors import StallError
from reconciler.flows import FlowInvalid, FlowKey, Identity

if TYPE_CHECKING:
    from .settings import Body, HttpEnvironment

__all__ = ["FLOW_FIELDS", "ID_FIELDS", "HttpMapping", "Page", "Request", "check_template", "expand", "json_body",
           "placeholders", "segment"]

#: the placeholders a flow's templates may name (filled by :meth:`HttpMapping.values`)
FLOW_FIELDS: tuple[str, ...] = ("name", "version")
#: ... and those of templates that may address a flow by the platform's own id
ID_FIELDS: tuple[str, ...] = ("name", "version", "id")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def check_template(value: str, placeholders: tuple[str, ...] = FLOW_FIELDS) -> str:
    """Validate a path template (a settings validator): it starts with ``/`` and names only ``placeholders``."""
    if not value.startswith("/"):
        raise ValueError("must start with '/' (it is appended to url)")
    rest = _PLACEHOLDER.sub(lambda m: "" if m.group(1) in placeholders else m.group(0), value)
    if "{" in rest or "}" in rest:
        if not placeholders:
            raise ValueError("no placeholders here")
        names = [f"{{{p}}}" for p in placeholders]
        raise ValueError("only " + ", ".join(names[:-1]) + " and " + names[-1] + " may appear in braces")
    if not value.isascii() or any(c.isspace() or ord(c) < 0x20 for c in value) or "#" in value:
        raise ValueError("no spaces, control characters, non-ASCII or '#' (percent-encode them)")
    return value


def placeholders(template: str) -> set[str]:
    """The placeholders a template names."""
    return set(_PLACEHOLDER.findall(template))


def segment(value: str) -> str:
    """Percent-encode a value as exactly one path segment (or query value)."""
    if value in (".", ".."):
        return value.replace(".", "%2E")  # dot segments would be resolved away by servers and proxies
    return quote(value, safe="")


def expand(template: str, values: Mapping[str, str]) -> str:
    """A checked template with each ``{placeholder}`` replaced by its value, as one segment."""
    return _PLACEHOLDER.sub(lambda m: segment(values[m.group(1)]), template)


def with_query(path: str, param: str, value: str) -> str:
    """``path`` with one more query parameter (``value`` percent-encoded)."""
    return path + ("&" if "?" in path else "?") + f"{param}={segment(value)}"


def json_body(doc: Any) -> bytes:
    # The standard library, not orjson: flows may hold integers beyond 64 bits.
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class Request:
    """A request the mapping describes; ``path`` is under the base URL (query included)."""

    method: str
    path: str
    body: bytes | None = None


@dataclass(frozen=True)
class Page:
    """One page of the listing."""

    items: tuple[tuple[Any, str], ...]  # (item, where it was found: the page's URL and the item's pointer)
    next: str | None  # the next page's request target (path and query, same origin), or None


class HttpMapping:
    """One environment's :class:`~.settings.HttpEnvironment`, as requests to send and readings of answers."""

    def __init__(self, env: HttpEnvironment):
        self.env = env
        ident = env.flow_identity
        #: where a listed summary keeps the name and version
        self.summary = Identity(env.list_.name or ident.name, env.list_.version or ident.version, ident.fixed)
        routes = (env.export, env.update, env.delete)
        #: the routes address flows by the platform's id: it must be known before a read or a write
        self.by_id = any(r is not None and "id" in placeholders(r.path) for r in routes)

    def values(self, key: FlowKey, id_: str | None = None) -> dict[str, str]:
        """What fills the placeholders of a flow's templates."""
        return {"name": key.name, "version": key.version, "id": id_ or ""}

    # -- the listing

    def listing(self, name: str | None = None) -> str:
        """The first page's path; narrowed to ``name`` with ``list.name_query`` when given and configured."""
        route = self.env.list_
        if name is None or route.name_query is None:
            return route.path
        return with_query(route.path, route.name_query, name)

    def page(self, doc: Any, url: str, origin: str, first: str = "") -> Page:
        """The items of the page at ``url`` and the next page's target; StallError when the answer does not fit.
        ``first`` is the listing's first request (a cursor is sent on it)."""
        route = self.env.list_
        items = pointers.get(doc, route.items)
        if not isinstance(items, list):
            raise StallError(f"GET {url}: no array at {route.items or 'the top'} of the answer; check list.items")
        return Page(tuple((item, f"{url}#{route.items}/{i}") for i, item in enumerate(items)),
                    self._next_page(doc, url, origin, first))

    def _next_page(self, doc: Any, url: str, origin: str, first: str) -> str | None:
        route = self.env.list_
        pointer = route.next if route.cursor is None else route.cursor.from_
        if pointer is None:
            return None
        link = pointers.get(doc, pointer)
        if link in (None, "", pointers.MISSING):
            return None
        if route.cursor is not None:
            if not isinstance(link, (str, int)) or isinstance(link, bool):
                raise StallError(f"GET {url}: list.cursor.from points at a {type(link).__name__}, not a cursor")
            return with_query(first, route.cursor.param, str(link))
        if not isinstance(link, str):
            raise StallError(f"GET {url}: list.next points at a {type(link).__name__}, not a link")
        parts = urlsplit(urljoin(url, link))
        if f"{parts.scheme}://{parts.netloc}" != origin:
            # The token must never travel to another host.
            raise StallError(f"GET {url}: the next page is on another host ({parts.netloc}); refused")
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def summary_key(self, item: Any) -> FlowKey:
        """The key of a listed summary; raises FlowInvalid."""
        return self.summary.key_of(item)

    def item_id(self, item: Any) -> str | None:
        """The platform's id of a listed item (None without ``list.id``); raises FlowInvalid."""
        pointer = self.env.list_.id
        if pointer is None:
            return None
        found = pointers.get(item, pointer)
        if isinstance(found, bool) or not isinstance(found, (str, int)) or found == "":
            raise FlowInvalid(f"a listed item has no id at {pointer} (list.id)", pointer)
        return str(found)

    # -- one flow

    def export_path(self, key: FlowKey, id_: str | None = None) -> str:
        assert self.env.export is not None
        return expand(self.env.export.path, self.values(key, id_))

    def flow_of(self, doc: Any) -> Any:
        """The flow in an export's answer, or :data:`reconciler.pointers.MISSING`."""
        assert self.env.export is not None
        return pointers.get(doc, self.env.export.flow)

    def import_request(self, key: FlowKey, data: bytes, override: bool) -> Request:
        """The import of ``data`` (canonical bytes) as ``key``, with the Override switch on or off."""
        route = self.env.import_
        assert route is not None and (route.override is not None or not override)
        body = _body(route, key, data)
        flag = route.override
        if flag is not None and flag.field is not None:
            body = pointers.put(body, flag.field, override)
        path = expand(route.path, self.values(key))
        if flag is not None and flag.query:
            path = with_query(path, flag.query, "true" if override else "false")
        return Request(route.method, path, json_body(body))

    def create_request(self, key: FlowKey, data: bytes) -> Request:
        """A new flow: the create route, else the import with override off."""
        route = self.env.create
        if route is None:
            return self.import_request(key, data, False)
        return Request(route.method, expand(route.path, self.values(key)), json_body(_body(route, key, data)))

    def update_request(self, key: FlowKey, data: bytes, id_: str | None) -> Request:
        """An existing flow replaced: the update route (in place, by id where it says so), else the import
        with override on."""
        route = self.env.update
        if route is None:
            return self.import_request(key, data, True)
        return Request(route.method, expand(route.path, self.values(key, id_)), json_body(_body(route, key, data)))

    def delete_request(self, key: FlowKey, id_: str | None = None) -> Request | None:
        """The delete of ``key``; None when the mapping has no delete route."""
        route = self.env.delete
        return None if route is None else Request(route.method, expand(route.path, self.values(key, id_)))


def _body(route: Body, key: FlowKey, data: bytes) -> Any:
    body = pointers.put({}, route.flow, parse_json(data))
    for pointer, value in ((route.name, key.name), (route.version, key.version)):
        if pointer is not None:
            body = pointers.put(body, pointer, value)
    return body
