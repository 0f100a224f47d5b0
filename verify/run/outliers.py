"""Name the node (or rank, or node pair) far below its peers.

A job is as fast as its slowest node, and a mean hides one bad node among
many.  The median absolute deviation (MAD) does not: the modified z-score
0.6745 * (x - median) / MAD (Iglewicz and Hoaglin) marks values far from the
middle whatever the rest look like.  Only the low side matters for bandwidth.
Small and reusable: a per-host counter comparison or a Slurm node-pair sweep
passes {name: figure} and gets the names back.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from statistics import median

Z_THRESHOLD = 3.5  # Iglewicz and Hoaglin's recommended cut-off
MIN_PEERS = 3  # with fewer values there is no "peers" to be far from


@dataclass(frozen=True)
class Outlier:
    name: Hashable
    value: float
    median: float
    score: float  # modified z-score (negative: below the median)

    def describe(self, unit: str = "GB/s") -> str:
        how = f"modified z {self.score:.1f}" if math.isfinite(self.score) else \
            "most peers equal"
        return (f"{self.name}: {_number(self.value)} {unit}, {self.value / self.median:.0%} "
                f"of the median {_number(self.median)} ({how})")


def _number(value: float) -> str:
    """12.5 stays 12.5; byte counts read as 100,000,000 rather than 1e+08."""
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:g}"


def low_outliers(values: Mapping[Hashable, float], threshold: float = Z_THRESHOLD,
                 min_fraction: float = 0.9,
                 peers: Iterable[float] | None = None) -> list[Outlier]:
    """Values far below their peers, lowest first.

    An entry must be past `threshold` modified z-scores below the median and
    below `min_fraction` of the median, so a tight healthy cluster (tiny MAD)
    does not turn 1% of noise into an outlier.  When more than half the values
    are identical the MAD is 0; then anything below `min_fraction` of the median
    is named.  `peers` (default: the values themselves) is the population the
    median and MAD come from: a sweep judges one round's pairs against every
    pair run so far.
    """
    population = list(values.values() if peers is None else peers)
    if len(population) < MIN_PEERS:
        return []
    mid = median(population)
    if mid <= 0:
        return []
    mad = median(abs(v - mid) for v in population)
    out = []
    for name, value in values.items():
        if value >= mid * min_fraction:
            continue
        score = 0.6745 * (value - mid) / mad if mad else float("-inf")
        if score <= -threshold:
            out.append(Outlier(name, value, mid, score))
    return sorted(out, key=lambda o: o.value)
