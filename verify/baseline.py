"""Site baselines: a known-good run's busbw curve, kept to judge later runs against.

A published figure or the derived floor says what an instance can do; a
baseline says what this site's own healthy run did, per collective, message
size and node count.  `efa-verify baseline record RESULT.json --name NAME`
keeps one; `--baseline NAME|FILE` compares a run with it size by size and
names the sizes that fall short by more than the tolerance.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from verify.bandwidth import busbw_of, human_size, judge_tables, worst_status
from verify.checks import Check

KIND = "efa-verify-baseline"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DEFAULT_TOLERANCE = 0.10


class BaselineError(ValueError):
    """A baseline that cannot be recorded or read (one line, exit 2)."""


@dataclass
class Baseline:
    name: str
    source: str
    curves: list[dict]  # {collective, nodes, ranks, points: [[size, busbw], ...]}
    tolerance: float = DEFAULT_TOLERANCE


def baseline_dir(env: dict[str, str] | None = None) -> Path:
    """$EFA_VERIFY_BASELINES, else ~/.local/share/efa-verify/baselines."""
    env = os.environ if env is None else env
    given = env.get("EFA_VERIFY_BASELINES")
    return Path(given) if given else Path.home() / ".local/share/efa-verify/baselines"


class _Table:
    """A result's test table in the shape judge_tables reads."""

    def __init__(self, test: dict) -> None:
        self.file = test.get("file", "result")
        self.rows = test.get("rows") or []


def curves_of(result: dict) -> list[dict]:
    """The busbw curves of an efa-verify result, one per nccl-tests table."""
    tests = [_Table(t) for t in result.get("tests", []) if t.get("rows")]
    nodes = result.get("nodes") or (result.get("expect") or {}).get("nodes")
    judged, why = judge_tables(tests, result.get("ranks"), nodes, None)
    if why:
        raise BaselineError(f"the result cannot be a baseline: {why}")
    return [{"collective": j.shape.collective, "nodes": j.nodes, "ranks": j.shape.ranks,
             "points": [[r["size"], busbw_of(r)] for r in j.rows()]} for j in judged]


def record(result_path: Path, name: str, directory: Path) -> Path:
    """Keep a result's curves as baseline NAME (a passing result only)."""
    from verify.report import write_atomic

    if not NAME_RE.match(name):
        raise BaselineError(f"baseline name {name!r}: letters, digits, '.', '_' or '-' only")
    try:
        result = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BaselineError(f"{result_path}: not a readable JSON result ({exc})") from None
    if not isinstance(result, dict) or "verdict" not in result or "tests" not in result:
        raise BaselineError(f"{result_path}: not an efa-verify result")
    if result["verdict"] != "pass":
        raise BaselineError(f"{result_path}: verdict {result['verdict']}; only a passing run "
                            "can be a baseline")
    curves = curves_of(result)
    if not curves:
        raise BaselineError(f"{result_path}: no nccl-tests rows to keep")
    body = {"schema_version": 1, "kind": KIND, "name": name,
            "instance": (result.get("instance") or {}).get("name"),
            "recorded_from": str(result_path), "curves": curves}
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name}.json"
    write_atomic(target, json.dumps(body, indent=2) + "\n")
    return target


def load(spec: str, tolerance: float = DEFAULT_TOLERANCE,
         directory: Path | None = None) -> Baseline:
    """A baseline by file path, or by name in the baseline directory."""
    path = Path(spec)
    if not path.is_file():
        if not NAME_RE.match(spec):
            raise BaselineError(f"baseline {spec!r}: no such file")
        path = (directory or baseline_dir()) / f"{spec}.json"
        if not path.is_file():
            raise BaselineError(f"no baseline named {spec!r} in {path.parent} (record one "
                                "with `efa-verify baseline record RESULT.json --name NAME`)")
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BaselineError(f"{path}: not a readable baseline ({exc})") from None
    if not isinstance(body, dict) or body.get("kind") != KIND or \
            not isinstance(body.get("curves"), list):
        raise BaselineError(f"{path}: not an efa-verify baseline")
    return Baseline(str(body.get("name", spec)), str(path), body["curves"], tolerance)


def compare_check(base: Baseline | None, judged: list, why: str | None) -> Check:
    """Size by size against the baseline's curve for the same collective and node count."""
    if base is None:
        return Check("bandwidth_baseline", "skip", True, "no --baseline given")
    if why:
        return Check("bandwidth_baseline", "unknown", True, why)
    results, evidence, curves = [], [], []
    for item in judged:
        curve = next((c for c in base.curves if c["collective"] == item.shape.collective
                      and c["nodes"] == item.nodes), None)
        if curve is None:
            results.append(("unknown", f"{item.label()}: baseline {base.name} has no "
                            f"{item.shape.collective} curve at {item.nodes} nodes"))
            continue
        want = {int(size): float(bw) for size, bw in curve["points"]}
        curves.append({"kind": "baseline", "collective": item.shape.collective,
                       "nodes": item.nodes, "ranks": item.shape.ranks, "name": base.name,
                       "points": [[s, bw * (1 - base.tolerance)]
                                  for s, bw in sorted(want.items())]})
        rows = [r for r in item.rows() if r["size"] in want]
        if not rows:
            results.append(("unknown", f"{item.label()}: no size in common with baseline "
                            f"{base.name}"))
            continue
        short = [r for r in rows if busbw_of(r) < want[r["size"]] * (1 - base.tolerance)]
        evidence += [item.evidence(r, want[r["size"]] * (1 - base.tolerance)) for r in short]
        if short:
            names = ", ".join(f"{human_size(r['size'])} {busbw_of(r):g} < "
                              f"{want[r['size']]:g}" for r in short)
            results.append(("fail", f"{item.label()}: short of baseline {base.name} by more "
                            f"than {base.tolerance:.0%} at {names} GB/s"))
        else:
            results.append(("pass", f"{item.label()}: {len(rows)} sizes within "
                            f"{base.tolerance:.0%} of baseline {base.name}"))
    return Check("bandwidth_baseline", worst_status(s for s, _ in results), True,
                 "; ".join(m for _, m in results), evidence[:4], detail={"curves": curves})
