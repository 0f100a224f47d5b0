"""The one comparer of upstream release numbers.

Why not packaging.version: it is not a dependency of efakit (only pip's and pytest's),
and upstream tags are not PEP 440 (`v1.13.2-aws`, `libfabric-2.6.0`, `2.6.0amzn1.0`).
Each component's tag pattern (images/upstream.yaml) cuts the release out of its tag;
what is left to compare is digits and dots, and only such final releases count
(a candidate, `2.6.0rc1`, never is the newest).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from verify.boundary.values import shown

# ASCII digits only (`\d` took '٩٩.٠' for a release: attack-1 SA-16), at most 18 to a
# number and 12 numbers (int() of 5000 digits raises: attack-1 TB-3); real releases
# have at most 8 digits (20240101) and 5 numbers.
_NUMBERS = r"[0-9]{1,18}(?:\.[0-9]{1,18}){0,11}"
FINAL_RE = re.compile(_NUMBERS)
_LEADING_RE = re.compile(rf"v?({_NUMBERS})(?![0-9])")


class NotARelease(ValueError):
    """Text that holds no release number."""


def release(text: str) -> tuple[int, ...]:
    """The numbers of a final release, trailing zeros dropped so `2.6` equals `2.6.0`."""
    if not FINAL_RE.fullmatch(text):
        raise NotARelease(f"not a final release: {shown(text)} (expected digits and dots)")
    parts = [int(part) for part in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def pinned_release(text: str) -> tuple[int, ...]:
    """A pin's release: its leading digits and dots (`2.13.0a0` -> (2, 13)), so a
    pre-release or a vendor suffix compares as the release it leads to."""
    match = _LEADING_RE.match(text.strip())
    if not match:
        raise NotARelease(f"not a version: {shown(text)} (expected digits and dots, "
                          "e.g. 1.21.1)")
    return release(match.group(1))


def from_tag(tag: str, pattern: re.Pattern[str]) -> str | None:
    """The final release a tag names under a component's pattern, or None (not one of
    its releases: another line's tag, a candidate)."""
    match = pattern.fullmatch(tag)
    if match is None:
        return None
    version = match.group("version")
    return version if FINAL_RE.fullmatch(version) else None


def newest(versions: Iterable[str]) -> str | None:
    """The highest final release among `versions` (others are ignored)."""
    finals = [v for v in versions if FINAL_RE.fullmatch(v)]
    return max(finals, key=release) if finals else None


def newer_than(pinned: str, versions: Iterable[str]) -> list[str]:
    """The distinct final releases above `pinned`, lowest first."""
    have = pinned_release(pinned)
    seen = {release(v): v for v in versions if FINAL_RE.fullmatch(v) and release(v) > have}
    return [seen[key] for key in sorted(seen)]


def gap(pinned: str, target: str) -> str | None:
    """How far `target` is ahead: 'major', 'minor' or 'patch' (the first number that
    differs), or None when it is not ahead."""
    have, want = pinned_release(pinned), release(target)
    if want <= have:
        return None
    width = max(len(have), len(want))
    have, want = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
    first = next(i for i in range(width) if have[i] != want[i])
    return ("major", "minor")[first] if first < 2 else "patch"
