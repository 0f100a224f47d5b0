"""Render a result as JSON, JUnit XML, Markdown (GitHub job summary) or a terminal table.

Report files are written by `write_atomic`: a regular file (or a new path) is
replaced atomically, so it is either whole or as it was; a device, a FIFO or an
open descriptor (/dev/null, /dev/stdout, bash's `>(cmd)`) is written in place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import stat
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from verify.exitcodes import Exit

VERDICT_EXIT = {"pass": Exit.PASS, "fail": Exit.FAIL, "inconclusive": Exit.INCONCLUSIVE}

# /dev/stdout, /dev/fd/N, /proc/self/fd/N: names of this process's own open descriptors.
_FD_LINK = re.compile(r"^/(?:dev/fd|proc/(?:self|thread-self|(?P<pid>\d+))/fd)/(?P<fd>\d+)$")


class WriteError(OSError):
    """A report cannot be written; str() is one line: `cannot write PATH: why`."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def write_atomic(path: str | Path, text: str | bytes) -> None:
    """Write `text` (UTF-8; bytes as given) to `path`, never leaving a half-written
    report or a temp file.

    A regular file or a new path gets a temporary file in the same directory,
    fsync'd and renamed over it: an existing file keeps its mode (and, where
    allowed, its owner), a new one gets 0666 less the umask.  Symbolic links are
    followed: the link's target is written, the link stays.  Character devices,
    FIFOs and this process's open descriptors are written in place, as a shell
    redirection would.  Every failure (a directory at `path`, a missing or
    unwritable directory, a full disk) is a `WriteError`.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    where = Path(path)  # what a failure's reason is about: the link's target once known
    try:
        descriptor = _own_descriptor(str(path))
        if descriptor is not None:
            _write_descriptor(descriptor, data)
            return
        try:
            info = os.stat(path)  # follows links, /proc's magic ones too
        except FileNotFoundError:
            info = None
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise OSError(errno.EISDIR, "is a directory")
        if info is not None and not stat.S_ISREG(info.st_mode):
            _write_in_place(path, data)  # a device, a FIFO: no temp file, no rename
            return
        where = Path(os.path.realpath(path))  # a link's target; the link itself stays
        resolved = _stat_or_none(where)
        if info is not None and (resolved is None or not os.path.samestat(info, resolved)):
            _write_in_place(path, data, truncate=True)  # a magic link to a deleted file
            return
        _replace(where, data, info)
    except OSError as exc:
        raise WriteError(exc.errno, _reason(exc, where), str(path)) from None


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _own_descriptor(path: str) -> int | None:
    """N when `path`, or a link on its way, names this process's descriptor N."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        match = _FD_LINK.match(current)
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


def _write_in_place(path: str | Path, data: bytes, truncate: bool = False) -> None:
    """Open what is there for writing (never creating it) and write."""
    flags = os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | (os.O_TRUNC if truncate else 0)
    fd = os.open(path, flags)
    try:
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
    while True:
        tmp = directory / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            # 0666 through the umask, as any new file; O_EXCL: never someone else's file
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
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


COMPACT_JSON_RANKS = 4096  # beyond this many ranks, JSON is written without indentation


def to_json(result: dict) -> str:
    """Indented for people; compact for a job of thousands of ranks, where Python's
    indenting encoder would cost seconds (its C encoder only writes compact JSON)."""
    if len(result.get("ranks_detail") or ()) > COMPACT_JSON_RANKS:
        return json.dumps(result, separators=(",", ":")) + "\n"
    return json.dumps(result, indent=2, sort_keys=False) + "\n"


def _fmt(value: object) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _where(ev: dict) -> str:
    rank = f" rank {ev['rank']}" if ev.get("rank") is not None else ""
    line = f":{ev['line']}" if ev["line"] else ""  # 0: not a line of a file
    return f"{ev['file']}{line}{rank}"


SUMMARY_FIELDS = (("transport", "transport"), ("provider", "provider"),
                  ("efa_used", "EFA used"), ("gdr_used", "GPUDirect RDMA"),
                  ("plugin_version", "aws-ofi-nccl"), ("nccl_version", "NCCL"),
                  ("libfabric_version", "libfabric"), ("nodes", "NCCL nodes"),
                  ("ranks", "ranks"), ("busbw_avg_GBps", "avg busbw GB/s"),
                  ("busbw_peak_GBps", "peak busbw GB/s"), ("wrong_values", "wrong values"))


def _summary(result: dict) -> tuple[tuple[str, str], ...]:
    """The log-derived facts, shown for commands that read logs."""
    return SUMMARY_FIELDS if result["tool"].get("command") in ("parse", "run") else ()


def _truncations(result: dict) -> list[dict]:
    """Inputs that ended early: a PASS on half a log must say so wherever it is shown."""
    return [e for e in result["errors"] if e["kind"] == "truncated_input"]


