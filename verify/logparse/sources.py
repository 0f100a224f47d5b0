"""Open the inputs of `efa-verify parse`: files, directories of per-rank logs, stdin, .gz.

Inputs are read as bytes in blocks that end on a line boundary, so a 10 MB
single line or binary garbage costs linear time and bounded memory.  Regular
files are read with each block sized to its final length up front (a small
read near the block's end finds the last newline): joining and slicing blocks
costs as much as counting their records does.
"""

from __future__ import annotations

import os
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# Small enough that a block and the pieces split from it stay in a core's L2 cache
# (measured: 1 MiB blocks count ~25% faster than 8 MiB ones).
CHUNK = 1 << 20
PROBE = 64 << 10  # how far a block's end is searched for a newline per read
# A line longer than MAX_LINE (records glued together when their newlines were lost)
# is read in pieces of at most that, each cut before a record where one starts: every
# later step costs what a line's length says, so one 50 MB line would cost minutes and
# gigabytes.  64 KiB holds the longest real NCCL line, a ring of ~12k ranks.
MAX_LINE = 64 << 10
MAX_CARRY = 4 << 20  # the most a block reads past its size looking for a line's end
# A record's `host:pid:tid [dev] ` prefix (with any tag glued on, `[1,0]<stdout>:`)
# ending where its marker begins.
RECORD_PREFIX_RE = re.compile(rb"(?<!\S)\S*:\d+:\d+ \[\d+\] $")
MARKERS = (b"NCCL INFO ", b"NCCL WARN ")
# A .gz that decodes to more than MAX_RATIO times its compressed size is a bomb, not a
# log (real NCCL logs compress 10-30x): refused once past BOMB_MIN_BYTES.
MAX_RATIO = 200


# A .gz that decodes to more than this, at more than MAX_RATIO times its compressed
# size, is refused (attack-1 H-5: 300 MB of zeros in 291 KB took minutes to scan).
BOMB_MIN_BYTES = 16 << 20


class SourceError(ValueError):
    """An input that cannot be read (missing file, unreadable directory, bad gzip)."""


class Unread(str):
    """A problem meaning part of an input could not be read as it was written, so a
    check fed by it cannot pass (a mangled failing log must never PASS, attack-1 SA-9).
    `everything`: the input's rest is lost (a corrupt or truncated .gz), so every check
    is affected; otherwise a line was cut into pieces (records glued together), which
    loses what tier 2 reads: nccl-tests tables and other error lines.  `line`: the
    first such line (1-based, in its input or byte range)."""

    everything: bool
    line: int

    def __new__(cls, text: str, everything: bool = False, line: int = 1) -> Unread:
        self = super().__new__(cls, text)
        self.everything, self.line = everything, line
        return self

    def __reduce__(self) -> tuple:  # through the parse pool's pipes
        return (Unread, (str(self), self.everything, self.line))


def named(name: str, problem: str) -> str:
    """`NAME: problem`, keeping an Unread one's kind and line."""
    text = f"{name}: {problem}"
    return Unread(text, problem.everything, problem.line) if isinstance(problem, Unread) \
        else text


@dataclass(frozen=True)
class Source:
    name: str
    path: Path | None  # None for stdin


def expand(paths: list[str]) -> list[Source]:
    """Files as given; directories expanded to their files (sorted, recursive).  A file
    named twice (`x ./x link-to-x`, or inside a directory also given) is read once:
    twice, every record and every bandwidth message would count double."""
    sources: list[Source] = []
    for text in paths:
        if text == "-":
            sources.append(Source("<stdin>", None))
            continue
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            if not files:
                raise SourceError(f"{text}: directory holds no files")
            sources.extend(Source(str(p), p) for p in files)
        elif path.is_file():
            sources.append(Source(text, path))
        elif path.exists():
            raise SourceError(f"{text}: not a regular file")
        else:
            raise SourceError(f"{text}: no such file or directory")
    seen: set[tuple[int, int]] = set()
    unique = []
    for source in sources:
        if source.path is not None:
            info = source.path.stat()
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
        unique.append(source)
    return unique


def is_plain_file(source: Source) -> bool:
    """A regular file that is not gzip: readable at any offset, so splittable."""
    if source.path is None:
        return False
    try:
        with source.path.open("rb") as handle:
            head = handle.read(2)
    except OSError as exc:
        raise SourceError(f"{source.name}: {exc.strerror}") from None
    if source.path.suffix == ".gz" and head != b"\x1f\x8b":
        raise SourceError(f"{source.name}: corrupt .gz: it does not start with gzip's "
                          "magic bytes")
    return head != b"\x1f\x8b"


