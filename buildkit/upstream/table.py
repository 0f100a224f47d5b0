"""The upstream table (images/upstream.yaml): where each pin's newest release is asked.

Read once, checked against buildkit/schema/upstream.schema.json, its patterns compiled
(each must have a `version` group), and each endpoint's URL taken from its environment
variable when set: a mirror, or the tests' stand-in server.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildkit import schemas
from buildkit.paths import IMAGES_DIR
from verify.tables import TableError, load_yaml_file

TABLE = IMAGES_DIR / "upstream.yaml"


class UpstreamTableError(ValueError):
    """The table or an endpoint override is malformed, phrased as one line."""


@dataclass(frozen=True)
class ImageTags:
    pattern: re.Pattern[str]
    name_filter: str
    sets: dict[str, str]


@dataclass(frozen=True)
class Upstreams:
    endpoints: dict[str, str]  # kind -> base URL (overrides applied)
    wheel_files: re.Pattern[str]
    cuda_from: str | None  # the wheel whose major.minor is a wheel-built base's `cuda`
    components: dict[str, dict[str, Any]]
    component_tags: dict[str, re.Pattern[str]]  # compiled `tag` or `pattern`
    images: dict[str, dict[str, Any]]
    image_tags: dict[str, list[ImageTags]]


def _compile(text: str, where: str, group: str | None = "version") -> re.Pattern[str]:
    """The table's pattern, ASCII-only: its `\\d` are the digits 0-9 (in Unicode mode
    they also took '٩٩.٠' from an answer for a release: attack-1 SA-16)."""
    try:
        pattern = re.compile(text, re.ASCII)
    except re.error as exc:
        raise UpstreamTableError(f"{where}: not a regular expression: {exc}") from None
    if group and group not in pattern.groupindex:
        raise UpstreamTableError(f"{where}: the pattern needs a (?P<{group}>...) group")
    return pattern


def endpoint_url(name: str, default: str, env: str) -> str:
    """The endpoint's base URL: `env` when set (https, or http on the loopback address
    only, so a stand-in never turns into plain-text traffic elsewhere)."""
    value = os.environ.get(env)
    if value is None:
        return default.rstrip("/")
    parsed = urllib.parse.urlsplit(value)
    host = parsed.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parsed.scheme == "https" and host or parsed.scheme == "http" and loopback:
        if parsed.query or parsed.fragment or any(c.isspace() for c in value):
            raise UpstreamTableError(f"{env}={value!r}: expected a base URL without "
                                     "query or fragment")
        return value.rstrip("/")
    raise UpstreamTableError(f"{env}={value!r}: expected an https:// URL (http:// only on "
                             f"127.0.0.1 or localhost) for the {name} endpoint")


def load_upstreams(path: Path = TABLE) -> Upstreams:
    """Read and check the table; raise UpstreamTableError in one line."""
    try:
        raw = load_yaml_file(path)
        schemas.check(raw, "buildkit", "upstream.schema.json", str(path))
    except (TableError, schemas.SchemaError) as exc:
        raise UpstreamTableError(str(exc)) from None
    endpoints = {name: endpoint_url(name, row["url"], row["env"])
                 for name, row in raw["endpoints"].items()}
    tags = {}
    for name, row in raw["components"].items():
        text = row.get("tag") or row.get("pattern")
        if text:
            tags[name] = _compile(text, f"{path}: components.{name}")
    image_tags = {
        repo: [ImageTags(_compile(t["pattern"], f"{path}: images.{repo}.tags[{i}]"),
                         t["name_filter"], dict(t.get("sets") or {}))
               for i, t in enumerate(row.get("tags") or [])]
        for repo, row in raw["images"].items()}
    for repo, rows in image_tags.items():
        for i, row in enumerate(rows):
            for key, group in row.sets.items():
                if group not in row.pattern.groupindex:
                    raise UpstreamTableError(f"{path}: images.{repo}.tags[{i}].sets.{key}: "
                                             f"the pattern has no group {group!r}")
    return Upstreams(endpoints=endpoints,
                     wheel_files=_compile(raw["wheels"]["files"], f"{path}: wheels.files",
                                          group=None),
                     cuda_from=raw["wheels"].get("cuda_from"),
                     components=raw["components"], component_tags=tags,
                     images=raw["images"], image_tags=image_tags)
