"""`efakit outdated`: each pin of a spec against its upstream's newest release."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from buildkit.paths import IMAGES_DIR
from buildkit.progress import Progress
from buildkit.spec import SpecError, load_spec, spec_path
from buildkit.upstream.rewrite import RewriteError, write_copy
from buildkit.upstream.table import UpstreamTableError
from verify.boundary.files import SameFileError, refuse_overlap
from verify.boundary.values import Finite, printable
from verify.cliutil import CliError, handle_errors
from verify.exitcodes import Exit
from verify.tables import TableError, load_yaml_file


def _spec_file(spec: str) -> Path:
    """SPEC is a framework name (`pytorch`: images/pytorch.yaml) or a spec file's path."""
    if spec.endswith((".yaml", ".yml")) or "/" in spec:
        return Path(spec)
    return spec_path(spec, IMAGES_DIR)


errors = handle_errors("efakit outdated", (SpecError, UpstreamTableError, RewriteError,
                                           SameFileError))


@click.command("outdated")
@click.argument("spec", required=False, default="pytorch")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (buildkit/schema/outdated.schema.json) instead of the table.")
@click.option("--update-pins", "update_pins", type=click.Path(path_type=Path, dir_okay=False),
              default=None, metavar="OUT.yaml",
              help="Write a copy of the spec with every behind pin moved to its newest "
                   "release, for review (never the spec itself).")
@click.option("--timeout", type=Finite(0.1, 120), default=15.0,
              show_default=True, help="Seconds one upstream may take to answer.")
@click.option("--deadline", type=Finite(0.1, 1800), default=120.0,
              show_default=True, help="Seconds all questions together may take.")
@errors
def outdated(spec: str, as_json: bool, update_pins: Path | None, timeout: float,
             deadline: float) -> None:
    """Compare every pin of SPEC (a framework, default pytorch, or a spec file) with the
    newest upstream release (images/upstream.yaml says where each is asked).

    \b
    Exit 0: every pin is current; 1: some pin is behind; 3: some upstream could not be
    asked (and none is behind); 2: bad input.
    """
    from buildkit.upstream.client import Client
    from buildkit.upstream.report import Checker, to_json, to_text, verdict
    from buildkit.upstream.table import load_upstreams

    path = _spec_file(spec)
    load_spec(path)  # the spec, and each profile of it, must be valid first
    try:
        raw = load_yaml_file(path)
    except TableError as exc:
        raise SpecError(str(exc)) from None
    for profile in raw.get("profiles") or {}:
        load_spec(path, profile=profile)
    if update_pins is not None:
        refuse_overlap([("--update-pins", update_pins)], [path])
        if not update_pins.parent.is_dir():  # say so before minutes of asking
            raise CliError(f"--update-pins {update_pins}: directory {update_pins.parent} "
                           "does not exist")
    table = load_upstreams()
    progress = Progress("outdated")
    rows = Checker(raw, table, Client(timeout, deadline), progress).run()
    name, code = verdict(rows)
    if update_pins is not None:
        changes = write_copy(path, raw, rows, table, update_pins)
        progress.note(f"{len(changes)} value(s) changed in {update_pins} (review, then "
                      f"copy over {path})")
    if as_json:
        click.echo(json.dumps(to_json(rows, path, table), indent=2))
    else:
        click.echo(to_text(rows, path), nl=False)
    errors = [row for row in rows if row.status == "error"]
    if errors:
        first = errors[0]
        click.echo(printable(f"efakit outdated: {len(errors)} of {len(rows)} pins could not "
                             f"be asked (verdict: {name}); first: {first.pin.label()}: "
                             f"{first.reason}"),
                   err=True)
    if code != Exit.PASS:
        sys.exit(int(code))

