"""Checks: the one concept every producer (parse, run, static, preflight, gate) shares.

A check has a registered name, a status (pass|fail|skip|waived|unknown), and
the evidence lines behind it.  The policy decides which checks are required
and which are waived; the verdict and the JSON envelope are built here, once,
so a waived check or an inconclusive verdict means the same in every report.
Check names come from one registry (verify/data/checks.yaml), so a policy that
names a check no producer emits is refused instead of silently ignored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from verify import __version__
from verify.tables import load_table

if TYPE_CHECKING:
    from verify.policy import Policy
    from verify.profiles import Profile

SCHEMA_VERSION = 1
STATUSES = ("pass", "fail", "skip", "waived", "unknown")


@cache
def registry() -> dict[str, dict]:
    """Every check name with its producers and meaning, validated on load."""
    rows = load_table("checks")["checks"]
    for name, row in rows.items():
        if not isinstance(row, dict) or not row.get("producers") or not row.get("meaning"):
            raise ValueError(f"checks.yaml: {name} needs producers and meaning")
    return rows


def unknown_names(names: Iterable[str]) -> list[str]:
    """The names among `names` that no producer registers, sorted."""
    known = registry()
    return sorted({n for n in names if n not in known})


@dataclass(frozen=True)
class Evidence:
    file: str
    line: int
    rank: int | None
    text: str

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "rank": self.rank, "text": self.text}


@dataclass
class Check:
    name: str
    status: str  # pass | fail | skip | waived | unknown
    required: bool
    message: str
    evidence: list[Evidence] = field(default_factory=list)
    waiver: dict | None = None
    detail: dict | None = None  # structured facts a report may show (bandwidth curves)

    def __post_init__(self) -> None:
        if self.name not in registry():
            raise ValueError(f"check {self.name!r} is not in verify/data/checks.yaml")
        if self.status not in STATUSES:
            raise ValueError(f"check {self.name}: status {self.status!r} is not one of "
                             f"{', '.join(STATUSES)}")

    def as_dict(self) -> dict:
        out = {"name": self.name, "status": self.status, "required": self.required,
               "message": self.message, "evidence": [e.as_dict() for e in self.evidence]}
        if self.waiver:
            out["waiver"] = self.waiver
        if self.detail:
            out["detail"] = self.detail
        return out


def apply(policy: Policy, checks: Iterable[Check], today: dt.date | None = None) -> None:
    """Set `required` from the policy and turn waived checks into `waived`."""
    today = today or dt.date.today()
    for check in checks:
        check.required = check.required and policy.is_required(check.name)
        for waiver in policy.waivers:
            if waiver.check != check.name:
                continue
            if waiver.expires < today:
                check.message += (f" (waiver expired {waiver.expires.isoformat()}, ignored: "
                                  f"{waiver.reason})")
                continue
            # A skipped check is waived too: the policy then records that what it would
            # have checked is knowingly absent (the offline profile's EFA installer).
            if check.status in ("fail", "unknown", "skip"):
                check.waiver = {"reason": waiver.reason, "expires": waiver.expires.isoformat(),
                                "status_without_waiver": check.status}
                check.status = "waived"


def verdict(checks: Iterable[Check]) -> tuple[str, Check | None]:
    """fail if a required check fails; inconclusive if one is unknown; else pass."""
    checks = list(checks)
    for status, word in (("fail", "fail"), ("unknown", "inconclusive")):
        for check in checks:
            if check.required and check.status == status:
                return word, check
    return "pass", None


def decide(policy: Policy, checks: list[Check]) -> tuple[str, str]:
    """Apply the policy; the verdict word and its reason."""
    apply(policy, checks)
    word, deciding = verdict(checks)
    reason = "every required check passed" if deciding is None else \
        f"{deciding.name}: {deciding.message}"
    return word, reason


def tool(command: str) -> dict:
    return {"name": "efa-verify", "version": __version__, "command": command}


def checks_result(command: str, checks: list[Check], policy: Policy,
                  instance: Profile | None, extra: dict | None = None) -> dict:
    """The result envelope for commands that produce checks but parse no logs."""
    word, reason = decide(policy, checks)
    result = {
        "schema_version": SCHEMA_VERSION,
        "tool": tool(command),
        "inputs": [],
        "instance": {"name": instance.name, "source": "--instance-type"} if instance else None,
        "expect": {},
        "verdict": word, "verdict_reason": reason,
        "transport": None, "provider": None, "efa_used": None, "gdr_used": None,
        "plugin_version": None, "nccl_version": None, "libfabric_version": None,
        "nodes": None, "ranks": None, "busbw_avg_GBps": None, "busbw_peak_GBps": None,
        "wrong_values": None, "tests": [], "errors": [], "errors_dropped": 0,
        "checks": [c.as_dict() for c in checks], "findings": {}, "ranks_detail": [],
    }
    result.update(extra or {})
    return result