def _line_end(fd: int, start: int, at: int, end: int) -> int:
    """The offset just past the last newline before `at` (not before `start`), else
    past the first one after it; a line longer than MAX_CARRY is cut (before a record
    where one starts) and cut further by LongLines."""
    if at >= end:
        return end
    low = max(start, at - PROBE)
    newline = os.pread(fd, at - low, low).rfind(b"\n")
    if newline >= 0:
        return low + newline + 1
    pos, limit = at, min(end, start + MAX_CARRY)
    while pos < limit:
        probe = os.pread(fd, min(PROBE, limit - pos), pos)
        if not probe:
            break
        newline = probe.find(b"\n")
        if newline >= 0:
            return pos + newline + 1
        pos += len(probe)
    if pos <= at:
        return at
    low = max(at, pos - MAX_LINE)
    return low + _cut_at(os.pread(fd, pos - low, low))


def range_start(fd: int, at: int, end: int) -> int:
    """Where a byte range starting near `at` begins: past the first newline from `at`
    on, or where file_blocks would cut a long line there (never a whole line read)."""
    return _line_end(fd, at, at, end)


def _cut_at(window: bytes) -> int:
    """Where a line is cut within `window`, its next MAX_LINE bytes at most: before
    the last record that starts in it (with the record's prefix), so no record is
    split; at the window's end when no record starts past its first byte."""
    marker = max(window.rfind(m) for m in MARKERS)
    if marker <= 0:
        return len(window)
    prefix = RECORD_PREFIX_RE.search(window, max(0, marker - 512), marker)
    return prefix.start() if prefix and prefix.start() > 0 else marker


class LongLines:
    """Lines over MAX_LINE in one input or byte range, cut into pieces; one warning."""

    def __init__(self) -> None:
        self.first: int | None = None  # byte offset of the first long line
        self.first_line = 1  # its line number
        self.lines = 0  # newlines in the blocks seen so far
        self.cuts = 0

    def bounded(self, block: bytes, offset: int) -> bytes:
        """The block with every line over MAX_LINE cut into pieces of at most that.

        A line of MAX_LINE bytes covers a whole aligned half-window with no newline,
        so a block without one (any real log) is checked by a few C-speed finds."""
        half = MAX_LINE // 2
        lines_before, self.lines = self.lines, self.lines + block.count(b"\n")
        if all(block.find(b"\n", k, k + half) >= 0
               for k in range(0, len(block) - half + 1, half)):
            return block
        out, start = [], 0
        while start < len(block):
            stop = block.find(b"\n", start) + 1 or len(block)
            if stop - start > MAX_LINE + 1 and self.first is None:
                self.first = offset + start
                self.first_line = lines_before + block.count(b"\n", 0, start) + 1
            while stop - start > MAX_LINE + 1:
                cut = start + _cut_at(block[start:start + MAX_LINE])
                out += (block[start:cut], b"\n")
                self.cuts += 1
                start = cut
            out.append(block[start:stop])
            start = stop
        return b"".join(out)

    def problem(self) -> list[str]:
        """The warning, when a line was cut: evidence cited after it counts each
        piece as a line, and a record longer than MAX_LINE is split mid-text."""
        if self.first is None:
            return []
        return [Unread(f"line {self.first_line}, at byte {self.first} is over "
                       f"{MAX_LINE >> 10} KiB (records glued together?) and cannot be read "
                       f"whole: it is read in pieces cut before records ({self.cuts} cuts); "
                       f"line numbers after it count each piece as a line",
                       line=self.first_line)]


def file_blocks(path: str | Path, start: int = 0, end: int | None = None,
                size: int = CHUNK, problems: list[str] | None = None) -> Iterator[bytes]:
    """Blocks of whole lines covering bytes [start, end) of a regular file (`start`
    and `end` at line starts or at range_start's cuts).  Only the file's end may be
    unterminated (the scanner decides what a cut last line is
    worth); a line over MAX_LINE is cut into pieces that end with a newline, and
    `problems` gets one warning saying so."""
    long_lines = LongLines()
    try:
        with open(path, "rb", buffering=0) as handle:
            fd = handle.fileno()
            total = os.fstat(fd).st_size
            end = total if end is None else end
            pos = start
            while pos < end:
                block = os.pread(fd, _line_end(fd, pos, min(pos + size, end), end) - pos, pos)
                if not block:
                    break  # the file shrank under us
                offset, pos = pos, pos + len(block)
                block = long_lines.bounded(block, offset)
                if block.endswith(b"\n") or pos >= total:
                    yield block
                else:  # cut at MAX_CARRY, or where range_start cut a long line
                    long_lines.cuts += 1
                    yield block + b"\n"
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})") from None
    if problems is not None:
        problems += long_lines.problem()


