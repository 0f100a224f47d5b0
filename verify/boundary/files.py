"""One reader and one writer for every file efakit is given or writes.

The reader takes a regular file or `-` (standard input), never more than a cap,
and refuses FIFOs, devices and directories without blocking: the file is opened
with O_NONBLOCK and fstat'd, so a FIFO with no writer is an error, not a hang.
`fetch` reads from the network under an overall deadline (a per-read timeout lets a
server that answers one byte every 0.3 s hold a caller forever).

The writer never writes a file that is an input of the same command (`parse in.log -o
in.log` would replace the log with its verdict): commands call `refuse_overlap` with
their inputs and outputs before doing any work, and `write_atomic` takes the inputs
again as a last guard.  A regular file (or a new path) is replaced through a temp file
created with O_EXCL|O_NOFOLLOW in the destination's own directory, fsync'd and renamed,
so the file is whole or as it was and nothing is written outside that directory; a
symbolic link at the output path is refused (writing through it wrote elsewhere); a
device, a FIFO or an open descriptor (/dev/null, /dev/stdout, bash's `>(cmd)`) is
written in place, as a shell redirection would, but never waits on a FIFO nobody reads.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

# Specs, policies and records are a few KiB; 4 MiB leaves room and stays fast to parse.
MAX_INPUT_BYTES = 4 * 1024 * 1024

# How long a FIFO output may wait for its reader to open it (never forever).
FIFO_READER_WAIT = 2.0

# /dev/stdout, /dev/fd/N, /proc/self/fd/N: names of this process's own open descriptors.
_FD_LINK = re.compile(r"/(?:dev/fd|proc/(?:self|thread-self|(?P<pid>[0-9]+))/fd)/(?P<fd>[0-9]+)")

T = TypeVar("T")


class ReadError(ValueError):
    """An input that cannot be read; str() is one line `PATH: why`."""


class WriteError(OSError):
    """An output that cannot be written; str() is one line: `cannot write PATH: why`."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


class SameFileError(ValueError):
    """An output that is one of the command's inputs (or another output)."""


# --- reading ---------------------------------------------------------------------------


