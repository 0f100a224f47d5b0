"""The README's example commands use only options the CLIs accept (issue 27 item 5).

Each `efakit ...` / `efa-verify ...` line (continuations joined, comments dropped) goes
through click's own option parser for its subcommand: an option the CLI does not have,
an option missing its value or a surplus argument fails here, as it would for a reader.
A `docker run` example must also leave its reports where the host can read them: every
output path of the command inside the container lies under a `-v` mount.
"""

from __future__ import annotations

import re
import shlex

import click
import pytest

from buildkit.cli import main as efakit_main
from tests.conftest import ROOT
from verify.cli import main as verify_main

CLIS = {"efakit": efakit_main, "efa-verify": verify_main}
OUTPUT_OPTIONS = {"--junit", "--markdown", "-o", "--output", "--output-dir"}
EXAMPLE = re.compile(r"^( {4,})((?:\.venv/bin/)?(?:efakit|efa-verify|docker run)\b.*)$")


def examples(text: str) -> list[list[str]]:
    """Each indented example command as its words; a synopsis (`[a | b]`) is not one."""
    lines, found = text.splitlines(), []
    for i, line in enumerate(lines):
        match = EXAMPLE.match(line)
        if not match:
            continue
        command = match[2]
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + " " + lines[i].strip()
        if not re.search(r"\[[^]]*\|", command):
            found.append(shlex.split(command, comments=True))
    return found


def docker_run(words: list[str]) -> tuple[list[str], list[str]]:
    """(the container paths mounted with -v, the command after the image)."""
    rest, mounts = words[2:], []
    while rest[0].startswith("-"):
        option = rest.pop(0)
        if option in ("-v", "--volume"):
            mounts.append(rest.pop(0).split(":")[1])
        elif option not in ("--rm", "-t", "-i", "-it"):
            rest.pop(0)  # -e NAME=VALUE, --gpus all, ...
    return mounts, rest[1:]


def unknown_options(words: list[str]) -> str | None:
    """None when click's parser takes `words` (PROG SUBCOMMAND ARGS...), else why not."""
    group = CLIS[words[0].removeprefix(".venv/bin/")]
    root = click.Context(group, info_name=words[0])
    command = group.get_command(root, words[1])
    if command is None:
        return f"no subcommand {words[1]!r}"
    ctx = click.Context(command, info_name=words[1], parent=root)
    try:
        _, extra, _ = command.make_parser(ctx).parse_args(list(words[2:]))
    except click.UsageError as exc:
        return exc.format_message()
    return f"surplus arguments {extra}" if extra and not command.allow_extra_args else None


ALL = examples((ROOT / "README.md").read_text())


def test_the_readme_has_examples_to_check():
    assert len(ALL) >= 15 and any(w[:2] == ["docker", "run"] for w in ALL)


def unmounted_outputs(words: list[str]) -> list[str]:
    """The output paths of a `docker run` example's command that lie under no -v mount."""
    mounts, inner = docker_run(words)
    pairs = zip(inner, inner[1:], strict=False)
    outputs = [value for option, value in pairs if option in OUTPUT_OPTIONS]
    return [path for path in outputs
            if not any(path.startswith(m.rstrip("/") + "/") for m in mounts)]


@pytest.mark.parametrize("words", ALL, ids=[" ".join(w)[:60] for w in ALL])
def test_readme_example_uses_only_options_the_cli_accepts(words):
    inner = docker_run(words)[1] if words[:2] == ["docker", "run"] else words
    assert unknown_options(inner) is None, f"{shlex.join(words)}: {unknown_options(inner)}"


@pytest.mark.parametrize("words", [w for w in ALL if w[:2] == ["docker", "run"]])
def test_readme_docker_example_writes_where_the_host_reads(words):
    assert unmounted_outputs(words) == [], "these vanish with the container (--rm)"


def test_the_checker_refuses_what_a_reader_would_hit():
    assert "No such option" in unknown_options(["efa-verify", "static", "--jnit", "x.xml"])
    assert unknown_options(["efakit", "nosuch"]) == "no subcommand 'nosuch'"
    # the README's old example, in the tests' own namespace (no test names a user image)
    old = "docker run --rm efakit-test/pytorch:ci efa-verify static --junit out/static.xml"
    assert unmounted_outputs(shlex.split(old)) == ["out/static.xml"]
