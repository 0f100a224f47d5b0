"""Shared CLI plumbing: one-line errors and exit codes, never a traceback."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from verify.exitcodes import Exit

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """An expected failure: printed as one line, exits with `code`."""

    def __init__(self, message: str, code: Exit = Exit.USAGE) -> None:
        super().__init__(message)
        self.code = code


def input_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (exit 2), imported lazily to keep CLIs light."""
    from verify.profiles import UnknownInstance
    from verify.report import WriteError
    from verify.tables import TableError
    from verify.versions import VersionError

    # WriteError: a report path that cannot be written (-o, --junit, --markdown, --out)
    return (UnknownInstance, TableError, VersionError, WriteError)


# Errors a write to a stream (no file name) gives when its reader or disk is gone.
_STREAM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EPIPE, errno.EIO)


def _stdout_broken() -> bool:
    """After an OSError: was it standard output (a full disk, a closed pipe)?"""
    try:
        sys.stdout.flush()
    except OSError:
        return True
    return False


def _flush_stdout(prog: str) -> None:
    """Flush now, so a full disk or closed pipe on stdout is one line, not a traceback
    at interpreter exit."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        _stdout_failed(prog, exc)


def _stdout_failed(prog: str, exc: OSError) -> None:
    # Point stdout at /dev/null so the interpreter's last flush cannot fail again.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    click.echo(f"{prog}: error: cannot write to standard output: {exc.strerror or exc}",
               err=True)
    sys.exit(int(Exit.USAGE))


def handle_errors(prog: str, extra: tuple[type[BaseException], ...] = ()) -> Callable[[F], F]:
    """Turn expected exceptions into `prog: error: ...` and the right exit code."""

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                result = func(*args, **kwargs)
                _flush_stdout(prog)
                return result
            except SystemExit:
                _flush_stdout(prog)
                raise
            except CliError as exc:
                click.echo(f"{prog}: error: {exc}", err=True)
                sys.exit(int(exc.code))
            except input_errors() + extra as exc:
                click.echo(f"{prog}: error: {exc}", err=True)
                sys.exit(int(Exit.USAGE))
            except OSError as exc:  # what no module above turned into its own error
                if exc.filename is None and (exc.errno in _STREAM_ERRNOS or _stdout_broken()):
                    _stdout_failed(prog, exc)
                where = f"{exc.filename}: " if exc.filename else ""
                click.echo(f"{prog}: error: {where}{exc.strerror or exc}", err=True)
                sys.exit(int(Exit.USAGE))

        return inner  # type: ignore[return-value]

    return wrap
