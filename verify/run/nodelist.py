"""Expand Slurm's compressed node lists (`SLURM_JOB_NODELIST`) into host names.

`scontrol show hostnames` is the reference and is used where it is installed;
elsewhere (a container without Slurm's tools) the same grammar is expanded
here.  Both are bounded: the count is computed before any name is made, so
`n[0-99999999]` is a one-line error at once rather than minutes of work.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess

from verify.boundary.values import host_name

# One bracket group: `01-03,7`; ranges keep the width of their lower bound.
_GROUP = re.compile(r"\[([^\[\]]*)\]")
_ITEM = re.compile(r"([0-9]{1,9})(?:-([0-9]{1,9}))?")  # ASCII digits: int('²') fails
SCONTROL_TIMEOUT_S = 10


def expand_nodelist(text: str, limit: int, use_scontrol: bool = True) -> list[str]:
    """`rack[1-2]-node[01-02],login` -> 5 names, in Slurm's order.

    Raises ValueError (one line) for a malformed list or one of more than `limit` names."""
    text = text.strip()
    if not text:
        raise ValueError("empty node list")
    names = _expand(text, limit)  # validates and bounds, even where scontrol will answer
    scontrol = shutil.which("scontrol") if use_scontrol else None
    if scontrol:
        names = _scontrol(scontrol, text, limit)
    for name in names:  # each a host name, never an option or a second line of a script
        host_name(name, f"node list {text[:60]!r}")
    return names


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "[":
            depth += 1
            if depth > 1:
                raise ValueError(f"nested brackets in node list {text!r}")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in node list {text!r}")
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    if depth:
        raise ValueError(f"unclosed '[' in node list {text!r}")
    parts.append(text[start:])
    return parts


def _ranges(group: str, part: str) -> list[tuple[int, int, int]]:
    """(low, high, width) per comma item of one bracket group."""
    ranges = []
    for item in group.split(","):
        match = _ITEM.fullmatch(item.strip(" "))
        if not match:
            raise ValueError(f"cannot expand {part!r}: {item!r} is not N or N-M")
        low_text, high_text = match.group(1), match.group(2) or match.group(1)
        low, high = int(low_text), int(high_text)
        if high < low:
            raise ValueError(f"cannot expand {part!r}: range {item!r} runs backwards")
        ranges.append((low, high, len(low_text)))
    return ranges


def _expand(text: str, limit: int) -> list[str]:
    parts = [p.strip() for p in _split_top(text)]
    plans = []
    total = 0
    for part in parts:
        if not part:
            raise ValueError(f"empty name in node list {text!r}")
        pieces = _GROUP.split(part)  # literal, group, literal, group, ..., literal
        literals, groups = pieces[0::2], [_ranges(g, part) for g in pieces[1::2]]
        if any(c in lit for lit in literals for c in "[]"):
            raise ValueError(f"cannot expand {part!r}: unbalanced brackets")
        count = 1
        for ranges in groups:
            count *= sum(high - low + 1 for low, high, _ in ranges)
        total += count
        if total > limit:
            raise ValueError(f"node list {text[:60]!r} names more than {limit} hosts")
        plans.append((literals, groups))
    names: list[str] = []
    for literals, groups in plans:
        numbers = [[f"{n:0{width}d}" for low, high, width in ranges
                    for n in range(low, high + 1)] for ranges in groups]
        for combo in itertools.product(*numbers):
            name = literals[0]
            for number, literal in zip(combo, literals[1:], strict=True):
                name += number + literal
            names.append(name)
    return names


def _scontrol(scontrol: str, text: str, limit: int) -> list[str]:
    try:
        done = subprocess.run([scontrol, "show", "hostnames", text], capture_output=True,
                              text=True, timeout=SCONTROL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"scontrol show hostnames {text!r}: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise ValueError(f"scontrol show hostnames {text!r}: {why}")
    names = done.stdout.split()
    if len(names) > limit:
        raise ValueError(f"node list {text[:60]!r} names more than {limit} hosts")
    return names
