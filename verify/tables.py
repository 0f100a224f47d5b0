"""Load the shared YAML data tables that ship with the verifier.

The tables (instance profiles, env rules, log patterns, diagnoses, default
policy) live here rather than in `buildkit` because both sides need them and
the verifier must work alone inside an image.

Every user-given input file (specs, policies, hostfiles, image env records,
reports) is read through `read_input`: a FIFO or device would block or never
end, a huge file would take minutes to parse, and YAML nested 50,000 deep
crashes the C parser, so all of that is refused in one line before parsing.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from verify.boundary.files import MAX_INPUT_BYTES, ReadError, read_bytes, read_text

# The deepest real spec nests 6 levels; 64 leaves room and stays far from stack limits.
MAX_YAML_DEPTH = 64

_YAML_LOADER_BASE: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class TableError(ValueError):
    """A data file that cannot be read."""


def read_input(path: Path | str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or one TableError line
    (the boundary's one reader: a FIFO with no writer is refused, not waited on)."""
    try:
        return read_bytes(path, limit)
    except ReadError as exc:
        raise TableError(str(exc)) from None


def read_input_text(path: Path | str, limit: int = MAX_INPUT_BYTES) -> str:
    """`read_input` decoded as UTF-8, with one line for text that is not."""
    try:
        return read_text(path, limit)
    except ReadError as exc:
        raise TableError(str(exc)) from None


def load_json_file(path: Path | str, limit: int = MAX_INPUT_BYTES) -> Any:
    """Read a JSON file through `read_input`: not JSON, NaN/Infinity or nesting past
    Python's recursion limit are each one TableError line (the boundary's parse_json)."""
    from verify.boundary.records import RecordError, parse_json

    try:
        return parse_json(read_input_text(path, limit), str(path))
    except RecordError as exc:
        raise TableError(str(exc)) from None


class _UniqueKeyLoader(_YAML_LOADER_BASE):  # type: ignore[misc,valid-type]
    """PyYAML's (C) safe loader that refuses a key given twice: the last one would win
    silently, and a pin or a waiver would change without anyone seeing it."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                ) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a finite number", node.start_mark)
        return value


    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:  # 2026-13-45 looks like a date to the resolver
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a valid date ({exc})", node.start_mark
            ) from None


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float",
                                 _UniqueKeyLoader.construct_yaml_float)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp",
                                 _UniqueKeyLoader.construct_yaml_timestamp)


def _check_depth(text: str, limit: int = MAX_YAML_DEPTH) -> None:
    """Refuse nesting deeper than `limit` using the scanner's tokens (iterative, linear),
    before the recursive composer could overflow the stack."""
    depth = 0
    starts = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken,
              yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)
    ends = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
    for token in yaml.scan(text, Loader=_YAML_LOADER_BASE):
        if isinstance(token, starts):
            depth += 1
            if depth > limit:
                mark = token.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"nested more than {limit} levels deep", mark)
        elif isinstance(token, ends):
            depth -= 1


def parse_yaml(text: str) -> Any:
    """Parse YAML text with the bounds above; raises yaml.YAMLError."""
    _check_depth(text)
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader


def load_yaml_file(path: Path | str, limit: int = MAX_INPUT_BYTES) -> Any:
    """Read a YAML file, turning every failure into one TableError line."""
    path = Path(path)
    text = read_input_text(path, limit)
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TableError(f"{path}{where}: invalid YAML: {problem}") from None


@cache
def load_table(name: str) -> Any:
    """Load `verify/data/<name>.yaml` (cached: tables never change at run time)."""
    ref = resources.files("verify").joinpath("data", f"{name}.yaml")
    with resources.as_file(ref) as path:
        return load_yaml_file(path)
