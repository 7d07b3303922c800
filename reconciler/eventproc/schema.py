"""The published JSON Schema of event-processing flows, and its validator.

The one home of the schema is ``manifests/schemas/flow.event-processing.schema.json``;
the package carries it as ``reconciler/schemas/flow.event-processing.schema.json``
(a link to that file in a source checkout, a copy in a built wheel). It is read
once, on first use.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

__all__ = ["SCHEMA_FILE", "load_schema", "validator"]

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "flow.event-processing.schema.json"


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def validator() -> jsonschema.protocols.Validator:
    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)
