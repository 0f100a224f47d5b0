"""Records (results, sweep reports, baselines, image env records, policies) are checked
against their JSON Schema (verify/schema/*.schema.json) before any code uses them.

Why a small checker here instead of the jsonschema package: the verifier runs inside
images whose only dependencies are click, PyYAML and nvidia-ml-py, and `efa-verify
env --shell` runs at every container start, so it cannot import jsonschema.  Using
jsonschema on the host and something else in the image would give one record two
verdicts.  So both sides use this checker, which implements exactly the keywords our
schemas use; a schema with any other keyword is refused when it is loaded (a keyword
the checker ignored would silently check nothing), and tests/test_promises_records.py
compares it with jsonschema on generated records.  It is stricter than JSON Schema in
four ways, each a promise of the README: a number must be finite (`1e999` parses
as inf), an integer is a JSON integer (not 1.0, not true), a string is text (no NUL,
no lone surrogate from a `\\ud800` escape) and `$` in a pattern is the end of the
string as in ECMA-262 (Python's `$` also matches before a final newline).

A record that does not fit is one `RecordError` line naming the file and key path;
nothing here raises KeyError, TypeError or RecursionError on hostile input, and files
come through the boundary's one reader (size cap, no FIFOs or devices).
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from verify.boundary.files import MAX_INPUT_BYTES, ReadError, read_text
from verify.boundary.values import shown

# Keywords that only describe (no effect on validity).
_ANNOTATIONS = {"$schema", "$id", "title", "description", "default", "examples", "$comment",
                "$defs"}
_KEYWORDS = {"type", "properties", "required", "additionalProperties", "propertyNames",
             "items", "prefixItems", "minItems", "maxItems", "enum", "const", "pattern",
             "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
             "exclusiveMaximum", "anyOf", "$ref"}
_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "true/false", "array": "a list", "object": "a mapping",
               "null": "null"}


class RecordError(ValueError):
    """A record that cannot be used; str() is one line."""


class _Mismatch(Exception):
    def __init__(self, path: list[str], message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


@cache
def schema(name: str, package: str = "verify") -> dict:
    """`<package>/schema/<name>.schema.json`, its keywords checked against the subset
    this module implements."""
    ref = resources.files(package).joinpath("schema", f"{name}.schema.json")
    loaded = json.loads(ref.read_text(encoding="utf-8"))
    _check_keywords(loaded, name)
    return loaded


def _check_keywords(node: Any, name: str) -> None:
    if isinstance(node, list):
        for item in node:
            _check_keywords(item, name)
        return
    if not isinstance(node, dict):
        return
    unknown = set(node) - _KEYWORDS - _ANNOTATIONS
    if unknown:
        raise RuntimeError(f"schema {name} uses {sorted(unknown)}, which "
                           "verify/boundary/records.py does not implement")
    for key, value in node.items():
        if key in ("properties", "$defs"):
            for sub in value.values():
                _check_keywords(sub, name)
        elif key in ("items", "additionalProperties", "propertyNames", "prefixItems", "anyOf"):
            _check_keywords(value, name)


def check(instance: Any, name: str, where: str, package: str = "verify") -> Any:
    """`instance` when it fits schema `name`; else RecordError `where: key.path: why`."""
    root = schema(name, package)
    try:
        _validate(instance, root, root, [])
    except _Mismatch as exc:
        key = ".".join(exc.path) or "(top level)"
        raise RecordError(f"{where}: {key}: {exc.message}") from None
    except RecursionError:
        raise RecordError(f"{where}: nested too deep") from None
    return instance


def load(path: str | Path, name: str, what: str, limit: int = MAX_INPUT_BYTES,
         package: str = "verify") -> Any:
    """Read a JSON record through the one reader and check it against schema `name`.

    `what` names the record in messages ("efa-verify result", "baseline")."""
    try:
        text = read_text(path, limit)
    except ReadError as exc:
        raise RecordError(f"cannot read the {what}: {exc}") from None
    where = f"{path}: not a valid {what}"
    return check(parse_json(text, where), name, where, package)


def parse_json(text: str, where: str) -> Any:
    """JSON with NaN/Infinity, numbers that overflow to inf and nesting past the
    recursion limit each refused in one line."""
    def constant(word: str) -> None:
        raise ValueError(f"{word} is not JSON")

    try:
        return json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{where}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise RecordError(f"{where}: not JSON this program reads (nested too deep)") from None
    except ValueError as exc:  # the constant above; int() past its digit limit
        raise RecordError(f"{where}: not JSON ({' '.join(str(exc).split())[:120]})") from None


def ecma_pattern(pattern: str) -> re.Pattern[str]:
    """A schema pattern compiled so `$` (outside a character class, unescaped) means the
    end of the string, as in ECMA-262 without the multiline flag."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        out.append(r"\Z" if char == "$" and not in_class else char)
        i += 1
    return _compiled("".join(out))


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _type_ok(value: Any, wanted: str) -> bool:
    if wanted == "null":
        return value is None
    if wanted == "boolean":
        return isinstance(value, bool)
    if wanted == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if wanted == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if wanted == "string":
        return isinstance(value, str)
    if wanted == "array":
        return isinstance(value, list)
    if wanted == "object":
        return isinstance(value, dict)
    raise RuntimeError(f"unknown type {wanted!r} in a schema")


