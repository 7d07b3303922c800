"""The split form of a flow in git: its JSON, and its code as sidecar files beside it (pure).

A flow ``flows/<name>/<version>.json`` may have a folder ``flows/<name>/<version>/`` of sidecar
files, one per code field (:mod:`reconciler.codefields` says which fields and names the files).
In the JSON the field holds a reference, ``{"$sidecar": "<file>"}``, in place of the text:

- :func:`split` turns a document into its :class:`StoredFlow` (canonical JSON with references, and
  the files); :func:`join` puts the text back, so drivers, the plan and every check see the whole
  document, exactly as it was: ``join(split(d)) == d``;
- **a sidecar holds the exact text plus one newline**: the file is the field's text in UTF-8
  followed by ``\\n``; reading drops exactly one trailing ``\\n`` (a file without one, as an editor
  may save it, is taken as it is). So a text ending without a newline (a function body) gives a
  file ending with one, a text ending with ``\\n`` a file ending with ``\\n\\n``, and every text
  comes back byte for byte (``\\r`` and CRLF included);
- an object of the document that only looks like a reference (a single key ``$sidecar``,
  ``$$sidecar``…) is stored with one more ``$`` and given back with one less, so no document is
  ever misread;
- reading refuses, naming the file: a reference that leaves the flow's folder or is not a file
  name, a referenced file that is missing, a file no field refers to, a folder entry that is not a
  regular file (a symlink, a submodule, a folder), names differing only in case, non-UTF-8 text.

A flow's git identity (:func:`entry_id`) is its JSON blob's id, with ``+<tree id>`` of its sidecar
folder when it has one: it changes when the JSON or any sidecar changes, so what is cached by it is
read again exactly when something changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.canonical import InvalidJSON, Rules, canonicalize, format_pointer, parse_json
from reconciler.codefields import MAX_NAME, Declared, code_in
from reconciler.errors import Problem
from reconciler.flows import CanonicalFlow, FlowKey, Identity, flow_from_doc, looks_like_sql, sql_export

__all__ = ["REF", "StoredFlow", "split", "join", "read_stored", "encode_text", "decode_text", "entry_id",
           "entry_parts", "sidecar_folder", "first_problem"]

REF = "$sidecar"
_REF_SHAPED = re.compile(r"\$+sidecar")
_REF_BYTES = b'sidecar"'
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass(frozen=True)
class StoredFlow:
    """A flow as git stores it: its JSON and its sidecar files (name -> bytes). ``bad``: entries of its
    sidecar folder that are not regular files, with what they are (a symlink, a folder, a submodule)."""

    json: bytes
    sidecars: Mapping[str, bytes] = field(default_factory=dict)
    bad: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_split(self) -> bool:
        return bool(self.sidecars or self.bad)

    def text(self) -> bytes:
        """Everything it holds, for byte-level pre-checks (a placeholder, a secret value)."""
        return self.json if not self.sidecars else self.json + b"\n".join(self.sidecars.values())

    def size(self) -> int:
        return len(self.json) + sum(len(v) for v in self.sidecars.values())


def entry_id(json_oid: str, tree_oid: str | None = None) -> str:
    """A flow's git identity: the JSON blob's id, ``+`` its sidecar folder's tree id when it has one."""
    return json_oid if tree_oid is None else f"{json_oid}+{tree_oid}"


def entry_parts(entry: str) -> tuple[str, str | None]:
    """(JSON blob id, sidecar tree id or None) of :func:`entry_id`'s value."""
    json_oid, _, tree = entry.partition("+")
    return json_oid, (tree or None)


def sidecar_folder(json_path: str) -> str:
    """``flows/orders/1`` for ``flows/orders/1.json`` (``branch:`` prefixes kept)."""
    return json_path[: -len(".json")] if json_path.endswith(".json") else json_path


def encode_text(text: str) -> bytes:
    """A sidecar file's bytes: the text and one newline."""
    return text.encode("utf-8") + b"\n"


def decode_text(data: bytes) -> str:
    """A sidecar's text: its UTF-8 without one trailing newline. Raises UnicodeDecodeError."""
    text = data.decode("utf-8")
    return text[:-1] if text.endswith("\n") else text


# -- writing ---------------------------------------------------------------------------------


def split(doc: Any, rules: Rules, declared: Sequence[Declared]) -> StoredFlow:
    """The git form of a document: canonical (``rules`` applied) with its code in sidecar files.
    ``doc`` is modified. Without code (or ``declared`` empty) it is one canonical JSON file."""
    data = canonicalize(doc, rules)
    found = code_in(doc, declared) if declared else []
    if not found and _REF_BYTES not in data:
        return StoredFlow(data)
    if _REF_BYTES in data:  # an object of the document that looks like a reference: escape it first
        _escape(doc)
    files: dict[str, bytes] = {}
    for path, name in found:
        parent = doc
        for seg in path[:-1]:
            parent = parent[seg]
        files[name] = encode_text(parent[path[-1]])
        parent[path[-1]] = {REF: name}
    return StoredFlow(canonicalize(doc, Rules()), files)


def _escape(node: Any) -> None:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            if len(n) == 1:
                (k,) = n
                if _REF_SHAPED.fullmatch(k):
                    n["$" + k] = n.pop(k)
            stack.extend(v for v in n.values() if isinstance(v, (dict, list)))
        elif isinstance(n, list):
            stack.extend(v for v in n if isinstance(v, (dict, list)))


# -- reading ---------------------------------------------------------------------------------