def read_bytes(path: str | Path, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file (or of standard input for `-`), at most `limit`."""
    if str(path) == "-":
        return _read_fd(sys.stdin.fileno(), "-", limit, regular_only=False)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise ReadError(f"{path}: {exc.strerror or exc}") from None
    try:
        return _read_fd(fd, str(path), limit, regular_only=True)
    finally:
        os.close(fd)


def read_text(path: str | Path, limit: int = MAX_INPUT_BYTES) -> str:
    """`read_bytes` decoded as UTF-8, with one line for text that is not."""
    data = read_bytes(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReadError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _read_fd(fd: int, name: str, limit: int, regular_only: bool) -> bytes:
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ReadError(f"{name}: is a directory, expected a file")
        if regular_only and not stat.S_ISREG(info.st_mode):
            raise ReadError(f"{name}: not a regular file (a FIFO, device or socket); "
                            "give a file")
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise ReadError(f"{name}: {info.st_size} bytes, more than the {limit} allowed")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise ReadError(f"{name}: more than the {limit} bytes allowed")
        return b"".join(chunks)
    except OSError as exc:
        raise ReadError(f"{name}: {exc.strerror or exc}") from None


def within(seconds: float, work: Callable[[], T]) -> T:
    """`work()`'s result, or TimeoutError once `seconds` have passed in all.

    For network reads: socket timeouts are per read, so only an overall deadline
    bounds a peer that trickles bytes.  The work runs in a daemon thread that is
    left behind on timeout (it ends with the process or when its socket does)."""
    box: list = []

    def run() -> None:
        try:
            box.append((True, work()))
        except BaseException as exc:  # handed to the caller's thread
            box.append((False, exc))

    worker = threading.Thread(target=run, name="efakit-deadline", daemon=True)
    worker.start()
    worker.join(seconds)
    if not box:
        raise TimeoutError(f"no answer within {seconds:g} s")
    ok, value = box[0]
    if not ok:
        raise value
    return value


# --- the same file on both sides -------------------------------------------------------


def _identity(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) of what `path` names (links followed), None when nothing is there
    or it is not a regular file (a device or FIFO is a stream, not a file to keep)."""
    if str(path) == "-":
        return None
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISREG(info.st_mode) else None


def refuse_overlap(outputs: Iterable[tuple[str, str | Path | None]],
                   inputs: Iterable[str | Path | None]) -> None:
    """Refuse, before any work, an output that is one of the inputs or another output.

    `outputs` are (option, path) pairs (a None path is an output not asked for);
    files are compared by device and inode, so a link, a `./` or a hard link to an
    input is the input.  A new path is compared by its resolved name with the others."""
    known: dict[tuple[int, int], str] = {}
    for given in inputs:
        if given is not None:
            ident = _identity(given)
            if ident is not None:
                known.setdefault(ident, str(given))
    taken: dict[object, str] = {}
    for option, target in outputs:
        if target is None:
            continue
        ident = _identity(target)
        if ident is not None and ident in known:
            raise SameFileError(f"{option} {target} is the input {known[ident]}; "
                                "an output may not replace an input")
        key = ident if ident is not None else (
            None if os.path.exists(target) else os.path.realpath(target))
        if key is None:
            continue  # a device, a FIFO: written in place, several may share it
        if key in taken:
            raise SameFileError(f"{taken[key]} and {option} name the same file {target}; "
                                "each output needs its own")
        taken[key] = option


# --- writing ---------------------------------------------------------------------------


def write_atomic(path: str | Path, text: str | bytes,
                 inputs: Iterable[str | Path | None] = ()) -> None:
    """Write `text` (UTF-8; bytes as given) to `path`, never leaving a half-written
    file or a temp file, and never over one of `inputs`.

    A regular file or a new path gets a temporary file in the same directory,
    fsync'd and renamed over it: an existing file keeps its mode (and, where
    allowed, its owner), a new one gets 0666 less the umask.  A symbolic link at
    `path` is refused, live or dangling: writing through it wrote outside the output's
    directory (`-o lnk` with lnk -> /etc/passwd replaced /etc/passwd as root, attack-2
    D-1/D-2).  Character devices, FIFOs and this process's open descriptors
    (/dev/stdout, bash's `>(cmd)`: links the kernel resolves to our own descriptor) are
    written in place.  Every failure (an input at `path`, a link, a directory, a missing
    or unwritable directory, a full disk) is a `WriteError`.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    where = Path(path)  # what a failure's reason is about: the link's target once known
    try:
        ident = _identity(path)
        if ident is not None and any(_identity(i) == ident for i in inputs if i is not None):
            raise OSError(errno.EEXIST, "it is an input of this command; "
                                        "an output may not replace an input")
        descriptor = _own_descriptor(str(path))
        if descriptor is not None:
            _write_descriptor(descriptor, data)
            return
        if os.path.islink(path):
            raise OSError(errno.ELOOP, "it is a symbolic link; give the file itself "
                                       "(an output is never written through a link)")
        try:
            info = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise OSError(errno.EISDIR, "is a directory")
        if info is not None and not stat.S_ISREG(info.st_mode):
            _write_in_place(path, data)  # a device, a FIFO: no temp file, no rename
            return
        # the directory resolved, the name as given: the rename replaces whatever is
        # at the name (a link planted since the check included), never a link's target
        where = Path(os.path.realpath(os.path.dirname(os.path.abspath(path)))) / \
            os.path.basename(os.path.abspath(path))
        _replace(where, data, info)
    except OSError as exc:
        raise WriteError(exc.errno, _reason(exc, where), str(path)) from None


def _own_descriptor(path: str) -> int | None:
    """N when `path`, or a link on its way, names this process's descriptor N."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        match = _FD_LINK.fullmatch(current)
        if match and match["pid"] in (None, str(os.getpid())):
            return int(match["fd"])
        if not os.path.islink(current):
            return None
        current = os.path.normpath(os.path.join(os.path.dirname(current),
                                                os.readlink(current)))
    return None


def _write_descriptor(fd: int, data: bytes) -> None:
    """Write at the descriptor's own offset, after what this process printed there:
    `--junit /dev/stdout > file` keeps the file's other output too."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):  # a test's capture
            if stream is not None and stream.fileno() == fd:
                stream.flush()
    _write_all(fd, data)


def _write_in_place(path: str | Path, data: bytes) -> None:
    """Open what is there for writing (never creating it) and write.

    Opened with O_NONBLOCK: a FIFO nobody reads would block a blocking open forever
    (`mkfifo out; efa-verify parse x.log -o out` hung, attack-1 H-4); it gives ENXIO
    instead, retried for FIFO_READER_WAIT seconds (a reader being started beside us),
    then refused in one line.  Writes then block as usual (a slow reader is a reader)."""
    flags = os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW
    deadline = time.monotonic() + FIFO_READER_WAIT
    while True:
        try:
            fd = os.open(path, flags)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            if time.monotonic() >= deadline:
                raise OSError(errno.ENXIO, "a FIFO that nothing reads (start its reader "
                                           "first, or give a file)") from None
            time.sleep(0.02)
    try:
        os.set_blocking(fd, True)
        _write_all(fd, data)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _replace(target: Path, data: bytes, old: os.stat_result | None) -> None:
    """Temp file beside `target`, fsync, rename over it; the temp file never outlives us."""
    directory = target.parent
    # O_EXCL: never someone else's file; O_NOFOLLOW: never through a planted link.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        tmp = directory / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)  # 0666 through the umask, as any new file
            break
        except FileExistsError:
            continue
    try:
        try:
            if old is not None:
                if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                    with contextlib.suppress(OSError):  # not ours to give: the mode still is
                        os.fchown(fd, old.st_uid, old.st_gid)
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _reason(exc: OSError, where: Path) -> str:
    """The kernel's reason, made specific where it is vague (which directory is missing)."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EISDIR:
        return "it is a directory"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        for parent in where.absolute().parents:  # nearest first
            if parent.is_dir():
                break
            if os.path.lexists(parent):
                return f"{parent} is not a directory"
        if not where.parent.is_dir():
            return f"directory {where.parent} does not exist"
        return f"{where.parent} does not allow new files ({reason})"
    return reason
