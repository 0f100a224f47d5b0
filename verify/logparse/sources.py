"""Open the inputs of `efa-verify parse`: files, directories of per-rank logs, stdin, .gz.

Inputs are read as bytes in blocks that end on a line boundary, so a 10 MB
single line or binary garbage costs linear time and bounded memory.  Regular
files are read with each block sized to its final length up front (a small
read near the block's end finds the last newline): joining and slicing blocks
costs as much as counting their records does.
"""

from __future__ import annotations

import gzip
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


def _open(source: Source) -> BinaryIO:
    if source.path is None:
        stream: BinaryIO = sys.stdin.buffer
        head = stream.peek(2)[:2] if hasattr(stream, "peek") else b""
        return gzip.GzipFile(fileobj=stream) if head == b"\x1f\x8b" else stream
    try:
        handle = source.path.open("rb")
    except OSError as exc:
        raise SourceError(f"{source.name}: {exc.strerror}") from None
    if handle.read(2) == b"\x1f\x8b":
        handle.seek(0)
        return gzip.GzipFile(fileobj=handle)  # type: ignore[return-value]
    handle.seek(0)
    return handle


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
    stream = _open(source)
    carry = b""
    try:
        while True:
            try:
                block = stream.read(size)
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                if problems is None:
                    raise SourceError(f"{source.name}: cannot read ({exc})") from None
                problems.append(f"{source.name}: input ends early ({exc})")
                block = b""
            except OSError as exc:
                raise SourceError(f"{source.name}: cannot read ({exc})") from None
            if not block:
                break
            block = carry + block if carry else block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                if len(block) > MAX_CARRY:
                    yield block + b"\n"
                    carry = b""
                else:
                    carry = block
                continue
            carry = block[cut:]
            yield block[:cut]
        if carry:
            yield carry
    finally:
        if source.path is not None:
            stream.close()