def _ref_problem(name: Any) -> str | None:
    """Why a reference's value cannot name a file in the flow's folder (None: it can)."""
    if not isinstance(name, str) or name == "":
        return "must be a file name (a non-empty string)"
    if "/" in name or "\\" in name or name in (".", ".."):
        return "leaves the flow's folder: a sidecar is a file directly in it (no '/', '\\' or '..')"
    if _BAD_NAME.search(name) or name.startswith(".") or len(name.encode("utf-8", "replace")) > MAX_NAME:
        return f"is not a usable file name (no control characters, not hidden, at most {MAX_NAME} bytes)"
    return None


def join(doc: Any, stored: StoredFlow, *, where: str, flow: str = "") -> tuple[Any, dict[str, str], list[Problem]]:
    """The whole document: every reference replaced by its sidecar's text, escaped objects given back.

    ``where`` names the JSON file (``branch:flows/orders/1.json``); returns (document, pointer ->
    where of the sidecar it came from, problems naming the files)."""
    if not stored.is_split and _REF_BYTES not in stored.json and b"\\u" not in stored.json:
        return doc, {}, []  # provably no reference (not even one spelled with escapes)
    folder = sidecar_folder(where)
    problems: list[Problem] = []
    texts: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in sorted(stored.sidecars):
        data = stored.sidecars[name]
        low = name.lower()
        if low in seen:
            problems.append(Problem(f"{folder}/{name}", f"differs only in case from {seen[low]}: they collide on a "
                                    "case-insensitive checkout; rename one (and its reference)", flow=flow))
        seen.setdefault(low, name)
        try:
            texts[name] = decode_text(data)
        except UnicodeDecodeError as exc:
            problems.append(Problem(f"{folder}/{name}", f"not UTF-8 text ({exc.reason} at byte {exc.start}); a "
                                    "sidecar holds the text of one field", flow=flow))
    for name, what in sorted(stored.bad.items()):
        problems.append(Problem(f"{folder}/{name}", f"{what}, not a file; a flow's folder holds only its sidecar "
                                "files", flow=flow))
    used: set[str] = set()
    refs: dict[str, str] = {}

    def walk(doc: Any) -> Any:
        # depth first, in document order, without a call per container: (parent, key, node, path)
        holder = [doc]
        stack: list[tuple[Any, Any, Any, tuple[Any, ...]]] = [(holder, 0, doc, ())]
        while stack:
            parent, key, node, path = stack.pop()
            if isinstance(node, dict):
                if len(node) == 1:
                    (k,) = node
                    if k == REF:
                        parent[key] = resolve(node[k], path)
                        continue
                    if _REF_SHAPED.fullmatch(k):  # an escaped look-alike: one '$' less
                        inner = {k[1:]: node[k]}
                        parent[key] = inner
                        stack.append((inner, k[1:], node[k], (*path, k[1:])))
                        continue
                children = [(node, k, v, (*path, k)) for k, v in node.items() if isinstance(v, (dict, list))]
            elif isinstance(node, list):
                children = [(node, i, v, (*path, i)) for i, v in enumerate(node) if isinstance(v, (dict, list))]
            else:
                continue
            children.reverse()
            stack.extend(children)
        return holder[0]

    def resolve(name: Any, path: tuple[Any, ...]) -> Any:
        pointer = format_pointer(path)
        why = _ref_problem(name)
        if why is not None:
            problems.append(Problem(where, f"the sidecar reference {name!r} {why}", pointer, flow))
            return None
        used.add(name)
        if name in texts:
            refs[pointer] = f"{folder}/{name}"
            return texts[name]
        if name not in stored.sidecars and name not in stored.bad:
            problems.append(Problem(f"{folder}/{name}", f"missing: {where.rpartition(':')[2]} refers to it at "
                                    f"{pointer or '/'}; add the file, or put the text back in the JSON", flow=flow))
        return None

    doc = walk(doc)
    for name in sorted(set(stored.sidecars) - used):
        problems.append(Problem(f"{folder}/{name}", f"no field of {where.rpartition(':')[2]} refers to this sidecar; "
                                f'delete it, or put {{"{REF}": "{name}"}} where its text belongs', flow=flow))
    return doc, refs, problems


def first_problem(problems: Sequence[Problem]) -> Problem:
    """The first of several problems, saying how many more there are (as every reader reports one)."""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return replace(problems[0], message=problems[0].message + more)


def read_stored(
    stored: StoredFlow,
    identity: Identity,
    rules: Rules,
    *,
    where: str,
    expect: FlowKey | None = None,
    validate: Callable[[Any], list[tuple[str, str]]] | None = None,
    render: Callable[[Any], tuple[Any, list[tuple[str, str]]]] | None = None,
) -> CanonicalFlow | Problem:
    """:func:`reconciler.flows.read_flow` for a flow as git stores it: parse, join its sidecars, identify,
    render, validate, canonicalise. A problem in a field that came from a sidecar names that file."""
    try:
        doc = parse_json(stored.json)
    except InvalidJSON as exc:
        if looks_like_sql(stored.json):
            return Problem(where, sql_export("this file"), "", str(expect or ""))
        return Problem(where, f"{exc}; fix the file's syntax", exc.pointer, str(expect or ""))
    doc, refs, problems = join(doc, stored, where=where, flow=str(expect or ""))
    if problems:
        return first_problem(problems)
    got = flow_from_doc(doc, identity, rules, where=where, expect=expect, validate=validate, render=render)
    if isinstance(got, Problem) and got.pointer in refs:
        got = replace(got, where=refs[got.pointer])
    return got
