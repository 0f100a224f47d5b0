"""Policies: which checks are required, and waivers with a reason and an expiry.

The parser, the static checks and the CI gate share this mechanism (applied by
verify/checks.py), so a waived check shows as `waived` everywhere (never
`pass`), and an expired waiver stops counting on its expiry date and says so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from verify.boundary import records
from verify.tables import TableError, load_table, load_yaml_file

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
    """A policy from its parsed YAML: the shape from verify/schema/policy.schema.json
    (schema_version 1, known keys, check names, booleans, non-empty reasons), then the
    rules across keys a schema cannot say."""
    try:
        records.check(data, "policy", name)
    except records.RecordError as exc:
        raise PolicyError(str(exc)) from None
    data = cast(dict, data)  # the schema said it is a mapping
    required = dict(data.get("required") or {})
    default = data.get("default_required", True)
    waivers, seen = [], set()
    for i, row in enumerate(data.get("waivers") or []):
        where = f"{name}: waivers[{i}]"
        if row["check"] in seen:
            raise PolicyError(f"{where}: a second waiver for {row['check']} (one per check: "
                              "which reason and expiry would count?)")
        seen.add(row["check"])
        if not required.get(row["check"], default):
            raise PolicyError(f"{where}: {row['check']} is not required by this policy; "
                              "a waiver for it would change nothing")
        waivers.append(Waiver(row["check"], row["reason"],
                              _expiry(row["expires"], where, today or dt.date.today())))
    return Policy(name, required, default, waivers,
                  tuple(data.get("scan_fail_on", ["CRITICAL"])))


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
