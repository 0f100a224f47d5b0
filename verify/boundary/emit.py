"""Emitters: every value that leaves efakit into another language is quoted by it here.

Why (issue #24, class 1): a value formatted into a shell line, an `#SBATCH`
directive or a manifest with an f-string becomes code in that language: a
newline is a second command, a space is a second sbatch option, `key: value`
in a YAML scalar is a second key.  So generated text is built from these
functions only, each the language's own quoting, and values it cannot carry
are refused rather than mangled:

* shell: `shlex.join`/`shlex.quote` (POSIX single quotes; nothing inside is expanded);
* `#SBATCH`: sbatch splits a directive line into words (and reads quotes of its
  own), and a word that starts with '-' is an option, so a value with whitespace,
  quotes, '#' or a leading '-' cannot be written at all;
* YAML: `yaml.safe_dump`, one document.

Refusals are `BadValue` (one line), like every other value the boundary refuses.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence

import yaml

from verify.boundary.values import BadValue, shown

__all__ = ["sbatch_directive", "shell_line", "shell_word", "to_stdout", "yaml_document"]

# sbatch's long option names: lower-case words joined by '-'.
_SBATCH_NAME = re.compile(r"[a-z]+(?:-[a-z]+)*")
# What an #SBATCH value may hold: printable ASCII that sbatch neither splits on
# (whitespace), reads as quoting (' "), as a comment ('#'), nor the shell escapes.
_SBATCH_VALUE = re.compile(r"[A-Za-z0-9_.,:/@%=+\[\]-]+")


def shell_word(value: str) -> str:
    """One shell word whatever `value` holds (single-quoted when it needs to be)."""
    return shlex.quote(value)


def shell_line(argv: Sequence[str]) -> str:
    """A shell command line that runs exactly `argv`: every word quoted, nothing expanded."""
    return shlex.join(argv)


def sbatch_directive(name: str, value: object = None) -> str:
    """`#SBATCH --name=value`, or `#SBATCH --name` for a flag (value None).

    A value sbatch would split into two words, read as quoted, or take as an
    option of its own is refused: `p5-1 --export=ALL,LD_PRELOAD=/x.so` is two
    sbatch options on one line."""
    if not _SBATCH_NAME.fullmatch(name):
        raise BadValue(f"#SBATCH option {shown(name)} is not an sbatch option name")
    if value is None:
        return f"#SBATCH --{name}"
    text = str(value)
    if not _SBATCH_VALUE.fullmatch(text) or text.startswith("-"):
        raise BadValue(f"--{name} {shown(text)}: sbatch would split or misread it (no "
                       "spaces, quotes, '#' or leading '-' in an #SBATCH value)")
    return f"#SBATCH --{name}={text}"


def yaml_document(data: object) -> str:
    """One YAML document with exactly `data`'s keys: every scalar quoted by the dumper."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=False)


def to_stdout(text: str | bytes) -> None:
    """Write generated data (a script, a manifest, `export` lines, a result) to standard
    output byte for byte, as `-o FILE` would write it.

    click.echo strips ANSI escape sequences when stdout is not a terminal, so
    `efakit launch slurm > job.sbatch` and `-o job.sbatch` gave different scripts
    (attack-1 SA-1): data goes to the binary stream, after anything already printed."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    stream = sys.stdout
    stream.flush()
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # a text-only stream (a test's capture): the same characters
        stream.write(data.decode("utf-8", "surrogateescape"))
        return
    buffer.write(data)
    buffer.flush()
