"""The sweep's report: per-node table, accused nodes and links with evidence, exclude list.

JSON (schema verify/schema/sweep.schema.json) for machines, a text table for
people.  Every accusation names the trials it rests on and their evidence
lines; a node the sweep could not settle is `unknown`, never guessed.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from verify.checks import tool
from verify.sweep.logic import Slow, SweepResult, Trial

BUSBW_LINE = "Avg bus bandwidth"

SCHEMA_VERSION = 1


def _evidence(trial: Trial, node: str | None = None, limit: int = 3,
              slow: Slow | None = None) -> list[dict]:
    """The trial's lines, those about `node` first.  For a run judged slow, its bus
    bandwidth line comes first and carries what it was compared with (`judged`): a bare
    `# Avg bus bandwidth : 131.00` does not say slow against what; where the run printed
    no such line, the comparison is an entry of its own."""
    def rank(e: dict) -> tuple[bool, bool]:
        return (slow is None or BUSBW_LINE not in e["text"], e.get("node") != node)

    lines = [dict(e) for e in sorted(trial.evidence, key=rank)[:limit]]
    if slow is None:
        return lines
    if lines and BUSBW_LINE in lines[0]["text"]:
        lines[0]["judged"] = slow.says()
        return lines
    return [{"file": lines[0]["file"] if lines else "sweep", "line": 0, "rank": None,
             "node": None, "text": slow.says(), "judged": slow.says()}, *lines]


def _slow(result: SweepResult, number: int, a: str, b: str) -> Slow | None:
    """The sweep's judgement of pair (a, b)'s run in round `number`, if it was slow."""
    return result.slow.get((number, (a, b) if a < b else (b, a)))


def _by_node(result: SweepResult) -> dict[str, list[Trial]]:
    """Every node's pair trials, gathered in one pass (a scan per node would cost nodes x
    pairs: minutes at tens of thousands of nodes)."""
    trials: dict[str, list[Trial]] = defaultdict(list)
    for pair, runs in result.trials.items():
        for node in pair:
            trials[node] += [t for _, t in runs]
    return trials


def _transport(trials: list[Trial], node: str) -> tuple[str | None, bool | None]:
    """Worst transport and GDR this node showed in any of its pair trials (None: not
    known)."""
    seen = [t for t in trials if node in t.transport]
    transports = {t.transport[node] for t in seen if t.transport[node]}
    gdrs = {t.gdr.get(node) for t in seen} - {None}
    worst = [t for t in sorted(transports) if "socket" in t.lower()]
    transport = (worst or sorted(transports) or [None])[0]
    return transport, (False if False in gdrs else True if gdrs else None)


def _node_row(result: SweepResult, node: str, trials: list[Trial]) -> dict:
    state = result.nodes[node]
    transport, gdr = _transport(trials, node)
    if state.accused:
        status = "bad"
    elif state.cleared:
        status = "ok"
    else:
        status = "unknown"
    evidence: list[dict] = []
    why = ""
    if state.check and state.check.status in ("fail", "hang"):
        why = f"node check {state.check.status}: {state.check.detail}".rstrip(": ")
        evidence = _evidence(state.check, node)
    elif state.accused:
        partners = sorted(state.failed)
        why = f"failed with {len(partners)} different partners: {', '.join(partners[:8])}"
        judged = []
        for partner in partners[:2]:
            number, trial = state.failed[partner][0]
            slow = _slow(result, number, node, partner)
            judged += [slow.says()] if slow else []
            evidence += [{**e, "round": number, "pair": [node, partner]}
                         for e in _evidence(trial, node, 2, slow)]
        why += f"; slow: {judged[0]}" if judged else ""
    elif status == "unknown":
        why = "not settled: " + ("never ran a pair" if not state.met else
                                 f"failed with {', '.join(sorted(state.failed))}, "
                                 "no cleared partner left to tell")
    return {"node": node, "status": status, "reason": why,
            "busbw_GBps": round(statistics.median(state.busbw), 2) if state.busbw else None,
            "transport": transport, "gdr": gdr, "partners_passed": len(state.passed),
            "partners_failed": len(state.failed), "evidence": evidence}


def _link_row(result: SweepResult, pair: tuple[str, str]) -> dict:
    runs = result.trials[pair]
    failing = [(n, t) for n, t in runs if t.status in ("fail", "hang")
               or (n, pair) in result.slow]
    number, trial = failing[0]
    slow = _slow(result, number, *pair)
    return {"pair": list(pair), "runs": len(runs), "failed_runs": len(failing),
            "reproduced": result.confirmed.get(pair),
            "reason": "failed while both nodes passed with other partners" +
                      ("" if result.confirmed.get(pair) else
                       "; did not fail again on re-run (intermittent)") +
                      (f"; slow: {slow.says()}" if slow else ""),
            "busbw_GBps": trial.busbw,
            "evidence": [{**e, "round": number} for e in _evidence(trial, slow=slow)]}


def build(result: SweepResult, hosts_source: str, mode: str, extra: dict | None = None) -> dict:
    """The sweep's JSON document; verdict pass only when nothing is accused or unknown."""
    bad = result.bad_nodes
    links = [_link_row(result, p) for p in result.bad_links]
    unknown = result.unknown
    verdict = "fail" if bad or links else "inconclusive" if unknown else "pass"
    pairs_run = len(result.trials)
    healthy = sum(1 for s in result.nodes.values() if s.check_ok)
    possible = healthy * (healthy - 1) // 2
    by_node = _by_node(result)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": tool("sweep"),
        "mode": mode,
        "hosts_source": hosts_source,
        "verdict": verdict,
        "nodes_total": len(result.nodes),
        "rounds": [{"round": r.number, "kind": r.kind, "runs": r.pairs, "failed": r.failed,
                    "elapsed_s": round(r.elapsed, 3)} for r in result.rounds],
        "pair_rounds": sum(r.kind != "node-checks" for r in result.rounds),
        "pairs_run": pairs_run,
        "pairs_covered_share": round(pairs_run / possible, 6) if possible else None,
        "bad_nodes": bad,
        "bad_links": links,
        "unknown_nodes": unknown,
        "exclude": {
            "nodes": bad,
            "slurm": f"--exclude={','.join(bad)}" if bad else None,
            "kubectl": ([f"kubectl cordon {' '.join(bad)}",
                         f"kubectl taint nodes {' '.join(bad)} efakit.io/efa-bad=true:NoSchedule"]
                        if bad else []),
        },
        "nodes": [_node_row(result, n, by_node.get(n, [])) for n in sorted(result.nodes)],
        **(extra or {}),
    }


