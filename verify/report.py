"""Render a result as JSON, JUnit XML, Markdown (GitHub job summary) or a terminal table.

Report files are written by the boundary's one writer (verify/boundary/files.py,
re-exported here as `write_atomic`/`WriteError` for the commands that write reports).
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable
from xml.sax.saxutils import escape, quoteattr

from verify.boundary.files import WriteError, write_atomic  # noqa: F401 - re-exported
from verify.boundary.values import printable
from verify.exitcodes import Exit

VERDICT_EXIT = {"pass": Exit.PASS, "fail": Exit.FAIL, "inconclusive": Exit.INCONCLUSIVE}

COMPACT_JSON_RANKS = 4096  # beyond this many ranks, JSON is written without indentation


def to_json(result: dict) -> str:
    """Indented for people; compact for a job of thousands of ranks, where Python's
    indenting encoder would cost seconds (its C encoder only writes compact JSON)."""
    if len(result.get("ranks_detail") or ()) > COMPACT_JSON_RANKS:
        return json.dumps(result, separators=(",", ":")) + "\n"
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


def _truncations(result: dict) -> list[dict]:
    """Inputs that ended early: a PASS on half a log must say so wherever it is shown."""
    return [e for e in result["errors"] if e["kind"] == "truncated_input"]


def _md_text(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


# XML 1.0 allows tab, LF and CR among the control characters; the rest (ANSI escapes'
# ESC, NUL) make a JUnit file that no reader accepts, so they are shown as \xNN.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


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
            lines.append(f"           {_where(ev)}: {_clip(ev['text'], 160)}")
    for warning in _truncations(result):
        lines.append(f"WARNING: {warning['message'][:200]} (the verdict covers what was read)")
    count, listed = _errors(result, 10, lambda err: f"  {err['file']}:{err['line']} "
                            f"[{err['kind']}] {_clip(err['message'], 160)}", "      fix: ")
    if count:
        lines += [f"errors ({count}):", *listed]
    # Log text (NCCL's lines, host names, a result's messages) reaches the terminal here:
    # escape sequences and lone surrogates are shown escaped, never interpreted.
    return "\n".join(printable(line) for line in lines) + "\n"


def _errors(result: dict, limit: int, entry: Callable[[dict], str], fix: str
            ) -> tuple[int, list[str]]:
    """How many error-severity entries there are, and the first `limit` as lines (each
    followed by its fix): the text and Markdown reports list them alike, and warnings
    only in JSON."""
    errors = [e for e in result["errors"] if e["severity"] == "error"]
    lines = []
    for err in errors[:limit]:
        lines.append(entry(err))
        if err.get("fix"):
            lines.append(fix + err["fix"])
    return len(errors), lines


def _clip(text: str, width: int) -> str:
    """A long message shortened at a word boundary, marked as cut: cut mid-word
    ('My EFA addr: fi_') it reads as if the log said that."""
    return textwrap.shorten(text.strip(), width, placeholder=" [...]")


def to_markdown(result: dict) -> str:
    verdict = result["verdict"].upper()
    tool = result["tool"]
    out = [f"## {tool['name']} {tool['command']}: {verdict}", "", f"{result['verdict_reason']}", ""]
    for warning in _truncations(result):
        out += [f"> **Warning:** {_md_text(warning['message'][:200])} "
                "(the verdict covers what was read)", ""]
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
    count, listed = _errors(result, 20, lambda err: f"- `{err['file']}:{err['line']}` "
                            f"**{err['kind']}**: {_clip(err['message'], 200)}", "  - fix: ")
    if count:
        out += ["", "### Errors", "", *listed]
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
        evidence = _xml_safe("\n".join(f"{_where(e)}: {e['text'].strip()}"
                                        for e in check["evidence"]))
        check = {**check, "message": _xml_safe(check["message"]),
                 "name": _xml_safe(check["name"])}
        out.append(f'  <testcase classname="efa-verify" name={quoteattr(check["name"])}>')
        status = check["status"]
        if status == "fail":
            out.append(f'    <failure message={quoteattr(check["message"])}>'
                       f"{escape(evidence)}</failure>")
        elif status == "waived":
            reason = _xml_safe(check.get("waiver", {}).get("reason", ""))
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
