"""Every pin of an image spec, with the key path of its value in the spec's YAML.

A pin is where the spec names a version someone upstream publishes: a component's
`version`, a base's `image`/`builder_image` tag and `torch`, a `name==version` wheel
(builder wheels, variant packages).  The spec and each profile are read as written
(not merged), because --update-pins edits the copy at these very paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_WHEEL_RE = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[0-9][0-9A-Za-z.+!-]*)")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class ImageRef:
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        name, _, digest = text.partition("@")
        repository, tag = name, None
        if ":" in name.rsplit("/", 1)[-1]:
            repository, tag = name.rsplit(":", 1)
        return cls(repository, tag, digest if _DIGEST_RE.fullmatch(digest) else None)

    def text(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + \
            (f"@{self.digest}" if self.digest else "")


@dataclass(frozen=True)
class Pin:
    """One pinned version and where it is written."""

    kind: str  # "component", "wheel", "torch" or "image"
    name: str  # component, PyPI project or image repository
    pinned: str  # the version (for an image: its tag)
    path: Path  # key path of the value in the spec as written
    scope: str  # "spec" or "profile <name>"
    where: str  # what a person calls the place (`base pytorch-runtime image`)
    base_choice: Path | None = None  # the base choice of an image, torch or builder wheel
    image: ImageRef | None = None
    bundled: bool = False  # a component the EFA installer brings (follows it)

    def label(self) -> str:
        return self.where if self.scope == "spec" else f"{self.scope.split()[1]}: {self.where}"


def _scopes(raw: dict[str, Any]) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    yield "spec", (), raw
    for name, overlay in (raw.get("profiles") or {}).items():
        yield f"profile {name}", ("profiles", name), overlay or {}


def _wheel_pins(items: Any, path: Path, scope: str, where: str,
                base_choice: Path | None = None) -> Iterator[Pin]:
    for i, item in enumerate(items or []):
        match = _WHEEL_RE.fullmatch(str(item))
        if match:
            yield Pin("wheel", match["name"], match["version"], (*path, i), scope,
                      f"{where} {match['name']}", base_choice=base_choice)


def _base_pins(base: dict[str, Any], path: Path, scope: str) -> Iterator[Pin]:
    for choice, body in (base.get("choices") or {}).items():
        cpath = (*path, "base", "choices", choice)
        for key in ("image", "builder_image"):
            if body.get(key):
                ref = ImageRef.parse(str(body[key]))
                yield Pin("image", ref.repository, ref.tag or "", (*cpath, key), scope,
                          f"base {choice} {key} {ref.repository}", base_choice=cpath,
                          image=ref)
        if body.get("torch"):
            ref = ImageRef.parse(str(body.get("image", "")))
            yield Pin("torch", "torch", str(body["torch"]), (*cpath, "torch"), scope,
                      f"base {choice} torch", base_choice=cpath, image=ref)
        yield from _wheel_pins(body.get("builder_wheels"), (*cpath, "builder_wheels"), scope,
                               f"base {choice} builder wheel", cpath)


def spec_pins(raw: dict[str, Any]) -> list[Pin]:
    """Every pin of the spec and of each profile, in the order they are written."""
    pins: list[Pin] = []
    for scope, prefix, body in _scopes(raw):
        if isinstance(body.get("base"), dict):
            pins.extend(_base_pins(body["base"], prefix, scope))
        for name, comp in (body.get("components") or {}).items():
            if isinstance(comp, dict) and comp.get("version") is not None:
                pins.append(Pin("component", name, str(comp["version"]),
                                (*prefix, "components", name, "version"), scope, name,
                                bundled=comp.get("source") == "installer"))
        for variant, vbody in (body.get("variants") or {}).items():
            pins.extend(_wheel_pins((vbody or {}).get("packages"),
                                    (*prefix, "variants", variant, "packages"), scope,
                                    f"{variant} package"))
    return pins


def default_torch(raw: dict[str, Any], scope: str) -> Path | None:
    """The key path of the torch pin of a scope's default base (a profile without a base
    of its own uses the spec's), which decides the NCCL that torch requires."""
    prefix: Path = () if scope == "spec" else ("profiles", scope.split()[1])
    overlay = raw if scope == "spec" else (raw.get("profiles") or {}).get(scope.split()[1]) or {}
    if not isinstance(overlay.get("base"), dict):
        prefix, overlay = (), raw
    base = overlay["base"]
    choice = base.get("default")
    if choice not in (base.get("choices") or {}) or not base["choices"][choice].get("torch"):
        return None
    return (*prefix, "base", "choices", choice, "torch")
