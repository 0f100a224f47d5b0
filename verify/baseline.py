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
from verify.boundary.values import BadValue, finite, matching, shown
from verify.checks import Check

KIND = "efa-verify-baseline"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
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
    from verify.boundary.files import write_atomic

    name = _name(name)
    target = directory / f"{name}.json"
    _refuse_input(target, result_path)  # before reading anything
    result = _record(result_path, "result", "efa-verify result")
    if result["verdict"] != "pass":
        raise BaselineError(f"{result_path}: verdict {result['verdict']}; only a passing run "
                            "can be a baseline")
    curves = curves_of(result)
    if not curves:
        raise BaselineError(f"{result_path}: no nccl-tests rows to keep")
    body = {"schema_version": 1, "kind": KIND, "name": name,
            "instance": (result.get("instance") or {}).get("name"),
            # a file name need not be UTF-8; the record's text must be (records.py)
            "recorded_from": os.fsencode(result_path).decode("utf-8", "replace"),
            "curves": curves}
    if directory.exists() and not directory.is_dir():  # mkdir would say "File exists"
        raise BaselineError(f"--dir {directory}: not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(target, json.dumps(body, indent=2) + "\n", inputs=[result_path])
    return target


def _name(name: str) -> str:
    try:
        return matching(NAME_RE, name, "baseline name")
    except BadValue:
        raise BaselineError(f"baseline name {shown(name)}: letters, digits, '.', '_' or '-' "
                            "only") from None


def _refuse_input(target: Path, source: Path) -> None:
    """`baseline record b.json --name b --dir .` would replace its own input."""
    from verify.boundary.files import SameFileError, refuse_overlap

    try:
        refuse_overlap([("the baseline", target)], [source])
    except SameFileError as exc:
        raise BaselineError(str(exc)) from None


def _record(path: Path, schema: str, what: str) -> dict:
    """A JSON record read by the boundary's reader and checked against its schema."""
    from verify.boundary.records import RecordError, load

    try:
        return load(path, schema, what)
    except RecordError as exc:
        raise BaselineError(str(exc)) from None


def locate(spec: str, directory: Path | None = None) -> Path:
    """The file `--baseline SPEC` names: SPEC itself when it is a file (or is no plain
    name), else NAME.json in the baseline directory."""
    path = Path(spec)
    if os.path.lexists(path) or NAME_RE.fullmatch(spec) is None:
        return path
    return (directory or baseline_dir()) / f"{spec}.json"


def load(spec: str, tolerance: float = DEFAULT_TOLERANCE,
         directory: Path | None = None) -> Baseline:
    """A baseline by file path, or by name in the baseline directory, checked against
    verify/schema/baseline.schema.json (finite busbw, integer sizes) before use."""
    tolerance = finite(tolerance, "--baseline-tolerance", 0, 0.99)
    path = locate(spec, directory)
    if not os.path.lexists(path) and path == Path(spec):
        raise BaselineError(f"baseline {shown(spec)}: no such file")
    if not os.path.lexists(path):
        raise BaselineError(f"no baseline named {spec!r} in {path.parent} (record one "
                            "with `efa-verify baseline record RESULT.json --name NAME`)")
    body = _record(path, "baseline", "efa-verify baseline")
    return Baseline(body["name"], str(path), body["curves"], tolerance)


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
