"""Decide the FI_/NCCL_ environment from the env rules table.

One evaluator serves the renderer (image ENV), the start-time step (what the
instance changes), `efakit explain-env`, `efakit lint` and `efa-verify static`,
so they cannot disagree about what an image should carry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from verify.boundary.values import SHELL_NAME_RE
from verify.profiles import Profile, all_profiles
from verify.tables import load_table
from verify.versions import satisfies

# `when` keys that are instance facts: rules using them are applied at start.
INSTANCE_KEYS = frozenset({"rdma_read", "gdr_capable", "instance"})
VERSION_KEYS = frozenset({"aws_ofi_nccl", "libfabric", "nccl", "efa_installer", "cuda"})
CHOICE_KEYS = frozenset({"aws_ofi_nccl_source"})


@dataclass(frozen=True)
class Decision:
    """What one variable should be, and why."""

    var: str
    value: str | None
    scope: str  # "image" or "start"
    why: str
    source: str
    when: Mapping[str, object]
    plugin_sets: str | None = None  # what aws-ofi-nccl injects by itself when unset
    per_job: bool = False  # users set it per job; lint and static leave it alone

    @property
    def is_set(self) -> bool:
        return self.value is not None


def _rules() -> dict[str, list[dict]]:
    return load_table("env_rules")["variables"]


def _matches(when: Mapping[str, object], versions: Mapping[str, str | None],
             facts: Mapping[str, object] | None) -> bool:
    for key, want in when.items():
        if key in VERSION_KEYS:
            have = versions.get(key)
            if have is None or not satisfies(str(have), str(want)):
                return False
        elif key in CHOICE_KEYS:
            if versions.get(key) not in (want if isinstance(want, list) else [want]):
                return False
        elif key in INSTANCE_KEYS:
            if facts is None:
                return False
            have = facts.get(key)
            if key == "instance":
                if have not in want:  # type: ignore[operator]
                    return False
            elif have != want:
                return False
        else:
            raise ValueError(f"env rules: unknown condition key {key!r}")
    return True


def decide(var: str, versions: Mapping[str, str | None],
           facts: Mapping[str, object] | None = None) -> Decision:
    """First matching rule for `var`; without `facts`, instance rules are skipped."""
    for rule in _rules()[var]:
        when = rule.get("when") or {}
        if _matches(when, versions, facts):
            scope = "start" if INSTANCE_KEYS & set(when) else "image"
            value = rule.get("value")
            plugin = rule.get("plugin_sets")
            return Decision(var, None if value is None else str(value), scope,
                            rule["why"], rule.get("source", ""), when,
                            None if plugin is None else str(plugin),
                            bool(_rules()[var][-1].get("per_job")))
    raise ValueError(f"env rules: no rule for {var} matches (the last rule must have no 'when')")


def exportable(name: str) -> bool:
    """Whether an image env record may have the start step export `name`: a shell name
    in a family of env_rules.yaml's `start_names`, or a variable the rules decide.  An
    allow-list: BASH_ENV, ENV, LD_PRELOAD, PATH, PROMPT_COMMAND or IFS exported at every
    container start would run text or change what every later command means."""
    allowed = load_table("env_rules")["start_names"]
    return bool(SHELL_NAME_RE.fullmatch(name)) and (
        name.startswith(tuple(allowed["prefixes"])) or name in _rules())


def safe_value(value: str) -> bool:
    """Whether the start step may export `value`: env_rules.yaml's `start_values`
    characters only, bounded.  Quoting is not enough: a shell that declared the name
    `declare -i` evaluates the assigned value, and `a[$(cmd)]` runs cmd (attack-2 I-1)."""
    allowed = load_table("env_rules")["start_values"]
    return (len(value) <= allowed["max_length"]
            and re.fullmatch(allowed["pattern"].strip("^$"), value) is not None)


def plugin_facts() -> dict[str, str]:
    """The aws-ofi-nccl release (and file) the `plugin_sets` facts were checked against."""
    return dict(load_table("env_rules")["plugin_facts"])


def depends_on(var: str) -> list[str]:
    """The component versions and instance facts any rule of `var` looks at."""
    keys = {key for rule in _rules()[var] for key in (rule.get("when") or {})}
    return sorted(keys)


def image_env(versions: Mapping[str, str | None]) -> dict[str, Decision]:
    """Variables baked into the image as ENV (version rules only)."""
    return {var: decide(var, versions) for var in _rules()}


def explain(versions: Mapping[str, str | None], profile: Profile | None) -> list[Decision]:
    """Every variable's decision for `profile` (None: any instance)."""
    facts = profile.facts() if profile else None
    return [decide(var, versions, facts) for var in _rules()]


