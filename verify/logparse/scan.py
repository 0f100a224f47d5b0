"""Turn raw log bytes into small typed events, streaming and in linear time.

Every pattern in log_patterns.yaml is compiled into one alternation that is
searched over whole chunks (the C regex engine skips uninteresting text; Python
only sees matches).  Each event carries its file, line number and the NCCL
record context (host, pid, device, MPI rank) found before it on the same line,
so glued lines and any prefix seen in the wild (Open MPI `[1,3]<stdout>:`, srun
`0: `, pdsh `host: `, CloudWatch `| ts |`, Ray `(pid=..)`) still attribute.
nccl-tests table rows carry no keyword: after a table header the scanner reads
lines one by one until the table ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Protocol

from verify.logparse.sources import Source, chunks
from verify.tables import load_table

# `host:pid:tid [dev]` - the NCCL record header; the last one before an event wins.
RECORD_RE = re.compile(rb"([A-Za-z0-9][\w.-]*):(\d+):(\d+) \[(\d+)\]")
MPI_RANK_RE = re.compile(rb"\[1,(\d+)\]<std(?:out|err)>:|^\s*(\d+): |\[rank(\d+)\]:")
ROW_START_RE = re.compile(
    rb"(?<![\w.])(\d+)\s+(\d+)\s+(float|double|half|bfloat16|bf16|fp8\w*|fp16|fp32|fp64|"
    rb"int8|uint8|int32|uint32|int64|uint64|int|char)\s")
TABLE_END_NAMES = ("avg_busbw",)


@dataclass(frozen=True)
class Context:
    host: str | None
    pid: int | None
    dev: int | None
    mpi_rank: int | None


@dataclass
class Event:
    kind: str
    fields: dict[str, str | None]
    file: str
    line: int
    ctx: Context
    text: str = field(repr=False)


@dataclass
class Row:
    """One nccl-tests result row (raw tokens mapped by the header's columns)."""

    file: str
    line: int
    values: dict[str, str]


@cache
def _compiled() -> tuple[re.Pattern[bytes], dict[str, tuple[str, dict[str, str], str | None]]]:
    """One alternation of every pattern; group names are rewritten to stay unique."""
    parts = []
    index: dict[str, tuple[str, dict[str, str], str | None]] = {}
    for i, row in enumerate(load_table("log_patterns")["patterns"]):
        outer = f"p{i}"
        names: dict[str, str] = {}

        def rename(match: re.Match[str], i: int = i, names: dict[str, str] = names) -> str:
            inner = f"p{i}_{match.group(1)}"
            names[inner] = match.group(1)
            return f"(?P<{inner}>"

        body = re.sub(r"\(\?P<(\w+)>", rename, row["regex"])
        parts.append(f"(?P<{outer}>{body})")
        index[outer] = (row["name"], names, row.get("message"))
    return re.compile("|".join(parts).encode()), index


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _context(line: bytes) -> Context:
    records = RECORD_RE.findall(line)
    mpi = MPI_RANK_RE.search(line)
    mpi_rank = None
    if mpi:
        mpi_rank = int(next(g for g in mpi.groups() if g is not None))
    if not records:
        return Context(None, None, None, mpi_rank)
    host, pid, _tid, dev = records[-1]
    return Context(_decode(host), int(pid), int(dev), mpi_rank)


class Sink(Protocol):
    """Where events and rows go as they are found (the job model aggregates them)."""

    def event(self, event: Event) -> None: ...

    def row(self, row: Row) -> None: ...


class Scanner:
    """Scan one source, handing each event and nccl-tests row to `sink` as found."""

    def __init__(self, source: Source, sink: Sink) -> None:
        self.source = source
        self.sink = sink
        self.lines = 0
        self.bytes = 0
        self._columns: list[str] | None = None  # set while inside a results table

    def run(self) -> Scanner:
        for chunk in chunks(self.source):
            self._scan_chunk(chunk)
        return self

    # -- chunk level -----------------------------------------------------------
    def _scan_chunk(self, chunk: bytes) -> None:
        regex, index = _compiled()
        base_line = self.lines + 1  # line number of the chunk's first line
        line_no = base_line
        counted_to = 0
        pos = 0
        end = len(chunk)
        ctx_cache: tuple[int, Context] | None = None
        while pos < end:
            if self._columns is not None:
                line_no += chunk.count(b"\n", counted_to, pos)
                counted_to = pos
                pos, line_no = self._scan_table(chunk, pos, line_no)
                counted_to = pos
                continue
            match = regex.search(chunk, pos)
            if match is None:
                break
            start = chunk.rfind(b"\n", 0, match.start()) + 1
            stop = chunk.find(b"\n", match.end())
            stop = end if stop < 0 else stop
            line_no += chunk.count(b"\n", counted_to, start)
            counted_to = start
            if ctx_cache is None or ctx_cache[0] != start:
                ctx_cache = (start, _context(chunk[start:match.start()]))
            self._emit(match, index, chunk, start, stop, line_no, ctx_cache[1])
            pos = match.start() + 1  # overlapping messages on one line all count
            if self._columns is not None:
                pos = stop + 1
                line_no += 1
                counted_to = pos
        self.lines += chunk.count(b"\n")
        self.bytes += len(chunk)

    def _emit(self, match: re.Match[bytes], index: dict, chunk: bytes, start: int, stop: int,
              line_no: int, ctx: Context) -> None:
        name, groups, message = index[match.lastgroup]
        fields = {short: (_decode(match.group(full)) if match.group(full) is not None else None)
                  for full, short in groups.items()}
        if message:
            begin = match.end() if message == "after" else match.start()
            fields["message"] = _decode(chunk[begin:stop]).rstrip("\r")
        text = _decode(chunk[start:stop]).rstrip("\r")
        self.sink.event(Event(name, fields, self.source.name, line_no, ctx, text))
        if name in ("tests_header", "nccom_header"):
            self._columns = _columns(text[text.find("size"):] if "size" in text else text)

    # -- nccl-tests tables -----------------------------------------------------
    def _scan_table(self, chunk: bytes, pos: int, line_no: int) -> tuple[int, int]:
        """Read lines from `pos` while inside a results table; return where to resume."""
        regex, index = _compiled()
        end = len(chunk)
        while pos < end and self._columns is not None:
            stop = chunk.find(b"\n", pos)
            stop = end if stop < 0 else stop
            line = chunk[pos:stop]
            row = ROW_START_RE.search(line)
            if row:
                tokens = _decode(line[row.start():]).split()
                self.sink.row(Row(self.source.name, line_no,
                                  dict(zip(self._columns, tokens, strict=False))))
            else:
                ctx = None
                at = pos
                while (match := regex.search(chunk, at, stop)) is not None:
                    ctx = ctx or _context(chunk[pos:match.start()])
                    self._emit(match, index, chunk, pos, stop, line_no, ctx)
                    if index[match.lastgroup][0] in TABLE_END_NAMES:
                        self._columns = None
                    at = match.start() + 1
            pos = stop + 1
            line_no += 1
        return pos, line_no


def _columns(header: str) -> list[str]:
    """Column names from a table header, with out-of-place/in-place prefixes."""
    names = [t.split("(")[0].lstrip("#").lower() for t in header.split()]
    names = [n for n in names if n]
    out, seen_time = [], 0
    for name in names:
        if name == "time":
            seen_time += 1
        side = "oop_" if seen_time == 1 else "ip_" if seen_time >= 2 else ""
        out.append(side + name if name in ("time", "algbw", "busbw", "wrong", "error") else name)
    return out

