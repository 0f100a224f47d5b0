"""The start-time env step: apply instance-specific env rules when a container starts.

One image serves every instance family, so what depends on the instance (e.g.
FI_EFA_USE_DEVICE_RDMA where the EFA device has no RDMA read) is decided here,
from the same rules table the image was rendered from.  Variables an instance may
change are not in the image's ENV (its record lists them as `start_defaults`), so
one present at start is the user's and is never touched, whatever its value; an
absent one gets the instance's value, or the image's default.  An older image baked
them into ENV: a variable present at start may then be the image's own value, but it
may as well be the user's, and the README's promise ("never touched, whatever its
value") wins; the step says which value it kept and what the rules want instead.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from verify.boundary import records
from verify.boundary.values import shell_name, shown
from verify.detect import Detection
from verify.envrules import VERSION_KEYS, StartChange, exportable, safe_value, start_changes
from verify.versions import VersionError, parse_version

IMAGE_ENV = "/etc/efakit/image-env.json"


@dataclass(frozen=True)
class StartPlan:
    detection: Detection
    changes: tuple[StartChange, ...]
    kept: tuple[StartChange, ...]  # changes skipped because the variable was present
    defaults: tuple[tuple[str, str], ...] = ()  # the image's start defaults, exported as is
    # kept changes whose value at start is the one an older image baked into ENV: the
    # user's or the image's, nobody can tell; said on every start, not only with verbose
    unsure: tuple[StartChange, ...] = ()


def load_image_env(path: str | Path) -> dict:
    """The image's record of its versions and baked env (written by efakit render),
    checked against verify/schema/image-env.schema.json before use: its names are
    exported by `env --shell`, so a key that is not a shell name, or a value that is
    not a string, is one line here, never a command or a traceback at container start."""
    try:
        record = records.load(path, "image-env", "image env record")
    except records.RecordError as exc:  # `cannot read the image env record: ...` or
        raise ValueError(str(exc)) from None  # `PATH: not a valid image env record: ...`
    where = f"{path}: not a valid image env record"
    for name in record.get("start_defaults") or {}:
        if not exportable(name):
            raise ValueError(f"{where}: start_defaults may not name {shown(name)} (only "
                             "FI_*/NCCL_* names and the env rules' variables are exported)")
    for key, version in record["versions"].items():
        if key in VERSION_KEYS and version is not None:
            try:
                parse_version(version)
            except VersionError as exc:
                raise ValueError(f"{where}: versions.{key}: {exc}") from None
    return record


def plan(image_env: Mapping, detection: Detection, environ: Mapping[str, str]) -> StartPlan:
    """Decide the changes; with several GPU-model candidates, only those all agree on."""
    versions = image_env["versions"]
    defaults = dict(image_env.get("start_defaults") or {})
    profiles = [detection.profile] if detection.profile else list(detection.candidates)
    agreed: list[StartChange] = []
    if profiles:
        per_profile = [set(start_changes(versions, p)) for p in profiles]
        agreed = sorted(set.intersection(*per_profile), key=lambda c: c.var)
    # Present at start: never touched (an older image's ENV value included, see above).
    apply = tuple(c for c in agreed if c.var not in environ)
    kept = tuple(c for c in agreed if c.var in environ)
    unsure = tuple(c for c in kept if c.var not in defaults
                   and environ[c.var] == c.image_value
                   and image_env["env"].get(c.var) == c.image_value)
    changed = {c.var for c in agreed}
    exported = tuple((var, value) for var, value in sorted(defaults.items())
                     if var not in environ and var not in changed)
    return StartPlan(detection, apply, kept, exported, unsure)


def shell_lines(start: StartPlan) -> list[str]:
    """Lines for the entrypoint to eval:
    `{ declare -p X || [ -n "${X+set}" ]; } >/dev/null 2>&1 || export X=value`.

    Names are checked again here, whatever built the plan (a shell name the record may
    export); values must be `safe_value`s and are quoted by shlex.quote.  Each export is
    guarded: the plan sees only the environment, and the evaluating shell may hold the
    name unexported (IFS, a user's own variable), which is as much the user's.  bash's
    `declare -p` also finds a name declared with no value (`declare -i X`, `declare -a
    X`, `local X`): `${X+set}` calls it absent, and assigning to an integer one
    evaluates the value (attack-2 I-1).  dash has no `declare`, and falls back to
    `${X+set}`.  A change to "unset" is no line at all: the plan only changes variables
    absent at start, so it would only ever remove the shell's own unexported variable."""
    pairs = [*start.defaults, *((c.var, c.value) for c in start.changes if c.value is not None)]
    lines = []
    for var, value in pairs:
        if not exportable(shell_name(var)):
            raise ValueError(f"the start step may not export {shown(var)}")
        if not safe_value(value):
            raise ValueError(f"the start step may not export {var}={shown(value)} (a value "
                             "is letters, digits and _.,:/=+@%- only)")
        lines.append(f'{{ declare -p {var} || [ -n "${{{var}+set}}" ]; }} >/dev/null 2>&1 '
                     f"|| export {var}={shlex.quote(value)}")
    return lines


def describe(start: StartPlan, verbose: bool = False) -> list[str]:
    """Human lines for stderr: what was set or unset; with `verbose`, also what was
    detected and kept (every container start would otherwise print them)."""
    if not verbose:
        return [line for line in describe(start, True)
                if line.startswith(("efakit: set ", "efakit: unset ", "efakit: kept as found "))]
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
        if change in start.unsure:
            out.append(f"efakit: kept as found {change.var}={change.image_value} (set by "
                       f"you, or baked into this older image's ENV); for this instance the "
                       f"rules say {change.value or 'unset'}: {change.why}")
        else:
            out.append(f"efakit: kept {change.var} as set by the user (rules say "
                       f"{change.value or 'unset'}: {change.why})")
    if (det.profile or det.candidates) and not start.changes and not start.kept:
        out.append("efakit: the image's environment already fits this instance")
    return out
