"""Progress of long steps, on stderr so stdout stays data.

On a terminal a status line is rewritten in place (with a byte bar for
downloads); elsewhere (CI logs, pipes) each new stage is one plain line.
`efakit --quiet` or EFAKIT_QUIET=1 silences all of it; errors are not progress
and still print.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_quiet = False  # set by `efakit --quiet`, which click also reads from EFAKIT_QUIET


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


class Progress:
    """Where a long step is: `note` for a line of its own, `status` for the moving part."""

    def __init__(self, what: str, stream: TextIO | None = None) -> None:
        self.what = what
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self._last = ""
        self._open = False

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self.start:5.0f}s"

    def note(self, text: str) -> None:
        if _quiet:
            return
        self._clear()
        self.stream.write(f"efakit {self.what}: {text}\n")
        self.stream.flush()

    def line(self, text: str) -> None:
        """A line of someone else's output (a job's log), as it is."""
        if _quiet:
            return
        self._clear()
        self.stream.write(text.rstrip("\n") + "\n")
        self.stream.flush()

    def status(self, text: str) -> None:
        """The current stage; a plain line only when it changed (off a terminal)."""
        if _quiet or text == self._last:
            return
        self._last = text
        if self.tty:
            self.stream.write(f"\r\033[K{self._elapsed()} {text[:110]}")
            self._open = True
        else:
            self.stream.write(f"efakit {self.what}: {self._elapsed()} {text}\n")
        self.stream.flush()

    def transfer(self, name: str, done: int, total: int | None) -> None:
        """A byte bar on a terminal; off a terminal the caller notes start and end."""
        if _quiet or not self.tty:
            return
        if total:
            filled = int(30 * done / total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {done / 1e6:7.1f}/{total / 1e6:.1f} MB"
        else:
            bar = f"{done / 1e6:7.1f} MB"
        self.stream.write(f"\r\033[K{name[:50]} {bar}")
        self.stream.flush()
        self._open = True

    def _clear(self) -> None:
        if self._open:
            self.stream.write("\r\033[K")
            self._open = False

    def done(self) -> None:
        if not _quiet:
            self._clear()
            self.stream.flush()