def _raw(source: Source) -> BinaryIO:
    if source.path is None:
        if sys.stdin is None:  # started with stdin closed (`<&-`)
            raise SourceError("-: standard input is closed; give a file")
        return sys.stdin.buffer
    try:
        return source.path.open("rb")
    except OSError as exc:
        raise SourceError(f"{source.name}: {exc.strerror}") from None


def _decoded(raw: BinaryIO, size: int, problems: list[str] | None, name: str
             ) -> Iterator[bytes]:
    """The input's bytes, gunzipped as a stream when it starts with gzip's magic.

    zlib's decompressor object keeps every byte it decoded, so a truncated .gz loses
    nothing before the break (GzipFile.read() dropped its whole last read), and each
    step yields at most `size` bytes (a gzip bomb costs time linear in its size and
    bounded memory).  Concatenated members are read one after another."""
    head = raw.read(2)
    if head != b"\x1f\x8b":
        if head:
            yield head
        while block := raw.read(size):
            yield block
        return
    pending = head
    read = decoded = 0
    decoder = zlib.decompressobj(wbits=31)
    try:
        while True:
            if decoder.eof:  # the next member, after any NUL padding
                pending = (decoder.unused_data + pending).lstrip(b"\x00")
                while not pending:
                    pending = raw.read(size)
                    if not pending:
                        return
                    pending = pending.lstrip(b"\x00")
                decoder = zlib.decompressobj(wbits=31)
            if not pending and not decoder.unconsumed_tail:
                pending = raw.read(size)
                if not pending:
                    raise EOFError("compressed file ended before the end-of-stream marker")
            data = decoder.unconsumed_tail + pending
            read += len(pending)
            pending = b""
            out = decoder.decompress(data, size)
            if out:
                decoded += len(out)
                if decoded > BOMB_MIN_BYTES and decoded > MAX_RATIO * read:
                    raise SourceError(f"{name}: decodes to over {MAX_RATIO} times its "
                                      f"compressed size ({decoded >> 20} MiB from "
                                      f"{read >> 10} KiB): not a log (a gzip bomb?)")
                yield out
    except (EOFError, zlib.error) as exc:
        what = "truncated .gz" if isinstance(exc, EOFError) else "corrupt .gz"
        if problems is None:
            raise SourceError(f"{name}: {what} ({exc})") from None
        problems.append(Unread(f"{name}: {what}: the input ends early, after {decoded} "
                               f"decoded bytes ({exc})", everything=True))


def chunks(source: Source, size: int = CHUNK, problems: list[str] | None = None
           ) -> Iterator[bytes]:
    """Byte chunks that end with a newline (the input's last one may not).

    A truncated or corrupt .gz stops the input where it breaks: what was read
    is kept and the problem is appended to `problems` (a truncated input is
    evidence too, and must not cost the rest of the report).
    """
    found: list[str] = []
    if is_plain_file(source):
        yield from file_blocks(source.path, problems=found)  # type: ignore[arg-type]
    else:
        yield from _stream_blocks(source, size, problems, found)
    if problems is not None:
        problems += [named(source.name, problem) for problem in found]


def _stream_blocks(source: Source, size: int, problems: list[str] | None, found: list[str]
                   ) -> Iterator[bytes]:
    """Blocks of whole lines from stdin or a .gz: a line with no newline in sight is
    held to MAX_LINE bytes, then cut as a plain file's is."""
    raw = _raw(source)
    long_lines, offset = LongLines(), 0  # offset: where `carry` starts in the input
    carry = bytearray()  # grows in place: a line with no newline costs linear time
    try:
        for block in _decoded(raw, size, problems, source.name):
            cut = block.rfind(b"\n") + 1
            carry += block[:cut] if cut else block
            if not cut and len(carry) <= MAX_LINE:
                continue
            whole = long_lines.bounded(bytes(carry), offset)
            rest = b"" if cut else whole[whole.rfind(b"\n") + 1:]  # an unterminated piece
            if len(rest) < len(whole):
                yield whole[:len(whole) - len(rest)]
            offset += len(carry) - len(rest)
            carry = bytearray(rest)
            carry += block[cut:] if cut else b""
        if carry:
            yield long_lines.bounded(bytes(carry), offset)
    except OSError as exc:
        raise SourceError(f"{source.name}: cannot read ({exc.strerror or exc})") from None
    finally:
        if source.path is not None:
            raw.close()
    found += long_lines.problem()
