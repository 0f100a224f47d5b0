"""`efa-verify sweep` at scale on the simulated fabric: rounds, finds, false accusations.

    python bench/sweep_sim.py [--seeds 5] [--sizes 16,64,256,1024,4096]

For each cluster size N and fault mix, several seeds (fault placement and
noise differ per seed).  The sweep's own code (verify/sweep/logic.py) drives the
simulated fabric (verify/sweep/sim.py) through the Runner interface real runs
use.  Columns:
  rounds      pair rounds, median and max over seeds (node checks not counted)
  nodes       node/NIC faults found / injected, summed over seeds
  false       accusations of healthy nodes or links (goal 0)
  missed      node faults not found (goal 0); link faults whose pair ran but
              were not found (a flapping link may pass every run it gets)
  links       link faults covered (their pair ran) / injected; found
  coverage    share of all node pairs that ran
  wall        modelled wall time in minutes (sweep.yaml's simulation timings)
  cpu         seconds this machine spent simulating one sweep (median)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verify.sweep.logic import Sweep  # noqa: E402
from verify.sweep.sim import SimulatedFabric, inject, modelled_seconds, node_names, score  # noqa: E402

MIXES: list[tuple[str, object]] = [
    ("none", {}),
    ("socket x1", {"socket": 1}),
    ("no_gdr x1", {"no_gdr": 1}),
    ("slow_nic x1", {"slow_nic": 1}),
    ("hang x1", {"hang": 1}),
    ("flapping_link x1", {"flapping_link": 1}),
    ("bad_link x1", {"bad_link": 1}),
    ("one of each", {"socket": 1, "no_gdr": 1, "slow_nic": 1, "hang": 1, "gpu": 1,
                     "bad_link": 1, "flapping_link": 1}),
    ("k=8 nodes", {"socket": 2, "no_gdr": 2, "slow_nic": 2, "hang": 2}),
    ("1% nodes", lambda n: {"slow_nic": max(1, n // 200), "socket": max(1, n // 200)}),
    ("10% nodes", lambda n: {"slow_nic": max(1, n // 40), "socket": max(1, n // 40),
                             "no_gdr": max(1, n // 40), "hang": max(1, n // 40)}),
]


def one(n: int, mix: dict, seed: int, coverage: int | None = None) -> dict:
    nodes = node_names(n)
    faults = inject(nodes, mix, seed)
    start = time.process_time()
    result = Sweep(nodes, SimulatedFabric(faults, seed), coverage, seed=seed).run()
    cpu = time.process_time() - start
    pair_rounds = [r for r in result.rounds if r.kind != "node-checks"]
    healthy = sum(1 for s in result.nodes.values() if s.check_ok)
    return {**score(result.bad_nodes, result.bad_links, set(result.trials), faults),
            "rounds": len(pair_rounds), "unknown": len(result.unknown),
            "coverage": len(result.trials) / max(1, healthy * (healthy - 1) // 2),
            "wall": modelled_seconds(result.rounds) / 60, "cpu": cpu}


LINK_MIXES = [("bad_link x1 all", {"bad_link": 1}), ("flapping x1 all", {"flapping_link": 1}),
              ("links x4+nodes all", {"bad_link": 2, "flapping_link": 2, "slow_nic": 2})]


def rows(sizes: list[int], full_coverage_upto: int):
    """(N, name, faults, coverage): every mix at every size; link mixes with the
    full round-robin (N-1 coverage rounds, every pair runs) up to a size."""
    for n in sizes:
        for name, mix in MIXES:
            faults = mix(n) if callable(mix) else mix
            if sum(faults.values()) * 2 <= n:
                yield n, name, faults, None
        if n <= full_coverage_upto:
            for name, mix in LINK_MIXES:
                yield n, name, mix, n - 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", default="16,64,256,1024,4096")
    parser.add_argument("--full-coverage-upto", type=int, default=256,
                        help="Also run link mixes with every pair covered up to this N.")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    head = (f"{'N':>5}  {'fault mix':<18} {'rounds':>7}  {'nodes':>9}  {'false':>5}  "
            f"{'missed':>6}  {'links cov/inj found':>19}  {'unknown':>7}  {'coverage':>8}  "
            f"{'wall min':>8}  {'cpu s':>6}")
    print(head)
    print("-" * len(head))
    worst = {"false": 0, "missed_nodes": 0, "unknown": 0}
    for n, name, faults, coverage in rows(sizes, args.full_coverage_upto):
        runs = [one(n, faults, seed, coverage) for seed in range(args.seeds)]
        total = {k: sum(r[k] for r in runs) for k in runs[0]}
        rounds = [r["rounds"] for r in runs]
        false = total["false_nodes"] + total["false_links"]
        worst["false"] += false
        worst["missed_nodes"] += total["nodes_missed"]
        worst["unknown"] += total["unknown"]
        links = (f"{total['links_covered']}/{total['link_faults']} "
                 f"{total['links_found']}") if total["link_faults"] else "-"
        print(f"{n:>5}  {name:<18} {statistics.median(rounds):>3g}/{max(rounds):<3}  "
              f"{total['nodes_found']:>4}/{total['node_faults']:<4}  {false:>5}  "
              f"{total['nodes_missed']:>2}+{total['links_missed_covered']:<3}  "
              f"{links:>19}  {total['unknown']:>7}  "
              f"{statistics.median(r['coverage'] for r in runs):>8.4%}  "
              f"{statistics.median(r['wall'] for r in runs):>8.1f}  "
              f"{statistics.median(r['cpu'] for r in runs):>6.3f}")
    print(f"\ntotal over every row: false accusations {worst['false']}, node faults missed "
          f"{worst['missed_nodes']}, nodes left unknown {worst['unknown']} "
          f"({args.seeds} seeds per row)")
    return 1 if worst["false"] or worst["missed_nodes"] else 0


if __name__ == "__main__":
    sys.exit(main())
