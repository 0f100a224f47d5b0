"""Shared CLI plumbing: one-line errors and exit codes, never a traceback."""

from __future__ import annotations

import functools
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


def handle_errors(prog: str, extra: tuple[type[BaseException], ...] = ()) -> Callable[[F], F]:
    """Turn expected exceptions into `prog: error: ...` and the right exit code."""

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except CliError as exc:
                click.echo(f"{prog}: error: {exc}", err=True)
                sys.exit(int(exc.code))
            except input_errors() + extra as exc:
                click.echo(f"{prog}: error: {exc}", err=True)
                sys.exit(int(Exit.USAGE))

        return inner  # type: ignore[return-value]

    return wrap