def to_text(doc: dict, limit: int = 40) -> str:
    """The per-node table (accused and unknown nodes first), accusations, exclude line."""
    rows = sorted(doc["nodes"], key=lambda r: ({"bad": 0, "unknown": 1}.get(r["status"], 2),
                                               r["node"]))
    width = max([4, *(len(r["node"]) for r in rows[:limit])])
    out = [f"{'node':<{width}}  {'status':<7}  {'busbw':>7}  {'transport':<13}  gdr    evidence"]
    for row in rows[:limit]:
        ev = row["evidence"][0] if row["evidence"] else None
        cite = f"{ev['file']}:{ev['line']}: {ev['text'][:80]}" if ev else row["reason"][:80]
        busbw = f"{row['busbw_GBps']:.1f}" if row["busbw_GBps"] is not None else "-"
        out.append(f"{row['node']:<{width}}  {row['status']:<7}  {busbw:>7}  "
                   f"{row['transport'] or '-':<13}  {str(row['gdr']).lower():<5}  {cite}")
    if len(rows) > limit:
        out.append(f"... {len(rows) - limit} more nodes, all ok (--json for every row)")
    out.append("")
    for row in (r for r in rows if r["status"] == "bad"):
        out.append(f"BAD NODE {row['node']}: {row['reason']}")
        out += [f"  {e['file']}:{e['line']}: {e['text']}" for e in row["evidence"]]
    for link in doc["bad_links"]:
        out.append(f"BAD LINK {' <-> '.join(link['pair'])}: {link['reason']}")
        out += [f"  {e['file']}:{e['line']}: {e['text']}" for e in link["evidence"]]
    for node in doc["unknown_nodes"]:
        out.append(f"UNKNOWN {node}: not settled within the round limit")
    share = doc["pairs_covered_share"]
    out.append(f"{doc['verdict'].upper()}: {doc['nodes_total']} nodes, {doc['pair_rounds']} "
               f"pair rounds, {doc['pairs_run']} pairs run"
               + (f" ({share:.2%} of all pairs)" if share is not None else ""))
    if doc["exclude"]["slurm"]:
        out.append(f"exclude: sbatch {doc['exclude']['slurm']}")
        out += [f"exclude: {c}" for c in doc["exclude"]["kubectl"]]
    return "\n".join(out) + "\n"
