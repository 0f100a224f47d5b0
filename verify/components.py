"""The component table (`verify/data/components.yaml`), validated on load.

One row per component of the EFA stack says how a spec may provide it, where
it lands, which label carries its version and which static checks verify it,
so the renderer, the static checks and the gate cannot disagree about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from verify.tables import TableError, load_table

SOURCES = ("installer", "archive", "release", "wheel")
_KEYS = {"label", "sources", "stage", "prefix", "libdir", "license", "spdx", "build_packages",
         "runtime_packages", "checks", "why", "source"}


@dataclass(frozen=True)
class Component:
    name: str
    label: str
    sources: tuple[str, ...]
    stage: str | None
    prefix: str | None
    libdir: str | None
    license: tuple[str, ...]
    spdx: str | None
    build_packages: tuple[str, ...]
    runtime_packages: tuple[str, ...]
    checks: tuple[str, ...]
    why: str

    def licenses_dir(self) -> str:
        """Where its license files land inside the image."""
        return f"{self.prefix}/share/licenses/{self.label}"


def _row(name: str, row: object) -> Component:
    where = f"verify/data/components.yaml: components.{name}"
    if not isinstance(row, dict):
        raise TableError(f"{where}: expected a mapping")
    unknown = set(row) - _KEYS
    missing = {"label", "sources", "checks", "why", "source", "spdx"} - set(row)
    if unknown or missing:
        raise TableError(f"{where}: unknown keys {sorted(unknown)}, missing {sorted(missing)}")
    sources = tuple(row["sources"])
    if not set(sources) <= set(SOURCES):
        raise TableError(f"{where}: sources must be among {', '.join(SOURCES)}")
    built = {"archive", "release"} & set(sources)
    if built and not (row.get("stage") and row.get("prefix") and row.get("license")):
        raise TableError(f"{where}: a component built from source needs stage, prefix and "
                         "license")
    return Component(name, row["label"], sources, row.get("stage"), row.get("prefix"),
                     row.get("libdir"), tuple(row.get("license") or ()), row["spdx"],
                     tuple(row.get("build_packages") or ()),
                     tuple(row.get("runtime_packages") or ()), tuple(row["checks"]), row["why"])


@cache
def components() -> dict[str, Component]:
    """Every component row, in table order."""
    table = load_table("components")
    return {name: _row(name, row) for name, row in table["components"].items()}


def owner_of(check: str) -> Component | None:
    """The component a static check verifies, if any."""
    return next((c for c in components().values() if check in c.checks), None)
