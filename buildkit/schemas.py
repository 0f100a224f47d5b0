"""Validate host-side inputs against the JSON Schemas in the repository.

The host CLI depends on jsonschema (the in-image verifier does not, so it checks
its own inputs by hand); each problem becomes one line naming the file and the
key path, the most relevant error first (jsonschema's best_match).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


class SchemaError(ValueError):
    """An input that does not match its schema, phrased as one line."""


@cache
def _validator(package: str, name: str) -> Any:
    import jsonschema

    ref = resources.files(package).joinpath("schema", name)
    schema = json.loads(ref.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def check(instance: Any, package: str, name: str, where: str) -> None:
    """Raise SchemaError with `where: key.path: message` when `instance` does not match."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator(package, name).iter_errors(instance))
    if error is None:
        return
    parts = [str(part) for part in error.absolute_path]
    key, message = _phrase(error, parts)
    raise SchemaError(f"{where}: {key or '(top level)'}: {message}")


_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "true/false", "array": "a list", "object": "a mapping",
               "null": "null"}


def _phrase(error: Any, parts: list[str]) -> tuple[str, str]:
    """The key path and message in the words the rest of efakit uses."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    if error.validator == "additionalProperties" and isinstance(value, dict):
        known = sorted(schema.get("properties", {}))
        extra = sorted(str(k) for k in value if k not in schema.get("properties", {}))
        if extra and known:
            return ".".join([*parts, extra[0]]), f"unknown key (known: {', '.join(known)})"
    if error.validator == "required" and isinstance(value, dict):
        missing = [k for k in error.validator_value if k not in value]
        if missing:
            return ".".join([*parts, missing[0]]), "missing"
    if error.validator == "type":
        wanted = error.validator_value
        wanted = wanted if isinstance(wanted, list) else [wanted]
        names = " or ".join(_TYPE_NAMES.get(w, w) for w in wanted)
        return ".".join(parts), f"expected {names}, got {type(value).__name__}"
    if "propertyNames" in error.schema_path:  # a key itself is wrong: name it
        parts = [*parts, str(value)]
        if error.validator == "enum":
            return ".".join(parts), f"unknown key (known: {', '.join(error.validator_value)})"
        return ".".join(parts), schema.get("description") or "not an allowed key"
    if error.validator in ("pattern", "maxLength") and schema.get("description"):
        # "'a\nRUN x' does not match '^[^...]*$'" says less than what was expected.
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return ".".join(parts), schema["description"].replace("{value}", shown)
    if error.validator == "const":
        return ".".join(parts), f"expected {error.validator_value!r}, got {value!r}"
    if error.validator in ("exclusiveMinimum", "minimum"):
        return ".".join(parts), f"expected a positive number, got {value!r}"
    message = " ".join(error.message.split())
    return ".".join(parts), message if len(message) <= 200 else message[:197] + "..."
