"""The start-time env step: apply instance-specific env rules when a container starts.

One image serves every instance family, so what depends on the instance (e.g.
FI_EFA_USE_DEVICE_RDMA where the EFA device has no RDMA read) is decided here,
from the same rules table the image was rendered from.  Variables an instance may
change are not in the image's ENV (its record lists them as `start_defaults`), so
one present at start is the user's and is never touched, whatever its value; an
absent one gets the instance's value, or the image's default.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from verify.boundary import records
from verify.boundary.values import shell_name
from verify.detect import Detection
from verify.envrules import StartChange, start_changes

IMAGE_ENV = "/etc/efakit/image-env.json"


@dataclass(frozen=True)
class StartPlan:
    detection: Detection
    changes: tuple[StartChange, ...]
    kept: tuple[StartChange, ...]  # changes skipped because the user set the variable
    defaults: tuple[tuple[str, str], ...] = ()  # the image's start defaults, exported as is


def load_image_env(path: str | Path) -> dict:
    """The image's record of its versions and baked env (written by efakit render),
    checked against verify/schema/image-env.schema.json before use: its names are
    exported by `env --shell`, so a key that is not a shell name, or a value that is
    not a string, is one line here, never a command or a traceback at container start."""
    try:
        return records.load(path, "image-env", "image env record")
    except records.RecordError as exc:  # `cannot read the image env record: ...` or
        raise ValueError(str(exc)) from None  # `PATH: not a valid image env record: ...`


def plan(image_env: Mapping, detection: Detection, environ: Mapping[str, str]) -> StartPlan:
    """Decide the changes; with several GPU-model candidates, only those all agree on."""
    versions = image_env["versions"]
    defaults = dict(image_env.get("start_defaults") or {})
    profiles = [detection.profile] if detection.profile else list(detection.candidates)
    agreed: list[StartChange] = []
    if profiles:
        per_profile = [set(start_changes(versions, p)) for p in profiles]
        agreed = sorted(set.intersection(*per_profile), key=lambda c: c.var)
    apply, kept = [], []
    for change in agreed:
        if change.var in defaults:  # not in ENV: present means the user set it
            users = change.var in environ
        else:  # an older image baked it in ENV: only a different value is surely the user's
            users = environ.get(change.var) != change.image_value
        (kept if users else apply).append(change)
    changed = {c.var for c in agreed}
    exported = tuple((var, value) for var, value in sorted(defaults.items())
                     if var not in environ and var not in changed)
    return StartPlan(detection, tuple(apply), tuple(kept), exported)


def shell_lines(start: StartPlan) -> list[str]:
    """`export`/`unset` lines for the entrypoint to eval: names are checked shell names
    (again here, whatever built the plan), values quoted by shlex.quote."""
    lines = [f"export {shell_name(var)}={shlex.quote(value)}" for var, value in start.defaults]
    for change in start.changes:
        if change.value is None:
            lines.append(f"unset {shell_name(change.var)}")
        else:
            lines.append(f"export {shell_name(change.var)}={shlex.quote(change.value)}")
    return lines


def describe(start: StartPlan, verbose: bool = False) -> list[str]:
    """Human lines for stderr: what was set or unset; with `verbose`, also what was
    detected and kept (every container start would otherwise print them)."""
    if not verbose:
        return [line for line in describe(start, True)
                if line.startswith(("efakit: set ", "efakit: unset "))]
    det = start.detection
    if det.profile:
        head = f"efakit: instance {det.profile.name} (from {det.source}: {det.detail})"
    elif det.candidates:
        names = ", ".join(p.name for p in det.candidates)
        head = f"efakit: instance one of {names} (from {det.source}: {det.detail})"
    else:
        head = f"efakit: instance not detected ({det.detail}); keeping the image's environment"
    out = [head]
    for change in start.changes:
        if change.value is None:
            out.append(f"efakit: unset {change.var}: {change.why}")
        else:
            out.append(f"efakit: set {change.var}={change.value}: {change.why}")
    for change in start.kept:
        out.append(f"efakit: kept {change.var} as set by the user (rules say "
                   f"{change.value or 'unset'}: {change.why})")
    if (det.profile or det.candidates) and not start.changes and not start.kept:
        out.append("efakit: the image's environment already fits this instance")
    return out
