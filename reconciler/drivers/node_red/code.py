"""What Node-RED's flow documents hold as code and as layout (pure declarations, no I/O).

Read by :func:`reconciler.kinds.declarations`, so they hold for every Node-RED flow document
(``{"name", "version", "tab": {"type": "tab", …}, "nodes", "configs", "subflows"}``) in any
environment: a folder of exported tabs splits and diffs exactly as the Node-RED environment it is
promoted to, and merges between their branches see the same files.

Code (each becomes a sidecar file in git, :mod:`reconciler.sidecars`):

- a ``function`` node's ``func``, ``initialize`` and ``finalize``: ``.js``;
- a ``template`` node's ``template``, by its ``format`` (``html`` → ``.html``, ``handlebars`` (shown
  as "mustache") → ``.mustache``, ``javascript`` → ``.js``, ``markdown`` → ``.md``…; ``.txt`` for
  plain text or a format not listed);
- a dashboard ``ui_template`` (1.x, ``.html``) or ``ui-template`` (2.x, ``.vue``) node's ``format``,
  which holds its template;
- any node's, config node's, subflow's or the tab's ``info`` (the description, and a comment
  node's text): ``.md``.

Layout: ``x``, ``y``, ``w``, ``h`` of every node (groups have a size) and of a subflow's input,
output and status ports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.codefields import CodeField, Declared

__all__ = ["NODE_RED", "is_node_red_document", "TEMPLATE_EXTENSIONS"]

_LISTS = ("nodes", "configs", "subflows")
#: a template node's format -> its sidecar's extension
TEMPLATE_EXTENSIONS = {"handlebars": "mustache", "html": "html", "json": "json", "javascript": "js", "css": "css",
                       "markdown": "md", "php": "php", "python": "py", "sql": "sql", "yaml": "yaml", "text": "txt"}


def is_node_red_document(doc: Any) -> bool:
    """A flow document the node-red driver exports: its ``tab`` is a Node-RED tab."""
    return isinstance(doc, dict) and isinstance(doc.get("tab"), dict) and doc["tab"].get("type") == "tab"


def _typed(*types: str):
    return lambda node: node.get("type") in types


def _template_ext(node: Mapping[str, Any]) -> str:
    fmt = node.get("format")
    return TEMPLATE_EXTENSIONS.get(fmt, "txt") if isinstance(fmt, str) else "txt"


def _code() -> tuple[CodeField, ...]:
    fields: list[CodeField] = []
    for where in ("nodes", "subflows"):
        fields += [CodeField(f"/{where}/*/{f}", "js", _typed("function")) for f in ("func", "initialize", "finalize")]
        fields.append(CodeField(f"/{where}/*/template", _template_ext, _typed("template")))
        fields.append(CodeField(f"/{where}/*/format", "html", _typed("ui_template")))
        fields.append(CodeField(f"/{where}/*/format", "vue", _typed("ui-template")))
    fields += [CodeField(f"/{where}/*/info", "md") for where in _LISTS]
    fields.append(CodeField("/tab/info", "md"))
    return tuple(fields)


def _layout() -> tuple[str, ...]:
    out = [f"/{where}/*/{f}" for where in ("nodes", "subflows") for f in ("x", "y", "w", "h")]
    out += [f"/subflows/*/{port}/*/{f}" for port in ("in", "out") for f in ("x", "y")]
    out += [f"/subflows/*/status/{f}" for f in ("x", "y")]
    return tuple(out)


NODE_RED = Declared(code=_code(), layout=_layout(), applies=is_node_red_document, name="node-red")