def _resolve(ref: str, root: dict) -> dict:
    if not ref.startswith("#/"):
        raise RuntimeError(f"only local $ref are supported, not {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0, lists and mappings item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k])
                                                                    for k in a)
    return type(a) is type(b) and a == b


def _validate(value: Any, node: Any, root: dict, path: list[str]) -> None:
    """Raise _Mismatch at the first keyword `value` fails (schema order, then keys)."""
    if node is True or node == {}:
        return
    if node is False:
        raise _Mismatch(path, "not allowed here")
    if "$ref" in node:
        _validate(value, _resolve(node["$ref"], root), root, path)
    if isinstance(value, float) and not math.isfinite(value):
        raise _Mismatch(path, f"{value} is not a finite number")
    if isinstance(value, str) and not _is_text(value):
        raise _Mismatch(path, f"{shown(value)} is not text (a NUL or a lone surrogate)")
    if "type" in node:
        wanted = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(_type_ok(value, w) for w in wanted):
            names = " or ".join(_TYPE_NAMES.get(w, w) for w in wanted)
            raise _Mismatch(path, f"expected {names}, got {_json_type(value)}")
    if "const" in node and not _equal(value, node["const"]):
        raise _Mismatch(path, f"expected {node['const']!r}, got {shown(value)}")
    if "enum" in node and not any(_equal(value, option) for option in node["enum"]):
        raise _Mismatch(path, f"{shown(value)} is not one of "
                              f"{', '.join(map(str, node['enum']))}")
    if "anyOf" in node:
        _any_of(value, node["anyOf"], root, path)
    if isinstance(value, str):
        _string(value, node, path)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _number(value, node, path)
    elif isinstance(value, list):
        _array(value, node, root, path)
    elif isinstance(value, dict):
        _object(value, node, root, path)


def _is_text(value: str) -> bool:
    """No NUL (no C string, no environment variable holds one) and no lone surrogate
    (JSON's \\ud800 escape; no UTF-8 output can carry it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _type_ok(value, name):
            return name
    return type(value).__name__


def _any_of(value: Any, options: list, root: dict, path: list[str]) -> None:
    first: _Mismatch | None = None
    for option in options:
        try:
            _validate(value, option, root, path)
            return
        except _Mismatch as exc:
            first = first or exc
    if first is not None:
        raise first


def _string(value: str, node: dict, path: list[str]) -> None:
    if "minLength" in node and len(value) < node["minLength"]:
        raise _Mismatch(path, f"{shown(value)} is shorter than {node['minLength']}")
    if "maxLength" in node and len(value) > node["maxLength"]:
        raise _Mismatch(path, f"{shown(value)} is longer than {node['maxLength']}")
    if "pattern" in node and not ecma_pattern(node["pattern"]).search(value):
        described = node.get("description", "")
        if "{value}" in described:
            raise _Mismatch(path, described.replace("{value}", shown(value)))
        raise _Mismatch(path, f"{shown(value)} does not match {node['pattern']}")


def _number(value: float, node: dict, path: list[str]) -> None:
    for key, fails, words in (("minimum", lambda v, b: v < b, "less than"),
                              ("maximum", lambda v, b: v > b, "more than"),
                              ("exclusiveMinimum", lambda v, b: v <= b, "at most"),
                              ("exclusiveMaximum", lambda v, b: v >= b, "at least")):
        if key in node and fails(value, node[key]):
            raise _Mismatch(path, f"{value!r} is {words} {node[key]!r}")


def _array(value: list, node: dict, root: dict, path: list[str]) -> None:
    if "minItems" in node and len(value) < node["minItems"]:
        raise _Mismatch(path, f"expected at least {node['minItems']} item(s), got {len(value)}")
    if "maxItems" in node and len(value) > node["maxItems"]:
        raise _Mismatch(path, f"expected at most {node['maxItems']} item(s), got {len(value)}")
    prefix = node.get("prefixItems", [])
    for index, (item, sub) in enumerate(zip(value, prefix, strict=False)):
        _validate(item, sub, root, [*path, str(index)])
    if "items" in node:
        for index in range(len(prefix), len(value)):
            _validate(value[index], node["items"], root, [*path, str(index)])


def _object(value: dict, node: dict, root: dict, path: list[str]) -> None:
    properties = node.get("properties", {})
    for key in node.get("required", []):
        if key not in value:
            raise _Mismatch([*path, key], "missing")
    for key in value:
        if isinstance(key, str) and not _is_text(key):
            raise _Mismatch([*path, _key(key)], "a key that is not text (a NUL or a lone "
                                                "surrogate)")
        if "propertyNames" in node:
            _validate(key, node["propertyNames"], root, [*path, _key(key)])
        if key in properties:
            _validate(value[key], properties[key], root, [*path, _key(key)])
        elif "additionalProperties" in node:
            extra = node["additionalProperties"]
            if extra is False:
                known = ", ".join(sorted(properties))
                raise _Mismatch([*path, _key(key)],
                                f"unknown key (known: {known})" if known else "unknown key")
            _validate(value[key], extra, root, [*path, _key(key)])


def _key(key: object) -> str:
    """A key as it appears in a key path: repr'd when it is not a plain name."""
    plain = isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,60}", key)
    return key if plain else shown(key)
