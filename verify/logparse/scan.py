"""Scan inputs into a sink: tier 1 counts NCCL records, tier 2 reads the rest.

Two tiers, because Python's regex engine is slow at trying many patterns at
every byte but fast at finding one literal: tier 1 (tier1.py) counts NCCL's
own records in C and parses each distinct message once; tier 2 reads the few
other lines (nccl-tests tables and summaries, libfabric's own lines, Neuron
CCOM lines, torch errors) line by line, nccl-tests rows in order after their
table header.  Large inputs, one file or a directory, are counted by a pool
of processes and delivered in order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from verify.logparse.patterns import (
    FOREIGN_ROW_RE,
    ROW_START_RE,
    TIER1_MARKERS,
    Context,
    context,
    decode,
    parse_text,
)
from verify.logparse.sources import (
    Source,
    Unread,
    chunks,
    file_blocks,
    is_plain_file,
    named,
    range_start,
)
from verify.logparse.tier1 import Tier1Counter

# Regular files this large (one, or together) are counted by several processes
# (EFAKIT_PARALLEL_MIN_BYTES overrides).
PARALLEL_MIN_BYTES = int(os.environ.get("EFAKIT_PARALLEL_MIN_BYTES", 64 << 20))


@dataclass
class Event:
    """A message kind with its fields; `line` is None when not located (counted only)."""

    kind: str
    fields: dict[str, str | None]
    file: str
    line: int | None
    ctx: Context | None
    text: str
    count: int = 1


@dataclass
class Row:
    """One nccl-tests result row (raw tokens mapped by the header's columns)."""

    file: str
    line: int
    values: dict[str, str]


class Sink(Protocol):
    def event(self, event: Event) -> None: ...

    def row(self, row: Row) -> None: ...

    def wants_evidence(self, kind: str, fields: dict[str, str | None]) -> bool: ...


# nccl-tests lines that stand once per table, each on a line of its own: found inside
# another line (an NCCL record, another summary), the table around it was glued into
# other lines, where tier 2 cannot read its rows (attack-1 SA-9).
TABLE_ANCHORS = (b"Avg bus bandwidth", b"Out of bounds values", b"count")
MARKERS = (b"NCCL INFO ", b"NCCL WARN ")
HEADER_RE = re.compile(rb"size\s+count\s+type\s")  # tests_header in log_patterns.yaml


def swallowed(block: bytes, line_base: int) -> int | None:
    """The number of the first line of `block` that holds a table anchor together with
    an NCCL record or a second anchor, else None (a few finds per table: cheap)."""
    first = None
    for anchor in TABLE_ANCHORS:
        at = block.find(anchor)
        while at >= 0:
            start = block.rfind(b"\n", 0, at) + 1
            end = block.find(b"\n", at)
            line = block[start:end if end >= 0 else len(block)]
            if anchor == b"count" and not HEADER_RE.search(line):
                at = block.find(anchor, at + len(anchor))
                continue  # 'count' in another line: no table header
            if any(m in line for m in MARKERS) or \
                    sum(line.count(a) for a in TABLE_ANCHORS[:2]) + \
                    len(HEADER_RE.findall(line)) > 1:
                number = line_base + block.count(b"\n", 0, start)
                first = number if first is None else min(first, number)
                break
            at = block.find(anchor, at + len(anchor))
    return first


def glued_problem(line: int) -> Unread:
    return Unread(f"line {line} holds an nccl-tests table line glued to other records "
                  "(newlines lost?): the table cannot be read whole", line=line)


def _range_worker(args: tuple[str, int, int]) -> Tier1Counter:
    path, start, end = args
    counter = Tier1Counter()
    glued = None
    for block in file_blocks(path, start, end, problems=counter.problems):
        if glued is None:
            glued = swallowed(block, counter.lines + 1)
        counter.scan(block, counter.lines + 1)
    if glued is not None:
        counter.problems.append(glued_problem(glued))
    return counter.finish()


def _split_points(path: str, size: int, parts: int) -> list[tuple[str, int, int]]:
    bounds = [0]
    with open(path, "rb") as handle:
        for i in range(1, parts):
            bounds.append(max(range_start(handle.fileno(), size * i // parts, size), bounds[-1]))
    bounds.append(size)
    return [(path, a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def scan_sources(sources: list[Source], sink: Sink) -> list[Scanner]:
    """Scan every source into the sink, in input order.

    When the regular files are large together, a pool of processes counts them
    (a file of PARALLEL_MIN_BYTES or more in one byte range per worker, smaller
    files whole, so a directory of per-rank logs is spread too); the results
    are delivered here in order.  stdin and .gz inputs are read in this process.
    """
    sizes = [s.path.stat().st_size if is_plain_file(s) else 0 for s in sources]  # type: ignore[union-attr]
    workers = max(1, min(os.cpu_count() or 1, 4))
    if sum(sizes) < PARALLEL_MIN_BYTES:
        return [Scanner(source, sink).run() for source in sources]
    import multiprocessing

    ranges = [_split_points(str(source.path), size,
                            workers if size >= PARALLEL_MIN_BYTES else 1) if size else []
              for source, size in zip(sources, sizes, strict=True)]
    work = [item for items in ranges for item in items]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        counted = pool.imap(_range_worker, work, chunksize=max(1, len(work) // (workers * 16)))
        return [Scanner(source, sink).take([next(counted) for _ in items], size) if items
                else Scanner(source, sink).run()
                for source, size, items in zip(sources, sizes, ranges, strict=True)]


class Scanner:
    """Scan one source into the sink: tier 1 and tier 2, then totals."""

    def __init__(self, source: Source, sink: Sink) -> None:
        self.source = source
        self.sink = sink
        self.lines = 0
        self.bytes = 0
        self.problems: list[str] = []
        self._columns: list[str] | None = None

    def run(self) -> Scanner:
        """Count the whole source in this process."""
        counter, size, glued = Tier1Counter(), 0, None
        for chunk in chunks(self.source, problems=self.problems):
            if glued is None:
                glued = swallowed(chunk, counter.lines + 1)
            counter.scan(chunk, counter.lines + 1)
            size += len(chunk)
        if glued is not None:
            counter.problems.append(glued_problem(glued))
        return self.take([counter.finish()], size)

    def take(self, ranges: Iterable[Tier1Counter], size: int) -> Scanner:
        """Deliver the source's counted byte ranges, in order."""
        for counter in ranges:
            self._deliver(counter, self.lines)
            self.lines += counter.lines
            self.problems.extend(named(self.source.name, p) for p in counter.problems)
        self.bytes = size
        return self

    def _deliver(self, counter: Tier1Counter, line_offset: int) -> None:
        """Hand counted events to the sink (located examples first as evidence),
        then the range's other lines in order."""
        name = self.source.name
        for line_no, line in counter.tier2:
            self._line(line_offset + line_no, line)
        for sig, count in counter.signatures.items():
            examples = counter.examples.get(sig, [])
            for kind, items in sig:
                fields = dict(items)
                remaining = count
                for line_no, line in examples:
                    if remaining <= 0 or not self.sink.wants_evidence(kind, fields):
                        break
                    self.sink.event(Event(kind, fields, name, line_offset + line_no,
                                          context(line), decode(line).rstrip("\r")))
                    remaining -= 1
                if remaining > 0:
                    self.sink.event(Event(kind, fields, name, None, None, kind, remaining))

    # -- tier 2 lines and nccl-tests tables --------------------------------------
    def _line(self, line_no: int, line: bytes) -> None:
        if any(marker in line for marker in TIER1_MARKERS):
            return  # an NCCL record: tier 1 counted it
        name = self.source.name
        if self._columns is not None:
            row = ROW_START_RE.search(line)
            if row:
                tokens = decode(line[row.start():]).split()
                if ROW_START_RE.search(line, row.end()) and len(self.problems) < 64:
                    self.problems.append(named(name, Unread(
                        f"line {line_no} holds two nccl-tests rows (newlines lost?): the "
                        "second cannot be read", line=line_no)))
                self.sink.row(Row(name, line_no, dict(zip(self._columns, tokens, strict=False))))
                return
            if not line.isascii() and FOREIGN_ROW_RE.search(line) and len(self.problems) < 64:
                self.problems.append(named(name, Unread(
                    f"line {line_no} is an nccl-tests row whose size or count is not "
                    "ASCII digits: it cannot be read", line=line_no)))
        text = decode(line).rstrip("\r")
        ctx = None
        for kind, fields in parse_text(line):
            ctx = ctx or context(line)
            self.sink.event(Event(kind, fields, name, line_no, ctx, text))
            if kind in ("tests_header", "nccom_header"):
                if ROW_START_RE.search(line) and len(self.problems) < 64:
                    self.problems.append(named(name, Unread(
                        f"line {line_no} holds a table header and its rows (newlines "
                        "lost?): the table cannot be read", line=line_no)))
                header = text[text.find("size"):]
                self._columns = _columns(header)
            elif kind == "avg_busbw":
                self._columns = None


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
