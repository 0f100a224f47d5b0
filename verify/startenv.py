"""The start-time env step: apply instance-specific env rules when a container starts.

One image serves every instance family, so what depends on the instance (e.g.
FI_EFA_USE_DEVICE_RDMA where the EFA device has no RDMA read) is decided here,
from the same rules table the image was rendered from.  A variable the user set
to something other than the image's value is never touched.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from verify.detect import Detection
from verify.envrules import StartChange, start_changes

IMAGE_ENV = "/etc/efakit/image-env.json"


@dataclass(frozen=True)
class StartPlan:
    detection: Detection
    changes: tuple[StartChange, ...]
    kept: tuple[StartChange, ...]  # changes skipped because the user set the variable


def load_image_env(path: str | Path) -> dict:
    """The image's record of its versions and baked env (written by efakit render)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the image env record ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or "versions" not in data or "env" not in data:
        raise ValueError(f"{path}: not an efakit image env record (no versions/env)")
    return data


def plan(image_env: Mapping, detection: Detection, environ: Mapping[str, str]) -> StartPlan:
    """Decide the changes; with several GPU-model candidates, only those all agree on."""
    versions = image_env["versions"]
    profiles = [detection.profile] if detection.profile else list(detection.candidates)
    if not profiles:
        return StartPlan(detection, (), ())
    per_profile = [set(start_changes(versions, p)) for p in profiles]
    agreed = sorted(set.intersection(*per_profile), key=lambda c: c.var)
    apply, kept = [], []
    for change in agreed:
        current = environ.get(change.var)
        (apply if current == change.image_value else kept).append(change)
    return StartPlan(detection, tuple(apply), tuple(kept))


def shell_lines(start: StartPlan) -> list[str]:
    """`export`/`unset` lines for the entrypoint to eval."""
    lines = []
    for change in start.changes:
        if change.value is None:
            lines.append(f"unset {change.var}")
        else:
            lines.append(f"export {change.var}={shlex.quote(change.value)}")
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
