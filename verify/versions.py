"""Version strings as the EFA stack prints them, and constraints over them.

Why not packaging.version: component versions come in forms PEP 440 rejects
(`1.5.0aws`, `1.13.2-aws`, `v1.7.3-aws`, `2.27.3+cuda12.9`, `2.1.0amzn4.0`), and
the verifier must not pull extra dependencies into every image.
"""

from __future__ import annotations

import re

from verify.boundary.values import shown

_VERSION_RE = re.compile(r"v?([0-9]+(?:\.[0-9]+)*)")  # a prefix: 1.13.2-aws; ASCII digits
_CONSTRAINT_RE = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*")
# No component numbers a release with more digits than this; int() of a 5000-digit
# string raises ValueError (Python's 4300-digit limit) and a long one costs time.
MAX_PART_DIGITS = 18
MAX_VERSION_CHARS = 128


class VersionError(ValueError):
    """A version or constraint that cannot be read."""


def parse_version(text: str) -> tuple[int, ...]:
    """Return the numeric release of `text` (`'1.13.2-aws'` -> `(1, 13, 2)`)."""
    match = _VERSION_RE.match(str(text).strip()[:MAX_VERSION_CHARS + 1])
    if not match or len(str(text).strip()) > MAX_VERSION_CHARS:
        raise VersionError(f"not a version: {shown(text)} (expected digits and dots, "
                           f"e.g. 1.13.2, at most {MAX_VERSION_CHARS} characters)")
    parts = match.group(1).split(".")
    if any(len(part) > MAX_PART_DIGITS for part in parts):
        raise VersionError(f"not a version: {shown(text)} (a number of more than "
                           f"{MAX_PART_DIGITS} digits)")
    return tuple(int(part) for part in parts)


def _padded(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


def satisfies(version: str, constraint: str) -> bool:
    """True when `version` meets every comma-separated clause of `constraint`."""
    have = parse_version(version)
    for clause in constraint.split(","):
        match = _CONSTRAINT_RE.fullmatch(clause)
        if not match:
            raise VersionError(f"not a version constraint: {clause!r} (expected e.g. '>=1.7')")
        op, want_text = match.groups()
        a, b = _padded(have, parse_version(want_text))
        ok = {
            ">=": a >= b,
            "<=": a <= b,
            "==": a == b,
            "!=": a != b,
            ">": a > b,
            "<": a < b,
        }[op]
        if not ok:
            return False
    return True


def major_minor(version: str) -> str:
    """`'2.27.3+cuda12.9'` -> `'2.27'`, for readable image tags."""
    parts = parse_version(version)
    return ".".join(str(p) for p in (parts + (0,))[:2])
