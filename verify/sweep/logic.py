"""`efa-verify sweep`: find the bad nodes and links among N nodes, in rounds.

A job-wide FAIL does not say where the fault is.  The sweep asks smaller
questions, all at once:

1. Node checks on every node in parallel (GPU, NVLink, local problems).
2. Pair rounds.  Each round is a matching: disjoint 2-node runs, all at once.
   A node that passes any pair is cleared (a node fault shows in every pair
   it is in).  After a failure, each suspect is paired next round with a
   cleared node it has not met.  A node that never passes and fails with two
   different cleared partners is bad (a bad partner or one bad link cannot
   make a healthy node do that); a pair that failed while both its nodes
   pass with others is a bad link or path, re-run once to tell a steady
   fault from a flapping one.  While cleared partners are plentiful this
   settles k bad nodes one round after their first failure, whatever N is;
   when they run out, suspects are re-paired among themselves and each round
   clears or convicts more of them.
3. Coverage rounds pair nodes that have not met, so links get tested; a link
   fault shows only in its own pair, so it is found only if that pair runs,
   and the report states the share of pairs covered.

The sweep never runs anything itself: a Runner does (verify/sweep/runner.py with
`efa-verify run`'s machinery, or the simulated fabric of verify/sweep/sim.py),
so the same code is proven at 4,096 simulated nodes and used on real ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from verify.run.outliers import low_outliers
from verify.tables import load_table

Pair = tuple[str, str]


class SweepError(ValueError):
    """A sweep that cannot start (fewer than two nodes): one line, exit 2."""


@dataclass(frozen=True)
class Trial:
    """What one node check or one pair run showed, as every runner reports it.

    status: pass | fail | hang | unknown (the run proves nothing, e.g. it was
    interrupted).  transport and gdr are per node (None: not known).
    evidence: {"file", "line", "rank", "text", "node"} dicts, the lines that
    decided; "node" names the node the line is about, where known.
    """

    status: str
    busbw: float | None = None
    transport: dict[str, str | None] = field(default_factory=dict)
    gdr: dict[str, bool | None] = field(default_factory=dict)
    evidence: tuple[dict, ...] = ()
    detail: str = ""
    elapsed: float = 0.0


class Runner(Protocol):
    """Runs node checks and pair rounds; the sweep decides from what they show."""

    def node_checks(self, nodes: Sequence[str]) -> dict[str, Trial]:
        """Check every node alone, all at once."""

    def pairs(self, pairs: Sequence[Pair], round_no: int) -> dict[Pair, Trial]:
        """Run each (disjoint) pair as one 2-node job, all at once."""


def table() -> dict:
    return load_table("sweep")


@dataclass
class NodeState:
    check: Trial | None = None
    passed: set[str] = field(default_factory=set)   # partners of passing pairs
    failed: dict[str, list[tuple[int, Trial]]] = field(default_factory=dict)
    met: set[str] = field(default_factory=set)
    busbw: list[float] = field(default_factory=list)
    accused: bool = False

    @property
    def check_ok(self) -> bool:
        """The node check ran and did not fail: the node may join pair rounds."""
        return self.check is not None and self.check.status not in ("fail", "hang")

    @property
    def cleared(self) -> bool:
        return bool(self.passed) and not self.accused


@dataclass
class RoundLog:
    number: int
    pairs: int
    failed: int
    elapsed: float
    kind: str  # node-checks | pairs | confirm


@dataclass(frozen=True)
class Slow:
    """Why a pair's run was judged slow: its busbw, the peers' median it was compared
    with and the thresholds (verify/data/sweep.yaml `bandwidth`), so the report can say
    what a bare `# Avg bus bandwidth` line cannot: slow against what."""

    busbw: float
    median: float
    peers: int  # pair runs the median was taken over (this round's included)
    min_ratio: float
    mad_z: float
    score: float  # modified z-score; -inf when the MAD is 0

    def says(self) -> str:
        z = "the MAD is 0" if self.score == float("-inf") else \
            f"robust z {self.score:.1f}"
        return (f"busbw {self.busbw:.2f} GB/s is {self.busbw / self.median:.2f} x the "
                f"peers' median {self.median:.2f} GB/s over {self.peers} pair runs; slow "
                f"means below {self.min_ratio:g} x the median "
                f"({self.min_ratio * self.median:.2f} GB/s) and more than {self.mad_z:g} "
                f"robust z-scores under it ({z})")


@dataclass
class SweepResult:
    nodes: dict[str, NodeState]
    trials: dict[Pair, list[tuple[int, Trial]]]
    rounds: list[RoundLog]
    slow: dict[tuple[int, Pair], Slow]
    bad_nodes: list[str]
    bad_links: list[Pair]
    unknown: list[str]
    confirmed: dict[Pair, bool]


def _key(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


class Sweep:
    """The sweep's state and rounds; `run()` drives a Runner to the end."""

    def __init__(self, nodes: Sequence[str], runner: Runner, coverage: int | None = None,
                 max_rounds: int | None = None, seed: int = 0,
                 progress: Callable[[str], None] | None = None) -> None:
        if len(set(nodes)) != len(nodes):
            raise SweepError("sweep: a node is listed twice")
        if len(nodes) < 2:
            raise SweepError(f"sweep: needs at least 2 nodes, got {len(nodes)}")
        conf = table()
        self.runner = runner
        self.progress = progress or (lambda _line: None)
        # The circle method meets every pair of N nodes in N-1 rounds: more coverage
        # rounds than that (or than the table's default) only repeat pairs.
        default = conf["rounds"]["coverage"]
        self.coverage = default if coverage is None else min(coverage,
                                                             max(len(nodes) - 1, default))
        self.max_rounds = max_rounds or max(conf["rounds"]["max"], self.coverage + 2)
        self.bw = conf["bandwidth"]
        self.rng = random.Random(f"sweep-{seed}")  # its own stream, whatever else is seeded
        self.nodes = {n: NodeState() for n in nodes}
        self.trials: dict[Pair, list[tuple[int, Trial]]] = {}
        self.rounds: list[RoundLog] = []
        self.slow: dict[tuple[int, Pair], Slow] = {}
        self._fleet: list[float] = []
        self._order: list[str | None] = []

    # -- what a trial means ------------------------------------------------
    def _failed(self, number: int, pair: Pair, trial: Trial) -> bool:
        return trial.status in ("fail", "hang") or (number, pair) in self.slow

    def _record(self, number: int, pair: Pair, trial: Trial) -> bool:
        """Book one finished trial on both nodes; True when it failed."""
        a, b = pair
        if trial.status == "unknown":
            return False
        if self._failed(number, pair, trial):
            self.nodes[a].failed.setdefault(b, []).append((number, trial))
            self.nodes[b].failed.setdefault(a, []).append((number, trial))
            return True
        for node, other in ((a, b), (b, a)):
            self.nodes[node].passed.add(other)
            if trial.busbw is not None:
                self.nodes[node].busbw.append(trial.busbw)
        return False

    def _accuse(self) -> None:
        """Convict nodes that never passed and failed with two cleared partners:
        a partner that is itself bad, or one bad link, cannot do that to a
        healthy node."""
        for state in self.nodes.values():
            if state.failed and not state.passed and not state.accused and \
                    sum(self.nodes[p].cleared for p in state.failed) >= 2:
                state.accused = True

    def _unresolved(self) -> list[str]:
        return sorted(n for n, s in self.nodes.items() if not s.accused and not s.passed)

    # -- scheduling ----------------------------------------------------------
    def _matching(self, coverage: int | None) -> list[Pair]:
        """Suspects first, each with a cleared partner it has not met; then, in
        coverage round `coverage`, the round-robin's pairs among the rest, and
        anyone still free with someone new."""
        used: set[str] = set()
        pairs: list[Pair] = []
        cleared = [n for n, s in self.nodes.items() if s.cleared]
        self.rng.shuffle(cleared)
        pool = iter(cleared)
        spare: list[str] = []

        def take(node: str) -> str | None:
            for i, other in enumerate(spare):
                if other not in self.nodes[node].met:
                    return spare.pop(i)
            for other in pool:
                if other not in self.nodes[node].met:
                    return other
                spare.append(other)
            return None

        for node in (n for n in self._unresolved() if self.nodes[n].check_ok):
            partner = take(node)
            if partner is not None:
                used.update((node, partner))
                pairs.append(_key(node, partner))
        if coverage is not None:
            for a, b in self._round_robin(coverage):
                if used.isdisjoint((a, b)) and not (self.nodes[a].accused
                                                    or self.nodes[b].accused):
                    used.update((a, b))
                    pairs.append(_key(a, b))
        free = [n for n, s in self.nodes.items() if s.check_ok and not s.accused
                and n not in used and (coverage is not None or not s.passed)]
        self.rng.shuffle(free)
        return pairs + self._fresh_pairs(free)

    def _round_robin(self, index: int) -> list[Pair]:
        """Round `index` of the circle method over the checked nodes in a seeded
        order: every round a perfect matching, no pair twice in N-1 rounds."""
        if not self._order:
            self._order = [n for n, s in self.nodes.items() if s.check_ok]
            self.rng.shuffle(self._order)
            if len(self._order) % 2:
                self._order.append(None)
        if len(self._order) < 2:  # every node check failed, or one node left: no pairs
            return []
        fixed, rest = self._order[0], self._order[1:]
        shift = index % len(rest) if rest else 0
        ring = [fixed, *rest[shift:], *rest[:shift]]
        half = len(ring) // 2
        return [(a, b) for a, b in zip(ring[:half], reversed(ring[half:]), strict=True)
                if a is not None and b is not None]

    def _fresh_pairs(self, nodes: list[str]) -> list[Pair]:
        """Greedy matching of `nodes` among themselves, avoiding pairs that met."""
        pairs = []
        free = list(nodes)
        while len(free) >= 2:
            node = free.pop(0)
            for i, other in enumerate(free[:64]):
                if other not in self.nodes[node].met:
                    pairs.append(_key(node, free.pop(i)))
                    break
        return pairs

    # -- rounds --------------------------------------------------------------
    def _run_pairs(self, pairs: list[Pair], kind: str) -> None:
        number = len(self.rounds)
        results = self.runner.pairs(pairs, number)
        measured = {p: results[p].busbw for p in pairs
                    if results[p].busbw is not None and results[p].status in ("pass", "fail")}
        self._fleet += [v for p, v in measured.items() if results[p].status == "pass"]
        # Judged once, against every passing pair run so far (this round included).  A run
        # that failed its own checks is judged too: not to fail it again, but so that its
        # evidence says what its bandwidth was against the peers'.
        slow = low_outliers(measured, self.bw["mad_z"], self.bw["min_ratio"], self._fleet)
        self.slow |= {(number, o.name): Slow(o.value, o.median, len(self._fleet),
                                              self.bw["min_ratio"], self.bw["mad_z"],
                                              o.score) for o in slow}
        failed = 0
        for pair in pairs:
            a, b = pair
            self.nodes[a].met.add(b)
            self.nodes[b].met.add(a)
            self.trials.setdefault(pair, []).append((number, results[pair]))
            failed += self._record(number, pair, results[pair])
        self._accuse()
        self.rounds.append(RoundLog(number, len(pairs), failed,
                                    max((results[p].elapsed for p in pairs), default=0.0),
                                    kind))
        self.progress(f"round {number} ({kind}): {len(pairs)} pairs, {failed} failed; "
                      f"{sum(s.accused for s in self.nodes.values())} nodes accused, "
                      f"{len(self._unresolved())} unsettled")

    def _suspect_links(self) -> list[Pair]:
        return sorted(p for p, runs in self.trials.items()
                      if all(self.nodes[n].cleared for n in p)
                      and any(self._failed(r, p, t) for r, t in runs if t.status != "unknown"))

    def run(self) -> SweepResult:
        checks = self.runner.node_checks(list(self.nodes))
        for name, state in self.nodes.items():
            state.check = checks[name]
            state.accused = checks[name].status in ("fail", "hang")
        self.rounds.append(RoundLog(0, len(self.nodes), sum(s.accused for s in
                                                              self.nodes.values()),
                                    max((t.elapsed for t in checks.values()), default=0.0),
                                    "node-checks"))
        self.progress(f"node checks: {len(self.nodes)} nodes, "
                      f"{self.rounds[0].failed} failed")
        pair_rounds = 0
        while pair_rounds < self.max_rounds:
            coverage = pair_rounds if pair_rounds < self.coverage else None
            pairs = self._matching(coverage)
            if not pairs:
                break
            self._run_pairs(pairs, "pairs")
            pair_rounds += 1
            if coverage is None and not self._unresolved():
                break
        confirmed = self._confirm_links()
        return self._result(confirmed)

    def _confirm_links(self) -> dict[Pair, bool]:
        """Run each suspect link once more: reproduced, or intermittent (flapping)."""
        links = self._suspect_links()
        todo = list(links)
        runs_before = {p: len(self.trials[p]) for p in links}
        while todo:
            busy: set[str] = set()
            batch = []
            for pair in list(todo):
                if busy.isdisjoint(pair):
                    batch.append(pair)
                    busy.update(pair)
                    todo.remove(pair)
            self._run_pairs(batch, "confirm")
        return {p: any(self._failed(r, p, t) for r, t in self.trials[p][runs_before[p]:])
                for p in links}

    def _result(self, confirmed: dict[Pair, bool]) -> SweepResult:
        bad = sorted(n for n, s in self.nodes.items() if s.accused)
        return SweepResult(self.nodes, self.trials, self.rounds, self.slow, bad,
                           self._suspect_links(),
                           self._unresolved(), confirmed)

