"""Typed values: text from an option, a variable or a record, checked once, here.

Why each rule exists (issue #24):

* Patterns are matched with `re.fullmatch`: `re.match(r"...$")` accepts a trailing
  newline, which then breaks the script, manifest or record the value is written into.
* Numbers are finite: `float("nan")` compares false with every bound, so a NaN passes
  any range check; `inf` turns a timeout into no timeout and JSON refuses both.
* Integers are ASCII digits: `"²".isdigit()` is true and `int("²")` raises; `int()`
  also accepts `"1_000"`, `" 7 "` and Arabic-Indic digits.
* Counts are bounded: `--rounds 1000000000` is a loop that never ends.
* Host names cannot be options: `-V` given to ssh or mpirun is a flag, not a host.

Every failure is a `BadValue` (a ValueError) whose text is one line; the click
types turn it into click's own error, so an option gets exit 2 in one line through
verify/cliutil.py's `OneLineGroup` without any code in the command.
"""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
from typing import Any

import click

__all__ = [
    "BadValue", "Count", "Digits", "Finite", "HostName", "Matching", "ShellName",
    "count", "digits", "excerpt", "finite", "host_name", "matching", "printable", "shell_name",
    "shown", "HOST_NAME_RE", "SHELL_NAME_RE", "MAX_GPUS_PER_HOST", "MAX_NODES", "MAX_SECONDS",
]

# RFC 1123 labels (letters, digits, inner '-'), dot-separated: never starts with '-'.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
# POSIX shell variable names ("Name" in the Shell Command Language, section 3.235).
SHELL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASCII_INT = re.compile(r"[+-]?[0-9]+")
# A float as people type it: digits with an optional fraction and exponent; no '_',
# no 'nan'/'inf'/'infinity' spellings, no hexadecimal, no non-ASCII digits.
_ASCII_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Longer numbers than this are typos or attacks: int() of 10**6 digits takes seconds.
_MAX_NUMBER_CHARS = 40
_MAX_SHOWN = 60

# Bounds shared by the CLIs' options (a bound is what makes a count or a wait finite).
# The largest EFA clusters are tens of thousands of GPUs: 65,536 nodes is far beyond.
MAX_NODES = 65536
# 8 GPUs per instance today (p4d, p5, p6); 64 leaves room for any future family.
MAX_GPUS_PER_HOST = 64
# A week: no single verification stage is meant to run longer; inf is not a timeout.
MAX_SECONDS = 7 * 24 * 3600.0


class BadValue(ValueError):
    """A value that is not what it should be; str() is one line naming it."""


def shown(value: object, limit: int = _MAX_SHOWN) -> str:
    """`repr` cut to `limit` characters: a message quotes the value, never floods the line
    (repr also escapes newlines, control characters and lone surrogates)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def printable(text: str) -> str:
    """`text` safe for a terminal or a one-line message: control characters (terminal
    escape sequences start with ESC), lone surrogates and other unprintable code
    points become `\\xNN`/`\\uNNNN` escapes; tab stays.  The one place that decides
    what text from a log, a record or a host may reach a terminal."""
    out = []
    for char in text:
        if char == "\t" or (char.isprintable() and not 0xD800 <= ord(char) <= 0xDFFF):
            out.append(char)
        else:
            out.append(char.encode("unicode_escape", "backslashreplace").decode("ascii")
                       if ord(char) < 0xD800 or ord(char) > 0xDFFF
                       else f"\\u{ord(char):04x}")
    return "".join(out)


# The longest error line: a message names the value it refuses, and a 100 KB option
# value must not come back as a 100 KB line (attack-1 W-1).
MAX_MESSAGE_CHARS = 600


def excerpt(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` printable (see `printable`) and at most about `limit` characters: a longer
    one keeps its start and its end (where the reason usually is) and says how much of
    the middle was cut.  The one form every error line takes (verify/cliutil.py)."""
    safe = printable(text)
    if len(safe) <= limit:
        return safe
    head, tail = limit * 2 // 3, limit // 3
    return f"{safe[:head]}[... {len(safe) - head - tail} characters cut ...]{safe[-tail:]}"


def matching(pattern: re.Pattern[str] | str, value: object, what: str,
             example: str = "") -> str:
    """`value` when it is a string the whole of which matches `pattern`."""
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    if not isinstance(value, str) or regex.fullmatch(value) is None:
        hint = f" (e.g. {example})" if example else ""
        raise BadValue(f"{what}: {shown(value)} is not valid{hint}")
    return value


def shell_name(value: object, what: str = "variable name") -> str:
    """A name a POSIX shell can `export`: `X;touch /tmp/x;Y` is a command, not a name."""
    return matching(SHELL_NAME_RE, value, what, "NCCL_DEBUG")


