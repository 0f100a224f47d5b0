"""Shared CLI plumbing: one-line errors and exit codes, never a traceback."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from verify.boundary.values import excerpt
from verify.exitcodes import Exit

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """An expected failure: printed as one line, exits with `code`."""

    def __init__(self, message: str, code: Exit = Exit.USAGE) -> None:
        super().__init__(message)
        self.code = code


class OneLineGroup(click.Group):
    """A command group whose usage errors are one line on stderr, exit 2.

    Click's own form is three lines (Usage:, Try ..., Error:); the project's rule is
    one line for any bad input.  Errors of parsing (the group's options, the command
    name, a command's options and arguments) and ClickExceptions a command raises
    all pass through here."""

    def make_context(self, info_name: str | None, *args: Any, **kwargs: Any
                     ) -> click.Context:
        try:
            return super().make_context(info_name, *args, **kwargs)
        except click.ClickException as exc:
            _usage_line(exc, self.name or "")

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            _usage_line(exc, self.name or "")


def _usage_line(exc: click.ClickException, prog: str) -> NoReturn:
    """`efa-verify parse: error: no such option '--foo'. (see efa-verify parse --help)`:
    the command named as the program's own name, however it was started (an entry
    point, `python -m`, a test runner)."""
    # click 8.2+: a bare group shows its help (older click prints it without raising)
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        exc.show()
        sys.exit(exc.exit_code)
    names, ctx = [], getattr(exc, "ctx", None)
    while ctx is not None:
        names.append(ctx.info_name if ctx.parent is not None else prog)
        ctx = ctx.parent
    where = " ".join(reversed(names)) or prog
    message = " ".join(exc.format_message().split())
    message = message[:1].lower() + message[1:] if message[1:2].islower() else message
    hint = f" (see {where} --help)" if isinstance(exc, click.UsageError) else ""
    click.echo(excerpt(f"{where}: error: {message}{hint}"), err=True)
    sys.exit(exc.exit_code)


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
                click.echo(f"{prog}: error: {excerpt(str(exc))}", err=True)
                sys.exit(int(exc.code))
            except input_errors() + extra as exc:
                click.echo(f"{prog}: error: {excerpt(str(exc))}", err=True)
                sys.exit(int(Exit.USAGE))
            except OSError as exc:  # what no module above turned into its own error
                if exc.filename is None and (exc.errno in _STREAM_ERRNOS or _stdout_broken()):
                    _stdout_failed(prog, exc)
                where = f"{exc.filename}: " if exc.filename else ""
                click.echo(f"{prog}: error: {excerpt(where + str(exc.strerror or exc))}",
                           err=True)
                sys.exit(int(Exit.USAGE))

        return inner  # type: ignore[return-value]

    return wrap


def instance_profile(text: str | None):
    """The --instance-type profile, or None when the option was not given ('' is a
    mistake, not "detect": resolve refuses it in one line)."""
    from verify.profiles import resolve

    return None if text is None else resolve(text)


def provider_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """--expect-provider's check: a libfabric provider name (efa, tcp, shm...); an empty
    one would match nothing."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_;+-]*", value.strip()):
        raise click.BadParameter(f"{value!r} is not a libfabric provider name (e.g. efa)")
    return value


def timeout_options(scope: str, defaults: str) -> Callable[[Callable], Callable]:
    """--timeout and --stall-timeout, in seconds, for run and sweep: every stage that
    starts processes has a hard limit and a progress watch, so nothing can hang."""

    from verify.boundary.values import MAX_SECONDS, Finite

    def wrap(func: Callable) -> Callable:
        func = click.option("--stall-timeout", type=Finite(1, MAX_SECONDS), default=None,
                            help=f"{scope}: stop when no rank has printed for this many "
                                 f"seconds (default from {defaults}).")(func)
        return click.option("--timeout", type=Finite(1, MAX_SECONDS), default=None,
                            help=f"{scope}: hard limit in seconds for the benchmark stage "
                                 f"(default from {defaults}).")(func)

    return wrap


def nccl_tests_options(func: Callable) -> Callable:
    """--test and --tests-dir: the same on run and sweep, which both start nccl-tests."""
    from verify.bandwidth import COLLECTIVES

    func = click.option("--tests-dir", default=None, metavar="DIR",
                        help="Where the nccl-tests binaries are (default /opt/nccl-tests, "
                             "then PATH).")(func)
    return click.option("--test", "test_name", default="all_reduce", show_default=True,
                        type=click.Choice(COLLECTIVES))(func)
