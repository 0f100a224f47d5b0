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
    path = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    message = " ".join(error.message.split())
    if len(message) > 200:
        message = message[:197] + "..."
    raise SchemaError(f"{where}: {path}: {message}")
