"""What log text means: the patterns of log_patterns.yaml applied to one message or
line, the `host:pid:tid [dev]` context of a line, and the tier-2 line filter.

Patterns are searched anywhere in the text and may overlap, so any prefix seen
in the wild (Open MPI `[1,3]<stdout>:`, srun `0: `, pdsh `host: `, CloudWatch
`| ts |`, Ray `(pid=..)`) and glued lines are handled.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from verify.tables import load_table

RECORD_RE = re.compile(rb"([A-Za-z0-9][\w.-]*):(\d+):(\d+) \[(\d+)\]")
# Open MPI --tag-output `[1,3]<stdout>:`, SageMaker's `[1,mpirank:3,algo-1]<stdout>:`,
# srun --label `3: `, torchrun --tee `[rank3]:`.
MPI_RANK_RE = re.compile(rb"\[1,(?:mpirank:)?(\d+)(?:,[\w.-]+)?\]<std(?:out|err)>:|^\s*(\d+): |"
                         rb"\[rank(\d+)\]:")
# No leading space: shared logs often have their `host:pid:tid [dev] ` prefix stripped,
# leaving records at the start of a line.
INFO_MARKER = b"NCCL INFO "
WARN_MARKER = b"NCCL WARN "
TIER1_MARKERS = (INFO_MARKER, WARN_MARKER)
ROW_TYPES = "float|double|half|bfloat16|bf16|fp8[a-z0-9]*|fp16|fp32|fp64|int8|uint8|int32|" \
            "uint32|int64|uint64|int|char"
ROW_START_RE = re.compile(rf"(?<![\w.\x80-\xff])(\d+)\s+(\d+)\s+({ROW_TYPES})\s".encode())
# A row whose size or count holds a byte outside ASCII (another script's digits, which
# str's \d and int() would read): a row that cannot be read, never one left out unseen
# (attack-2 SA-5: a dropped 1 GiB row let the smaller rows pass).
# It matches every row ROW_START_RE reads too, so it is also the rows' tier-2 anchor.
FOREIGN_ROW_RE = re.compile(rf"(?<![\w.\x80-\xff])[0-9\x80-\xff]+\s+[0-9\x80-\xff]+\s+"
                            rf"({ROW_TYPES})\s".encode())


@dataclass(frozen=True)
class Context:
    host: str | None
    pid: int | None
    dev: int | None
    mpi_rank: int | None


@dataclass(frozen=True)
class Pattern:
    name: str
    regex: re.Pattern[bytes]
    message: str | None
    needs: tuple[bytes, ...]


@cache
def patterns() -> tuple[Pattern, ...]:
    rows = load_table("log_patterns")["patterns"]
    return tuple(Pattern(r["name"], re.compile(r["regex"].encode()), r.get("message"),
                         tuple(n.encode() for n in r["needs"])) for r in rows)


@cache
def tier2_regex() -> re.Pattern[bytes]:
    anchors = load_table("log_patterns")["tier2_anchors"]
    return re.compile(b"|".join([re.escape(a.encode()) for a in anchors]
                                + [FOREIGN_ROW_RE.pattern]))  # every row, read or not


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@cache
def _needles() -> tuple[re.Pattern[bytes], dict[bytes, tuple[int, ...]]]:
    """One regex over every `needs` literal (longest first), and who needs each."""
    owners: dict[bytes, list[int]] = {}
    for index, pattern in enumerate(patterns()):
        for needle in pattern.needs:
            owners.setdefault(needle, []).append(index)
    ordered = sorted(owners, key=len, reverse=True)
    return (re.compile(b"|".join(re.escape(n) for n in ordered)),
            {n: tuple(idx) for n, idx in owners.items()})


@cache
def _channel_pattern() -> Pattern:
    return next(p for p in patterns() if p.name == "channel")


def _matches(text: bytes) -> list[tuple[int, Pattern, re.Match[bytes]]]:
    """Every pattern match in `text`, in text order (cheap literal test first)."""
    needle_re, owners = _needles()
    candidates: set[int] = set()
    for needle in set(needle_re.findall(text)):
        candidates.update(owners[needle])
    table = patterns()
    found = [(match.start(), table[index], match) for index in sorted(candidates)
             for match in table[index].regex.finditer(text)]
    found.sort(key=lambda item: item[0])
    return found


def parse_text(text: bytes) -> list[tuple[str, dict[str, str | None]]]:
    """Every pattern match in `text` (a message or a line), in text order."""
    if text.startswith(b"NCCL INFO Channel ") and b" | " not in text:
        # Most distinct records of a big job are channel lines: one pattern decides.
        match = _channel_pattern().regex.search(text)
        if match is None:
            return []
        return [("channel", {k: (decode(v) if v is not None else None)
                             for k, v in match.groupdict().items()})]
    found = []
    for start, pattern, match in _matches(text):
        fields = {k: (decode(v) if v is not None else None)
                  for k, v in match.groupdict().items()}
        message_at = None
        if pattern.message:
            message_at = match.end() if pattern.message == "after" else match.start()
        found.append((start, pattern.name, fields, message_at))
    starts = [start for start, _, _, message_at in found if message_at is not None]
    for _, _, fields, message_at in found:
        if message_at is not None:
            end = min((start for start in starts if start > message_at), default=len(text))
            fields["message"] = _message(text[message_at:end], end < len(text))
    return [(name, fields) for _, name, fields, _ in found]


Spans = tuple[tuple[str, tuple[tuple[str, tuple[int, int] | None], ...]], ...]


def field_spans(text: bytes) -> Spans | None:
    """Where each event's fields stand in `text`: a masked shape's pieces all have
    their digits at the same places, so one piece's spans read every other piece's
    values by slicing.  None where an event takes a message (its end depends on the
    text, not on the shape)."""
    out = []
    for _, pattern, match in _matches(text):
        if pattern.message:
            return None
        out.append((pattern.name, tuple(
            (name, match.span(name) if match.group(name) is not None else None)
            for name in pattern.regex.groupindex)))
    return tuple(out)


def _message(raw: bytes, glued: bool) -> str:
    """A failure's message: its text up to the next failure record on the same line.
    Before one (glued lines, CloudWatch's 'record | record'), the text from the
    last ' | ' on belongs to that record's prefix."""
    if glued and b" | " in raw:
        raw = raw[:raw.rindex(b" | ")]
    return decode(raw).strip()


def context(line: bytes) -> Context:
    records = RECORD_RE.findall(line)
    mpi = MPI_RANK_RE.search(line)
    mpi_rank = int(next(g for g in mpi.groups() if g is not None)) if mpi else None
    if not records:
        return Context(None, None, None, mpi_rank)
    host, pid, _tid, dev = records[-1]
    return Context(decode(host), int(pid), int(dev), mpi_rank)


TIER2_LINE_MAX = 64 << 10


def tier2_lines(data: bytes, line_base: int) -> Iterator[tuple[int, bytes]]:
    """The lines of `data` that are not NCCL records and carry a tier-2 anchor.

    Line by line: the anchor regex has no literal prefix (nccl-tests rows), so
    searching a whole block with it costs ~80 ms per MB, while skipping records
    with two substring tests and searching only the other lines costs a tenth.
    A line is searched in its first TIER2_LINE_MAX bytes: anchors sit near a line's
    start and nccl-tests rows are short, while a 64 MiB line of NULs or one letter
    repeated would cost seconds per search.
    """
    regex = tier2_regex()
    for line_no, line in enumerate(data.split(b"\n"), line_base):
        if INFO_MARKER not in line and WARN_MARKER not in line and \
                regex.search(line, 0, TIER2_LINE_MAX):
            yield line_no, line
