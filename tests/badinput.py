"""The bad-input harness: run a CLI in-process, then check the three promises.

Every bad input must give (1) the expected exit code, (2) at most one line on
stderr and never a traceback (exactly one line when the exit code says error),
and (3) leave the scratch folder exactly as it was: nothing half-written,
nothing replaced, nothing removed.  The CLIs run in-process through click's
runner (one interpreter, no subprocess per case) so hundreds of cases stay fast.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner

# Exit codes that mean "this input was refused": the one line on stderr says why.
ERROR_CODES = (2, 4, 5, 6)


@dataclass(frozen=True)
class Case:
    """One bad input: its id (as in the audit where it came from), the argv after the
    program name, the expected exit code, and a word expected in the message."""

    id: str
    argv: tuple[str, ...]
    code: int
    says: str = ""
    env: dict[str, str] = field(default_factory=dict)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root`: kind, size, mode, mtime and link target."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
            entries[str(path.relative_to(root))] = (
                stat.S_IFMT(info.st_mode), info.st_size if stat.S_ISREG(info.st_mode) else 0,
                stat.S_IMODE(info.st_mode), info.st_mtime_ns, target)
    return entries


def check(main: Callable, case: Case, scratch: Path) -> str:
    """Run `case` against the click command `main` in `scratch`; return stderr."""
    before = snapshot(scratch)
    runner = CliRunner()
    old = os.getcwd()
    os.chdir(scratch)
    try:
        result = runner.invoke(main, list(case.argv), env=case.env, catch_exceptions=True)
    finally:
        os.chdir(old)
    err = result.stderr
    assert not (result.exception and not isinstance(result.exception, SystemExit)), \
        f"{case.id}: raised {result.exception!r} (a traceback for the user)"
    assert "Traceback" not in err, f"{case.id}: traceback on stderr: {err[-500:]}"
    assert result.exit_code == case.code, \
        f"{case.id}: exit {result.exit_code}, expected {case.code}; stderr: {err[-300:]!r}"
    lines = err.splitlines()
    if case.code in ERROR_CODES:
        assert len(lines) == 1, f"{case.id}: expected one line on stderr, got {lines!r}"
    else:
        assert len(lines) <= 1, f"{case.id}: more than one line on stderr: {lines!r}"
    if case.says:
        assert case.says in err, f"{case.id}: {case.says!r} not in {err!r}"
    assert snapshot(scratch) == before, f"{case.id}: the scratch folder changed"
    return err