def host_name(value: object, what: str = "host") -> str:
    """A DNS name (RFC 1123) or an IP address: never an option (`-V`), never spaces,
    commas, colons or shell text; at most 253 characters."""
    if isinstance(value, str) and len(value) <= 253:
        if HOST_NAME_RE.fullmatch(value):
            return value
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            pass
    raise BadValue(f"{what}: {shown(value)} is not a host name (letters, digits, '-' "
                   "and '.', not starting with '-')")


def digits(value: object, what: str, low: int | None = None, high: int | None = None) -> int:
    """An integer written in ASCII digits (an optional sign), within [low, high].

    A bool is not a number here (True would be 1); an int passes through the bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadValue(f"{what}: expected a whole number, got {shown(value)}")
    if isinstance(value, str):
        text = value.strip(" ")
        if len(text) > _MAX_NUMBER_CHARS or not _ASCII_INT.fullmatch(text):
            raise BadValue(f"{what}: {shown(value)} is not a whole number (ASCII digits)")
        value = int(text)
    _bounds(value, what, low, high)
    return value


def count(value: object, what: str, high: int, low: int = 1) -> int:
    """How many of something: a whole number from `low` (1) to `high`, which is required
    so no loop, list or allocation can grow without limit."""
    return digits(value, what, low, high)


def finite(value: object, what: str, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> float:
    """A finite number within [low, high] (`low_open`: strictly above `low`); text in
    ASCII decimal notation.  NaN and infinities are refused, however spelled."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadValue(f"{what}: expected a number, got {shown(value)}")
    if isinstance(value, str):
        text = value.strip(" ")
        if len(text) > _MAX_NUMBER_CHARS or not _ASCII_FLOAT.fullmatch(text):
            raise BadValue(f"{what}: {shown(value)} is not a finite number")
        value = float(text)
    number = float(value) if isinstance(value, float) or abs(value) < 2 ** 53 else math.inf
    if not math.isfinite(number):
        raise BadValue(f"{what}: {shown(value)} is not a finite number")
    if low_open and low is not None and not number > low:
        raise BadValue(f"{what}: {number:g} must be more than {low:g}")
    _bounds(number, what, None if low_open else low, high)
    return number


def _bounds(number: float, what: str, low: float | None, high: float | None) -> None:
    if low is not None and number < low:
        raise BadValue(f"{what}: {number:g} is less than {low:g}")
    if high is not None and number > high:
        raise BadValue(f"{what}: {number:g} is more than {high:g}")


def _no_surrogates(value: str, what: str) -> None:
    """Text with a lone surrogate cannot be written as UTF-8 anywhere downstream."""
    if any(unicodedata.category(c) == "Cs" for c in value):
        raise BadValue(f"{what}: {shown(value)} is not valid text (a lone surrogate)")


# --- click types: an option declared with one of these is checked before the command runs


class _Checked(click.ParamType):
    """A click type whose check is one of the functions above; a BadValue becomes
    click's BadParameter (one line, exit 2 through OneLineGroup)."""

    def check(self, value: Any, what: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if not isinstance(value, str):  # a default, or already converted
            return value
        what = param.get_error_hint(ctx) if param is not None and ctx is not None else self.name
        try:
            _no_surrogates(value, what)
            return self.check(value, what)
        except BadValue as exc:
            text = str(exc)
            self.fail(text[len(what) + 2:] if text.startswith(f"{what}: ") else text,
                      param, ctx)


class Matching(_Checked):
    """Text that fully matches `pattern`; `name` is the metavar (e.g. NAME)."""

    def __init__(self, pattern: re.Pattern[str] | str, name: str, example: str = "") -> None:
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        self.name = name
        self.example = example

    def check(self, value: str, what: str) -> str:
        return matching(self.pattern, value, what, self.example)


class ShellName(_Checked):
    name = "NAME"

    def check(self, value: str, what: str) -> str:
        return shell_name(value, what)


class HostName(_Checked):
    name = "HOST"

    def check(self, value: str, what: str) -> str:
        return host_name(value, what)


class Digits(_Checked):
    """A whole number in ASCII digits within [low, high] (click.IntRange accepts '²'
    through int() and has no upper bound unless given)."""

    name = "integer"

    def __init__(self, low: int | None = None, high: int | None = None) -> None:
        self.low, self.high = low, high

    def check(self, value: str, what: str) -> int:
        return digits(value, what, self.low, self.high)


class Count(Digits):
    """A bounded count: 1..high unless `low` says otherwise."""

    def __init__(self, high: int, low: int = 1) -> None:
        super().__init__(low, high)


class Finite(_Checked):
    """A finite number within [low, high] (click.FloatRange lets NaN through: every
    comparison with NaN is false, and accepts inf)."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> None:
        self.low, self.high, self.low_open = low, high, low_open

    def check(self, value: str, what: str) -> float:
        return finite(value, what, self.low, self.high, self.low_open)