@dataclass(frozen=True)
class StartChange:
    """A change the start-time step makes for the detected instance."""

    var: str
    image_value: str | None
    value: str | None
    why: str


def start_changes(versions: Mapping[str, str | None], profile: Profile) -> list[StartChange]:
    """Where the instance's rules differ from what the image baked in."""
    changes = []
    for var in _rules():
        baked = decide(var, versions)
        wanted = decide(var, versions, profile.facts())
        if wanted.value != baked.value:
            changes.append(StartChange(var, baked.value, wanted.value, wanted.why))
    return changes


def start_defaults(versions: Mapping[str, str | None]) -> dict[str, str]:
    """Baked values of variables some instance changes at start: kept out of the image's
    ENV (the entrypoint exports them) so that a variable present at start is always the
    user's, even with the image's own value."""
    changed = {c.var for p in all_profiles().values() for c in start_changes(versions, p)}
    baked = image_env(versions)
    return {var: baked[var].value for var in sorted(changed)  # type: ignore[misc]
            if baked[var].is_set}


@dataclass(frozen=True)
class EnvFinding:
    """A variable set against the rules (lint and static checks)."""

    var: str
    value: str
    expected: str | None
    instances: tuple[str, ...]
    why: str

    def message(self) -> str:
        where = "every instance" if not self.instances else ", ".join(self.instances)
        want = "not set" if self.expected is None else f"{self.var}={self.expected}"
        return (f"{self.var}={self.value} is against the env rules on {where} "
                f"(expected {want}): {self.why}")


def lint_env(env: Mapping[str, str], versions: Mapping[str, str | None],
             profiles: list[Profile] | None = None) -> list[EnvFinding]:
    """Flag each ruled variable whose effective value differs from the rules' decision.

    Checked for every profile, since one image serves every instance family.
    The effective value is what the start-time step leaves: it replaces a value
    equal to the image's baked-in one, never a value the user chose.
    """
    findings: list[EnvFinding] = []
    profiles = profiles or list(all_profiles().values())
    for var in _rules():
        have = env.get(var)
        baked_decision = decide(var, versions)
        if baked_decision.per_job:
            continue  # the user's per-job choice, whatever its value
        baked = baked_decision.value
        wrong: dict[tuple[str | None, str], list[str]] = {}
        for profile in profiles:
            wanted = decide(var, versions, profile.facts())
            effective = wanted.value if have == baked else have
            if effective != wanted.value:
                wrong.setdefault((wanted.value, wanted.why), []).append(profile.name)
        for (expected, why), names in wrong.items():
            shown = () if len(names) == len(profiles) else tuple(names)
            findings.append(EnvFinding(var, have if have is not None else "(unset)",
                                       expected, shown, why))
    return findings


def forbidden(versions: Mapping[str, str | None], archs: list[str]) -> list[str]:
    """Messages for version combinations the rules table forbids."""
    problems = []
    for entry in load_table("env_rules").get("forbid", []):
        if entry.get("archs") and not set(entry["archs"]) & set(archs):
            continue
        if not _matches(entry.get("when") or {}, versions, None):
            continue
        for key, constraint in entry["require"].items():
            have = versions.get(key)
            if have is not None and not satisfies(str(have), str(constraint)):
                problems.append(f"{key} {have} does not meet {constraint}: {entry['why']}")
    return problems
