"""Open the inputs of `efa-verify parse`: files, directories of per-rank logs, stdin, .gz.

Inputs are read as bytes in blocks that end on a line boundary, so a 10 MB
single line or binary garbage costs linear time and bounded memory.  Regular
files are read with each block sized to its final length up front (a small
read near the block's end finds the last newline): joining and slicing blocks
costs as much as counting their records does.
"""

from __future__ import annotations

import os
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
MAX_CARRY = 64 << 20  # a line longer than this is cut, never held whole
# A .gz that decodes to more than this, at more than MAX_RATIO times its compressed
# size, is a bomb, not a log (real NCCL logs compress 10-30x): it stops there.
BOMB_BYTES = 256 << 20
MAX_RATIO = 200


class SourceError(ValueError):
    """An input that cannot be read (missing file, unreadable directory, bad gzip)."""


@dataclass(frozen=True)
class Source:
    name: str
    path: Path | None  # None for stdin


def expand(paths: list[str]) -> list[Source]:
    """Files as given; directories expanded to their files (sorted, recursive)."""
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
    return sources


def is_plain_file(source: Source) -> bool:
    """A regular file that is not gzip: readable at any offset, so splittable."""
    if source.path is None:
        return False
    try:
        with source.path.open("rb") as handle:
            return handle.read(2) != b"\x1f\x8b"
    except OSError as exc:
        raise SourceError(f"{source.name}: {exc.strerror}") from None


def _line_end(fd: int, start: int, at: int, end: int) -> int:
    """The offset just past the last newline before `at` (not before `start`), else
    past the first one after it; a line longer than MAX_CARRY is cut."""
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
    return max(pos, at)


def file_blocks(path: str | Path, start: int = 0, end: int | None = None,
                size: int = CHUNK) -> Iterator[bytes]:
    """Blocks of whole lines covering bytes [start, end) of a regular file.  Only the
    input's end may be unterminated (the scanner decides what a cut last line is
    worth); a line cut at MAX_CARRY gets a newline."""
    try:
        with open(path, "rb", buffering=0) as handle:
            fd = handle.fileno()
            end = os.fstat(fd).st_size if end is None else end
            pos = start
            while pos < end:
                block = os.pread(fd, _line_end(fd, pos, min(pos + size, end), end) - pos, pos)
                if not block:
                    break  # the file shrank under us
                pos += len(block)
                yield block if block.endswith(b"\n") or pos >= end else block + b"\n"
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})") from None


def _raw(source: Source) -> BinaryIO:
    if source.path is None:
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
                if decoded > BOMB_BYTES and decoded > MAX_RATIO * read:
                    raise EOFError(f"decodes to over {MAX_RATIO} times its size, read up to "
                                   f"{decoded >> 20} MiB: not a log (a gzip bomb?)")
                yield out
    except (EOFError, zlib.error) as exc:
        if problems is None:
            raise SourceError(f"{name}: cannot read ({exc})") from None
        problems.append(f"{name}: input ends early ({exc})")


def chunks(source: Source, size: int = CHUNK, problems: list[str] | None = None
           ) -> Iterator[bytes]:
    """Byte chunks that end with a newline (the input's last one may not).

    A truncated or corrupt .gz stops the input where it breaks: what was read
    is kept and the problem is appended to `problems` (a truncated input is
    evidence too, and must not cost the rest of the report).
    """
    if is_plain_file(source):
        yield from file_blocks(source.path)  # type: ignore[arg-type]
        return
    raw = _raw(source)
    carry = bytearray()  # grows in place: a line with no newline costs linear time
    try:
        for block in _decoded(raw, size, problems, source.name):
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                carry += block
                if len(carry) > MAX_CARRY:
                    yield bytes(carry) + b"\n"
                    carry = bytearray()
                continue
            if carry:
                carry += block[:cut]
                yield bytes(carry)
                carry = bytearray(block[cut:])
            else:
                yield block[:cut]
                carry = bytearray(block[cut:])
        if carry:
            yield bytes(carry)
    except OSError as exc:
        raise SourceError(f"{source.name}: cannot read ({exc.strerror or exc})") from None
    finally:
        if source.path is not None:
            raw.close()
