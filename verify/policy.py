"""Policies: which checks are required, and waivers with a reason and an expiry.

The parser, the static checks and the CI gate share this mechanism (applied by
verify/checks.py), so a waived check shows as `waived` everywhere (never
`pass`), and an expired waiver stops counting on its expiry date and says so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from verify.tables import TableError, load_table, load_yaml_file

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
# A waiver is a temporary exception: one that runs for decades (9999-12-31) is a
# permanent one in disguise, which belongs in `required: {check: false}` instead.
MAX_WAIVER_DAYS = 731


class PolicyError(ValueError):
    """A policy file that cannot be used."""


@dataclass(frozen=True)
class Waiver:
    check: str
    reason: str
    expires: dt.date


@dataclass
class Policy:
    name: str
    required: dict[str, bool] = field(default_factory=dict)  # check -> required
    default_required: bool = True
    waivers: list[Waiver] = field(default_factory=list)
    # ECR scan severities that fail the gate (the gate reads them after a push).
    scan_fail_on: tuple[str, ...] = ("CRITICAL",)

    def is_required(self, check: str) -> bool:
        return self.required.get(check, self.default_required)


def _expiry(value: object, where: str, today: dt.date) -> dt.date:
    """A waiver's expiry: a plain date, not a time of day, at most MAX_WAIVER_DAYS ahead."""
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            raise PolicyError(f"{where}: expires {value!r} is not YYYY-MM-DD") from None
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise PolicyError(f"{where}: expires must be a date (YYYY-MM-DD), got {value}")
    if (value - today).days > MAX_WAIVER_DAYS:
        raise PolicyError(f"{where}: expires {value.isoformat()} is more than "
                          f"{MAX_WAIVER_DAYS} days ahead (a waiver is temporary; set "
                          "required: false for a permanent exception)")
    return value


def _parse(data: object, name: str, today: dt.date | None = None) -> Policy:
    if not isinstance(data, dict):
        raise PolicyError(f"{name}: expected a mapping with 'required' and 'waivers'")
    unknown = set(data) - {"schema_version", "default_required", "required", "waivers",
                           "description", "scan_fail_on"}
    if unknown:
        raise PolicyError(f"{name}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    required = data.get("required") or {}
    if not isinstance(required, dict) or not all(
            isinstance(k, str) and isinstance(v, bool) for k, v in required.items()):
        raise PolicyError(f"{name}: 'required' maps check names to true/false")
    rows = data.get("waivers") or []
    if not isinstance(rows, list):
        raise PolicyError(f"{name}: 'waivers' is a list of check, reason and expires")
    waivers = []
    for i, row in enumerate(rows):
        where = f"{name}: waivers[{i}]"
        if not isinstance(row, dict) or not {"check", "reason", "expires"} <= set(row):
            raise PolicyError(f"{where}: needs check, reason and expires (YYYY-MM-DD)")
        unknown_fields = set(row) - {"check", "reason", "expires"}
        if unknown_fields:
            names = ", ".join(sorted(map(str, unknown_fields)))
            raise PolicyError(f"{where}: unknown key(s) {names}")
        if not isinstance(row["check"], str) or not row["check"].strip():
            raise PolicyError(f"{where}: check must be a check name")
        if not isinstance(row["reason"], str) or not row["reason"].strip():
            raise PolicyError(f"{where}: the reason must not be empty")
        expires = _expiry(row["expires"], where, today or dt.date.today())
        waivers.append(Waiver(row["check"], row["reason"], expires))
    default = data.get("default_required", True)
    if not isinstance(default, bool):
        raise PolicyError(f"{name}: default_required must be true or false")
    fail_on = data.get("scan_fail_on", ["CRITICAL"])
    if not isinstance(fail_on, list) or not all(
            isinstance(s, str) and s in SEVERITIES for s in fail_on):
        raise PolicyError(f"{name}: scan_fail_on lists severities among "
                          f"{', '.join(SEVERITIES)}")
    return Policy(name, dict(required), default, waivers, tuple(fail_on))


def _known_checks(policy: Policy) -> Policy:
    """Refuse check names no producer emits: a typo would otherwise relax or waive nothing."""
    from verify.checks import unknown_names

    for where, names in (("required", policy.required),
                         ("waivers", [w.check for w in policy.waivers])):
        unknown = unknown_names(names)
        if unknown:
            raise PolicyError(f"{policy.name}: {where} names unknown check(s) "
                              f"{', '.join(unknown)} (known: see verify/data/checks.yaml)")
    return policy


def load_policy(path: str | Path | None) -> Policy:
    """The default policy (everything required) or a policy file."""
    if path is None:
        return _known_checks(_parse(load_table("default_policy"), "default policy"))
    try:
        data = load_yaml_file(path)
    except TableError as exc:
        raise PolicyError(str(exc)) from None
    return _known_checks(_parse(data, str(path)))
