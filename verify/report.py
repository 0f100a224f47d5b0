"""Render a result as JSON, JUnit XML, Markdown (GitHub job summary) or a terminal table.

Every format is written atomically: a report file is either whole or absent.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from verify.exitcodes import Exit

VERDICT_EXIT = {"pass": Exit.PASS, "fail": Exit.FAIL, "inconclusive": Exit.INCONCLUSIVE}


def write_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same directory."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_json(result: dict) -> str:
    return json.dumps(result, indent=2, sort_keys=False) + "\n"


def _fmt(value: object) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _where(ev: dict) -> str:
    rank = f" rank {ev['rank']}" if ev.get("rank") is not None else ""
    line = f":{ev['line']}" if ev["line"] else ""  # 0: not a line of a file
    return f"{ev['file']}{line}{rank}"


SUMMARY_FIELDS = (("transport", "transport"), ("provider", "provider"),
                  ("efa_used", "EFA used"), ("gdr_used", "GPUDirect RDMA"),
                  ("plugin_version", "aws-ofi-nccl"), ("nccl_version", "NCCL"),
                  ("libfabric_version", "libfabric"), ("nodes", "NCCL nodes"),
                  ("ranks", "ranks"), ("busbw_avg_GBps", "avg busbw GB/s"),
                  ("busbw_peak_GBps", "peak busbw GB/s"), ("wrong_values", "wrong values"))


def _summary(result: dict) -> tuple[tuple[str, str], ...]:
    """The log-derived facts, shown for commands that read logs."""
    return SUMMARY_FIELDS if result["tool"].get("command") in ("parse", "run") else ()


def to_table(result: dict) -> str:
    """The terminal summary: verdict, key facts, checks with their first evidence line."""
    lines = [f"VERDICT: {result['verdict'].upper()}  ({result['verdict_reason']})"]
    if result.get("instance"):
        lines.append(f"instance: {result['instance']['name']} ({result['instance']['source']})")
    width = max(len(label) for _, label in SUMMARY_FIELDS)
    for key, label in _summary(result):
        lines.append(f"  {label:<{width}}  {_fmt(result.get(key))}")
    lines.append("checks:")
    for check in result["checks"]:
        flag = "" if check["required"] else " (not required)"
        lines.append(f"  {check['status'].upper():<8} {check['name']}{flag}: {check['message']}")
        if check.get("waiver"):
            waiver = check["waiver"]
            lines.append(f"           waived until {waiver['expires']}: {waiver['reason']}")
        for ev in check["evidence"][:1]:
            lines.append(f"           {_where(ev)}: {ev['text'].strip()[:160]}")
    errors = [e for e in result["errors"] if e["severity"] == "error"]
    if errors:
        lines.append(f"errors ({len(errors)}):")
        for err in errors[:10]:
            lines.append(f"  {err['file']}:{err['line']} [{err['kind']}] {err['message'][:160]}")
            if err.get("fix"):
                lines.append(f"      fix: {err['fix']}")
    return "\n".join(lines) + "\n"


def to_markdown(result: dict) -> str:
    verdict = result["verdict"].upper()
    tool = result["tool"]
    out = [f"## {tool['name']} {tool['command']}: {verdict}", "", f"{result['verdict_reason']}", ""]
    if _summary(result):
        out += ["| | |", "|---|---|"]
        out += [f"| {label} | {_fmt(result.get(key))} |" for key, label in _summary(result)]
    out += ["", "### Checks", "", "| check | status | required | detail | evidence |",
            "|---|---|---|---|---|"]
    for check in result["checks"]:
        ev = "<br>".join(f"`{_where(e)}`" for e in check["evidence"][:3])
        message = check["message"].replace("|", "\\|")
        if check.get("waiver"):
            message += f" (waived until {check['waiver']['expires']}: {check['waiver']['reason']})"
        out.append(f"| {check['name']} | {check['status']} | "
                   f"{'yes' if check['required'] else 'no'} | {message} | {ev} |")
    errors = [e for e in result["errors"] if e["severity"] == "error"]
    if errors:
        out += ["", "### Errors", ""]
        for err in errors[:20]:
            out.append(f"- `{err['file']}:{err['line']}` **{err['kind']}**: "
                       f"{err['message'][:200]}")
            if err.get("fix"):
                out.append(f"  - fix: {err['fix']}")
    return "\n".join(out) + "\n"


def to_junit(result: dict) -> str:
    checks = result["checks"]
    failures = sum(c["status"] == "fail" for c in checks)
    errors = sum(c["status"] == "unknown" and c["required"] for c in checks)
    skipped = sum(c["status"] in ("skip", "waived") or
                  (c["status"] == "unknown" and not c["required"]) for c in checks)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuite name="efa-verify" tests="{len(checks)}" failures="{failures}" '
           f'errors="{errors}" skipped="{skipped}">']
    for check in checks:
        evidence = "\n".join(f"{_where(e)}: {e['text'].strip()}" for e in check["evidence"])
        out.append(f'  <testcase classname="efa-verify" name={quoteattr(check["name"])}>')
        status = check["status"]
        if status == "fail":
            out.append(f'    <failure message={quoteattr(check["message"])}>'
                       f"{escape(evidence)}</failure>")
        elif status == "waived":
            reason = check.get("waiver", {}).get("reason", "")
            out.append(f'    <skipped message={quoteattr("waived: " + reason)}/>')
        elif status == "skip":
            out.append(f'    <skipped message={quoteattr(check["message"])}/>')
        elif status == "unknown" and check["required"]:
            out.append(f'    <error type="inconclusive" message={quoteattr(check["message"])}>'
                       f"{escape(evidence)}</error>")
        elif status == "unknown":
            out.append(f'    <skipped message={quoteattr("unknown: " + check["message"])}/>')
        if evidence and status == "pass":
            out.append(f"    <system-out>{escape(evidence)}</system-out>")
        out.append("  </testcase>")
    out.append("</testsuite>")
    return "\n".join(out) + "\n"
