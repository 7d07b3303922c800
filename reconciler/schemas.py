"""JSON Schemas of flows: where they live, and the one validator every check uses.

Flow schemas ship inside the package (``reconciler/schemas/``: links to the one
published copy under ``manifests/schemas/`` in a source checkout, copies in a
built wheel), so a ``pip install`` has them. An environment's flows are checked against its own
``schema``, else the schema of its driver's kind (``flow.<driver>.schema.json``),
else ``flow.schema.json``.

Messages never quote a value: flows are validated after their placeholders
are rendered, so the value a schema complains about may be a secret.
``'pr0d-pa55w0rd' is too long`` is reported as ``the value is too long``;
pointers are RFC 6901 (``~0``, ``~1`` escaped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.canonical import format_pointer
from reconciler.errors import StallError

__all__ = ["Validator", "load_validator", "schema_for", "check_usable", "packaged_schema"]
_MINIMAL_SCHEMA = {
    "type": "object",
    "required": ["name", "version"],
    "properties": {"name": {"type": "string", "minLength": 1}, "version": {"type": ["string", "number"]}},
}


def packaged_schema(name: str) -> bytes | None:
    """The bytes of a schema shipped with the package (None when there is no such file)."""
    from importlib import resources  # here: most commands never read one (~3 ms of a process's start)

    try:
        return resources.files("reconciler").joinpath("schemas", name).read_bytes()
    except (FileNotFoundError, OSError):
        return None


@dataclass(frozen=True)
class Validator:
    """``validator(doc) -> [(pointer, message)]``, sorted by pointer; messages hold no values."""

    name: str  # shown in messages: the schema file's name
    check: Callable[[Any], list[tuple[str, str]]]

    def __call__(self, doc: Any) -> list[tuple[str, str]]:
        return self.check(doc)


def _message(error: Any) -> str:
    """jsonschema's message with the offending value replaced by what kind of value it is."""
    message = str(error.message)
    instance = error.instance
    kind = "the object" if isinstance(instance, dict) else "the array" if isinstance(instance, list) else "the value"
    text = repr(instance)
    if text in message:
        message = message.replace(text, kind)
    return message


def _compile(schema: Any, name: str) -> Validator:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)

    def check(doc: Any) -> list[tuple[str, str]]:
        errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
        return [(format_pointer(e.absolute_path), _message(e)) for e in errors]

    return Validator(name, check)


def load_validator(path: Path | None) -> Validator:
    """The validator of a schema file; ``None``: the built-in minimum (name and version)."""
    import orjson

    if path is None:
        return _compile(_MINIMAL_SCHEMA, "flow.schema.json")
    try:
        schema = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise StallError(f"cannot read the JSON Schema {path}: {exc}") from exc
    return _compile(schema, Path(path).name)


def _packaged(name: str) -> Validator | None:
    import orjson

    raw = packaged_schema(name)
    return None if raw is None else _compile(orjson.loads(raw), name)


def schema_for(schema: Path | None, driver: str | None) -> Validator:
    """What a flow of an environment must satisfy: its own schema, its kind's, the default."""
    if schema is not None:
        return load_validator(schema)
    if driver is not None:
        got = _packaged(f"flow.{driver}.schema.json")
        if got is not None:
            return got
    return _packaged("flow.schema.json") or load_validator(None)


def check_usable(path: Path) -> str | None:
    """Why a schema file cannot be used (None when it can)."""
    import jsonschema
    import orjson

    try:
        schema = orjson.loads(path.read_bytes())
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except FileNotFoundError:
        return "no such file"
    except (OSError, ValueError, jsonschema.exceptions.SchemaError) as exc:
        return f"not a usable JSON Schema ({str(exc).splitlines()[0][:200]})"
    return None
