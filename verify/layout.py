"""Look up install paths and installer flags from the layout table."""

from __future__ import annotations

from collections.abc import Mapping

from verify.tables import load_table
from verify.versions import satisfies


def _matches(when: Mapping[str, str], facts: Mapping[str, str | None]) -> bool:
    for key, want in when.items():
        have = facts.get(key)
        if have is None:
            return False
        if key in ("efa_installer",):
            if not satisfies(have, want):
                return False
        elif have != want:
            return False
    return True


def lookup(table: str, facts: Mapping[str, str | None]) -> str | None:
    """First matching row's `path` in `table`, or None when nothing matches."""
    for row in load_table("layout")[table]:
        if _matches(row.get("when") or {}, facts):
            return row["path"]
    return None


def installer_flags(facts: Mapping[str, str | None]) -> list[str]:
    """Every matching row's flags, in table order."""
    flags: list[str] = []
    for row in load_table("layout")["installer_flags"]:
        if _matches(row.get("when") or {}, facts):
            flags.extend(row["flags"])
    return flags
