"""A simulated EFA fabric of N nodes with injected faults, for `efa-verify sweep`.

No machine here has more than one host, so the sweep's logic is proven at
scale against this Runner: the sweep's own code (verify/sweep/logic.py) calls it
exactly as it calls the real runner.  Each simulated run answers what a real
run's result would say: pass/fail/hang, busbw, per-node transport and GDR,
and evidence lines worded as NCCL prints them (file names `sim://...`, so a
simulated line is never mistaken for a real one).  Timings are modelled from
verify/data/sweep.yaml's `simulation` block.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from verify.bandwidth import table as bandwidth_table
from verify.sweep.logic import Pair, Trial, table

# Faults on a node show in every pair it is in; faults on a link only in its pair.
NODE_FAULTS = ("socket", "no_gdr", "slow_nic", "hang", "gpu")
LINK_FAULTS = ("bad_link", "flapping_link")


@dataclass(frozen=True)
class Fault:
    kind: str
    where: tuple[str, ...]  # one node, or the two nodes of a link

    def __post_init__(self) -> None:
        size = 1 if self.kind in NODE_FAULTS else 2 if self.kind in LINK_FAULTS else 0
        if not size:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if len(self.where) != size:
            raise ValueError(f"fault {self.kind} takes {size} node name(s)")


def _line(where: str, node: str, rank: int, text: str) -> dict:
    return {"file": f"sim://{where}/rank.{rank}.log", "line": 8, "rank": rank, "text": text,
            "node": node}


class SimulatedFabric:
    """The Runner interface over a model: nodes, faults, noise, modelled seconds."""

    def __init__(self, faults: Sequence[Fault], seed: int = 0) -> None:
        self.model = table()["simulation"]
        self.rng = random.Random(seed)
        self.node_faults = {f.where[0]: f.kind for f in faults if f.kind in NODE_FAULTS}
        self.link_faults = {tuple(sorted(f.where)): f.kind for f in faults
                            if f.kind in LINK_FAULTS}
        self.runs = 0

    def node_checks(self, nodes: Sequence[str]) -> dict[str, Trial]:
        out = {}
        for node in nodes:
            self.runs += 1
            evidence = ()
            if self.node_faults.get(node) == "gpu":
                evidence = (_line(node, node, 0, f"{node}:1:1 [3] NCCL WARN Cuda failure "
                                  "'uncorrectable ECC error encountered'"),)
            out[node] = Trial("fail" if evidence else "pass", evidence=evidence,
                              detail="single-node nccl-tests failed" if evidence else "",
                              elapsed=self.model["node_check_s"])
        return out

    def pairs(self, pairs: Sequence[Pair], round_no: int) -> dict[Pair, Trial]:
        return {pair: self._pair(pair) for pair in pairs}

    def _pair(self, pair: Pair) -> Trial:
        self.runs += 1
        m = self.model
        where = "+".join(pair)
        ratio, status, evidence = 1.0, "pass", []
        transport = dict.fromkeys(pair, "libfabric")  # the parser's words
        gdr: dict[str, bool | None] = dict.fromkeys(pair, True)

        def channel(node: str, rank: int, via: str) -> dict:
            return _line(where, node, rank, f"{node}:1:2 [0] NCCL INFO Channel 00/0 : "
                                            f"{rank}[0] -> {1 - rank}[0] [send] via {via}")

        for rank, node in enumerate(pair):
            kind = self.node_faults.get(node)
            if kind == "hang":
                return Trial("hang", None, {}, {}, (_line(
                    where, node, rank, f"{node}:1:1 [0] NCCL INFO NET/OFI Using Libfabric "
                    "version 2.1"),), f"no rank printed anything for {m['hang_s']} s",
                    m["hang_s"])
            if kind == "socket":
                transport[node], gdr[node], status = "socket", False, "fail"
                ratio = min(ratio, m["socket_busbw_GBps"] / m["busbw_GBps"])
                evidence.append(channel(node, rank, "NET/Socket/0"))
            elif kind == "no_gdr":
                gdr[node], status = False, "fail"
                ratio = min(ratio, m["no_gdr_ratio"])
                evidence.append(channel(node, rank, "NET/Libfabric/0"))
            elif kind == "slow_nic":
                ratio = min(ratio, m["slow_nic_ratio"])
        link = self.link_faults.get(tuple(sorted(pair)))
        if link == "bad_link" or (link == "flapping_link"
                                  and self.rng.random() < m["flap_probability"]):
            status = "fail"
            evidence.append(_line(where, pair[0], 0, f"{pair[0]}:1:1 [0] NCCL WARN NET/OFI "
                                  "Request completed with error. RC: 103. Error: 4126 "
                                  "(Unresponsive receiver (reachable by EFA device but "
                                  "handshake failed))"))
        busbw = m["busbw_GBps"] * ratio * (1 + self.rng.gauss(0, m["noise"]))
        if busbw < bandwidth_table()["fraction"] * m["busbw_GBps"]:
            status = "fail"  # the run's own bandwidth check, with --instance-type p5
            evidence.append({**_line(where, pair[0], 0, f"# Avg bus bandwidth    : {busbw:.2f}"),
                             "node": None})
        # half launch and init, half data; the pair timeout bounds a crawl
        elapsed = min(m["pair_s"] * (0.5 + 0.5 / ratio), m["hang_s"])
        return Trial(status, round(busbw, 2), transport, gdr, tuple(evidence), "", elapsed)

def node_names(count: int) -> list[str]:
    """Slurm-like names: p5-0001 ... (the form `sbatch --exclude=` takes)."""
    return [f"p5-{i:04d}" for i in range(1, count + 1)]


def inject(nodes: Sequence[str], mix: dict[str, int], seed: int) -> list[Fault]:
    """`mix` faults ({kind: count}) on distinct random nodes (links between healthy ones)."""
    rng = random.Random(seed)
    order = list(nodes)
    rng.shuffle(order)
    faults = []
    for kind, count in sorted(mix.items()):
        for _ in range(count):
            if kind in LINK_FAULTS:
                faults.append(Fault(kind, (order.pop(), order.pop())))
            else:
                faults.append(Fault(kind, (order.pop(),)))
    return faults


def score(bad_nodes: Sequence[str], bad_links: Sequence[Pair], pairs_run: set[Pair],
          faults: Sequence[Fault]) -> dict:
    """Found, missed and false accusations against the injected truth.

    A link fault counts as `covered` when its pair ran at all: only then could
    any sweep see it.  A flapping link whose pair ran but happened to pass is a
    miss (the sweep cannot know), reported as such.
    """
    node_truth = {f.where[0] for f in faults if f.kind in NODE_FAULTS}
    link_truth = {tuple(sorted(f.where)) for f in faults if f.kind in LINK_FAULTS}
    accused_links = {tuple(sorted(p)) for p in bad_links}
    covered = {p for p in link_truth if p in pairs_run}
    return {
        "node_faults": len(node_truth),
        "nodes_found": len(node_truth & set(bad_nodes)),
        "nodes_missed": len(node_truth - set(bad_nodes)),
        "false_nodes": len(set(bad_nodes) - node_truth),
        "link_faults": len(link_truth),
        "links_covered": len(covered),
        "links_found": len(link_truth & accused_links),
        "links_missed_covered": len(covered - accused_links),
        "false_links": len(accused_links - link_truth),
    }


def modelled_seconds(rounds: Sequence) -> float:
    """Wall time of a sweep on a real cluster: each round lasts as long as its
    slowest run (all its runs go at once), plus the overhead of starting it."""
    overhead = table()["simulation"]["round_overhead_s"]
    return sum(r.elapsed + overhead for r in rounds)
