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


def _parse(data: object, name: str) -> Policy:
    if not isinstance(data, dict):
        raise PolicyError(f"{name}: expected a mapping with 'required' and 'waivers'")
    unknown = set(data) - {"schema_version", "default_required", "required", "waivers",
                           "description", "scan_fail_on"}
    if unknown:
        raise PolicyError(f"{name}: unknown key(s) {', '.join(sorted(unknown))}")
    required = data.get("required") or {}
    if not isinstance(required, dict) or not all(isinstance(v, bool) for v in required.values()):
        raise PolicyError(f"{name}: 'required' maps check names to true/false")
    waivers = []
    for i, row in enumerate(data.get("waivers") or []):
        where = f"{name}: waivers[{i}]"
        if not isinstance(row, dict) or not {"check", "reason", "expires"} <= set(row):
            raise PolicyError(f"{where}: needs check, reason and expires (YYYY-MM-DD)")
        if not str(row["reason"]).strip():
            raise PolicyError(f"{where}: the reason must not be empty")
        expires = row["expires"]
        if isinstance(expires, str):
            try:
                expires = dt.date.fromisoformat(expires)
            except ValueError:
                raise PolicyError(f"{where}: expires {expires!r} is not YYYY-MM-DD") from None
        if not isinstance(expires, dt.date):
            raise PolicyError(f"{where}: expires must be a date (YYYY-MM-DD)")
        waivers.append(Waiver(str(row["check"]), str(row["reason"]), expires))
    default = data.get("default_required", True)
    if not isinstance(default, bool):
        raise PolicyError(f"{name}: default_required must be true or false")
    fail_on = data.get("scan_fail_on", ["CRITICAL"])
    if not isinstance(fail_on, list) or not set(fail_on) <= set(SEVERITIES):
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