def _md_text(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


# XML 1.0 allows tab, LF and CR among the control characters; the rest (ANSI escapes'
# ESC, NUL) make a JUnit file that no reader accepts, so they are shown as \xNN.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def to_table(result: dict) -> str:
    """The terminal summary: verdict, key facts, checks with their first evidence line."""
    lines = [f"VERDICT: {result['verdict'].upper()}  ({result['verdict_reason']})"]
    if result.get("instance"):
        lines.append(f"instance: {result['instance']['name']} ({result['instance']['source']})")
    width = max(len(label) for _, label in SUMMARY_FIELDS)
    for key, label in _summary(result):
        lines.append(f"  {label:<{width}}  {_fmt(result.get(key))}")
    lines.append("checks:")
    for check in result["checks"]:
        flag = "" if check["required"] else " (not required)"
        lines.append(f"  {check['status'].upper():<8} {check['name']}{flag}: {check['message']}")
        if check.get("waiver"):
            waiver = check["waiver"]
            lines.append(f"           waived until {waiver['expires']}: {waiver['reason']}")
        for ev in check["evidence"][:1]:
            lines.append(f"           {_where(ev)}: {_clip(ev['text'], 160)}")
    for warning in _truncations(result):
        lines.append(f"WARNING: {warning['message'][:200]} (the verdict covers what was read)")
    count, listed = _errors(result, 10, lambda err: f"  {err['file']}:{err['line']} "
                            f"[{err['kind']}] {_clip(err['message'], 160)}", "      fix: ")
    if count:
        lines += [f"errors ({count}):", *listed]
    return "\n".join(lines) + "\n"


def _errors(result: dict, limit: int, entry: Callable[[dict], str], fix: str
            ) -> tuple[int, list[str]]:
    """How many error-severity entries there are, and the first `limit` as lines (each
    followed by its fix): the text and Markdown reports list them alike, and warnings
    only in JSON."""
    errors = [e for e in result["errors"] if e["severity"] == "error"]
    lines = []
    for err in errors[:limit]:
        lines.append(entry(err))
        if err.get("fix"):
            lines.append(fix + err["fix"])
    return len(errors), lines


def _clip(text: str, width: int) -> str:
    """A long message shortened at a word boundary, marked as cut: cut mid-word
    ('My EFA addr: fi_') it reads as if the log said that."""
    return textwrap.shorten(text.strip(), width, placeholder=" [...]")


def to_markdown(result: dict) -> str:
    verdict = result["verdict"].upper()
    tool = result["tool"]
    out = [f"## {tool['name']} {tool['command']}: {verdict}", "", f"{result['verdict_reason']}", ""]
    for warning in _truncations(result):
        out += [f"> **Warning:** {_md_text(warning['message'][:200])} "
                "(the verdict covers what was read)", ""]
    if _summary(result):
        out += ["| | |", "|---|---|"]
        out += [f"| {label} | {_fmt(result.get(key))} |" for key, label in _summary(result)]
    out += ["", "### Checks", "", "| check | status | required | detail | evidence |",
            "|---|---|---|---|---|"]
    for check in result["checks"]:
        ev = "<br>".join(f"`{_where(e)}`" for e in check["evidence"][:3])
        message = check["message"].replace("|", "\\|")
        if check.get("waiver"):
            message += f" (waived until {check['waiver']['expires']}: {check['waiver']['reason']})"
        out.append(f"| {check['name']} | {check['status']} | "
                   f"{'yes' if check['required'] else 'no'} | {message} | {ev} |")
    count, listed = _errors(result, 20, lambda err: f"- `{err['file']}:{err['line']}` "
                            f"**{err['kind']}**: {_clip(err['message'], 200)}", "  - fix: ")
    if count:
        out += ["", "### Errors", "", *listed]
    return "\n".join(out) + "\n"


def to_junit(result: dict) -> str:
    checks = result["checks"]
    failures = sum(c["status"] == "fail" for c in checks)
    errors = sum(c["status"] == "unknown" and c["required"] for c in checks)
    skipped = sum(c["status"] in ("skip", "waived") or
                  (c["status"] == "unknown" and not c["required"]) for c in checks)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuite name="efa-verify" tests="{len(checks)}" failures="{failures}" '
           f'errors="{errors}" skipped="{skipped}">']
    for check in checks:
        evidence = _xml_safe("\n".join(f"{_where(e)}: {e['text'].strip()}"
                                        for e in check["evidence"]))
        check = {**check, "message": _xml_safe(check["message"]),
                 "name": _xml_safe(check["name"])}
        out.append(f'  <testcase classname="efa-verify" name={quoteattr(check["name"])}>')
        status = check["status"]
        if status == "fail":
            out.append(f'    <failure message={quoteattr(check["message"])}>'
                       f"{escape(evidence)}</failure>")
        elif status == "waived":
            reason = _xml_safe(check.get("waiver", {}).get("reason", ""))
            out.append(f'    <skipped message={quoteattr("waived: " + reason)}/>')
        elif status == "skip":
            out.append(f'    <skipped message={quoteattr(check["message"])}/>')
        elif status == "unknown" and check["required"]:
            out.append(f'    <error type="inconclusive" message={quoteattr(check["message"])}>'
                       f"{escape(evidence)}</error>")
        elif status == "unknown":
            out.append(f'    <skipped message={quoteattr("unknown: " + check["message"])}/>')
        if evidence and status == "pass":
            out.append(f"    <system-out>{escape(evidence)}</system-out>")
        out.append("  </testcase>")
    out.append("</testsuite>")
    return "\n".join(out) + "\n"
