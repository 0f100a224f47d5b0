"""Open the inputs of `efa-verify parse`: files, directories of per-rank logs, stdin, .gz.

Inputs are read as bytes in large chunks that end on a line boundary, so a
10 MB single line or binary garbage costs linear time and bounded memory.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 8 << 20
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
    """Byte chunks that end with a newline (the last one may not).

    A truncated or corrupt .gz stops the input where it breaks: what was read
    is kept and the problem is appended to `problems` (a truncated input is
    evidence too, and must not cost the rest of the report).
    """
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
            yield carry + b"\n"
    finally:
        if source.path is not None:
            stream.close()
