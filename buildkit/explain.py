"""`efakit explain-env`: each FI_/NCCL_ variable per instance, and what differs between them.

One image serves every instance family, so the interesting question is what
changes from one instance to another; the table puts those variables first.
Everything comes from the env rules table (verify/data/env_rules.yaml) through
the same evaluator the renderer, the start-time step, lint and static use.
"""

from __future__ import annotations

from collections.abc import Mapping

from verify.envrules import Decision, depends_on, explain, image_env, plugin_facts
from verify.profiles import Profile

SCHEMA_VERSION = 1
ANY = "any instance"
# What the [bracket] after each value says (the `where` of every cell).
WHERE_LEGEND = ("[brackets]: where the value comes from: image ENV (baked into the "
                "image), set/unset at container start (the entrypoint, per instance), "
                "or not set (left to NCCL, libfabric and the plugin)")


def _where(decision: Decision, baked: Decision) -> str:
    if decision.scope == "start":
        if decision.is_set:
            return "set at container start"
        return "unset at container start" if baked.is_set else "not set"
    return "image ENV" if decision.is_set else "not set"


def _cell(decision: Decision) -> dict:
    return {"value": decision.value, "plugin_sets": decision.plugin_sets,
            "scope": decision.scope, "why": decision.why, "source": decision.source}


def explain_env(versions: Mapping[str, str | None], profiles: list[Profile | None],
                env_extra: Mapping[str, str], spec_profile: str | None = None) -> dict:
    """The JSON document (verify/schema/explain-env.schema.json).  `spec_profile`: the
    spec profile whose versions these are (None: the spec's default)."""
    names = [p.name if p else ANY for p in profiles]
    baked = image_env(versions)
    per_profile = [{d.var: d for d in explain(versions, p)} for p in profiles]
    variables = []
    for var in baked:
        cells = {name: {**_cell(decisions[var]), "where": _where(decisions[var], baked[var])}
                 for name, decisions in zip(names, per_profile, strict=True)}
        distinct = {(c["value"], c["plugin_sets"], c["why"]) for c in cells.values()}
        variables.append({
            "var": var, "differs": len(distinct) > 1,
            "depends_on": [f"{key} {versions[key]}" if versions.get(key) else key
                           for key in depends_on(var)],
            "per_job": baked[var].per_job, "by_instance": cells})
    return {"schema_version": SCHEMA_VERSION, "profile": spec_profile or "default",
            "versions": {k: v for k, v in versions.items() if v},
            "plugin_facts": plugin_facts(),
            "instances": names, "variables": variables,
            "env_extra": dict(env_extra)}


def _shown(cell: dict) -> str:
    text = cell["value"] if cell["value"] is not None else "not set"
    return f"{text} (plugin sets {cell['plugin_sets']})" if cell["plugin_sets"] else text


def to_text(doc: dict, framework: str) -> str:
    names = doc["instances"]
    shown = ", ".join(f"{k}={v}" for k, v in doc["versions"].items())
    facts = doc["plugin_facts"]
    pinned = doc["versions"].get("aws_ofi_nccl")
    drift = "" if pinned == facts["aws_ofi_nccl"] else \
        f"; this profile pins {pinned or 'no plugin'}: what it sets may differ"
    lines = [f"{framework} (spec profile {doc['profile']}; --profile picks another): {shown}",
             f"instances: {', '.join(names)}",
             f"plugin sets: from aws-ofi-nccl {facts['aws_ofi_nccl']} {facts['where']}{drift}",
             WHERE_LEGEND]
    differ = [v for v in doc["variables"] if v["differs"]]
    same = [v for v in doc["variables"] if not v["differs"]]
    width = max(len(v["var"]) for v in doc["variables"])
    if len(names) > 1:
        cols = [max([len(n)] + [len(_shown(v["by_instance"][n])) for v in differ])
                for n in names]
        lines.append("")
        lines.append(f"differs between them ({len(differ)}):" if differ
                     else "nothing differs between them")
        if differ:
            columns = list(zip(names, cols, strict=True))
            lines.append("  " + "  ".join([f"{'variable':<{width}}"]
                                          + [f"{n:<{c}}" for n, c in columns]))
            for v in differ:
                cells = [f"{_shown(v['by_instance'][n]):<{c}}" for n, c in columns]
                lines.append("  " + "  ".join([f"{v['var']:<{width}}"] + cells))
    groups = [("variables", differ + same)] if len(names) == 1 else \
        [("why they differ", differ), ("same on every instance", same)]
    for title, group in groups:
        if not group:
            continue
        lines += ["", f"{title}:"]
        for v in group:
            reasons: dict[tuple, list[str]] = {}
            for name in names:
                c = v["by_instance"][name]
                reasons.setdefault((_shown(c), c["where"], c["why"], c["source"]),
                                   []).append(name)
            for (value, where, why, source), on in reasons.items():
                scope = "" if len(reasons) == 1 else f" on {', '.join(on)}"
                lines.append(f"{v['var']}: {value}  [{where}]{scope}")
                lines.append(f"  why: {why}")
                lines.append(f"  source: {source}")
            depends = ", ".join(v["depends_on"]) or "nothing (same for every version)"
            lines.append(f"  depends on: {depends}" + ("; set per job" if v["per_job"] else ""))
    for name, value in doc["env_extra"].items():
        lines.append(f"\n{name}={value}  [image ENV, from the spec's env_extra]")
    return "\n".join(lines) + "\n"
