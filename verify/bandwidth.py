"""Bus bandwidth expectations: published figures, the derived floor, and what ran.

A bandwidth verdict compares a run with something: a published measurement
(bandwidth.yaml, with its provenance), a floor derived from the instance's
EFA bandwidth by a documented model (labelled `derived`: a model, not a
measurement), or a site baseline (verify/baseline.py).  This module knows the
model and reads which collective ran, on how many ranks, from the nccl-tests
table itself, so every collective is judged, not only all_reduce.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from verify.checks import Check, Evidence
from verify.profiles import Profile
from verify.tables import load_table

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "alltoall")
# nccl-tests prints redop `none` for both; their busbw factor is the same.
GATHER_OR_ALLTOALL = "all_gather or alltoall"


@cache
def table() -> dict:
    """bandwidth.yaml, validated on load."""
    data = load_table("bandwidth")
    for i, row in enumerate(data["published"]):
        missing = {"instance", "collective", "size_bytes", "nodes", "busbw_GBps", "use",
                   "source"} - set(row)
        if missing or row["collective"] not in COLLECTIVES or \
                row["use"] not in ("expectation", "reference"):
            raise ValueError(f"bandwidth.yaml: published[{i}] is malformed "
                             f"({', '.join(sorted(missing)) or 'collective/use'})")
    return data


def human_size(size: int) -> str:
    """1073741824 -> '1 GiB', 65536 -> '64 KiB', 1000 -> '1000 B'."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:g} {unit}" if value >= 10 or value == int(value) else \
                f"{value:.1f} {unit}"
    return f"{size} B"


def busbw_of(row: dict) -> float | None:
    """The better of a row's out-of-place and in-place bus bandwidth."""
    values = [row[s]["busbw_GBps"] for s in ("oop", "ip") if row[s]["busbw_GBps"] is not None]
    return max(values) if values else None


@dataclass(frozen=True)
class Shape:
    """What a nccl-tests table measured: the collective and its communicator size."""

    collective: str  # one of COLLECTIVES, or GATHER_OR_ALLTOALL
    ranks: int | None
    how: str


def shape_of(rows: list[dict], ranks: int | None, given: str | None = None) -> Shape | None:
    """Collective and rank count from busbw/algbw (nccl-tests' own factors) and the redop.

    all_reduce reports busbw = algbw * 2(n-1)/n; the others (n-1)/n.  all_reduce
    and reduce_scatter reduce (`sum`); all_gather and alltoall print `none` and
    cannot be told apart from the table, so both floors are taken (the lower).
    """
    sized = [r for r in rows if r.get("size") and any(
        (r[s]["algbw_GBps"] or 0) >= 1 and r[s]["busbw_GBps"] is not None
        for s in ("oop", "ip"))]
    if not sized:
        return Shape(given, ranks, "--test") if given else None
    row = max(sized, key=lambda r: r["size"])
    side = next(s for s in ("oop", "ip") if (row[s]["algbw_GBps"] or 0) >= 1
                and row[s]["busbw_GBps"] is not None)
    ratio = row[side]["busbw_GBps"] / row[side]["algbw_GBps"]
    if ratio == 0:  # busbw 0 with data moving: one rank (every factor is 0 at n = 1)
        return Shape(given or "all_reduce", 1, f"busbw 0 at {human_size(row['size'])}")
    counted: int | None
    if (row.get("redop") or "none") == "none":  # old all_gather tables print busbw = algbw
        collective = GATHER_OR_ALLTOALL
        counted = round(1 / (1 - ratio)) if ratio < 0.995 else None
    elif ratio >= 0.995:
        collective, counted = "all_reduce", round(2 / max(2 - ratio, 1e-9))
    else:
        collective, counted = "reduce_scatter", round(1 / (1 - ratio))
    if given and (given == collective or (collective == GATHER_OR_ALLTOALL
                                          and given in ("all_gather", "alltoall"))):
        collective = given
    how = f"busbw/algbw {ratio:.3f} at {human_size(row['size'])}, redop {row.get('redop')}"
    return Shape(collective, counted if counted and counted >= 2 else ranks, how)


def expectation_rows(profile: Profile, collective: str, nodes: int) -> list[dict]:
    return [r for r in table()["published"] if r["use"] == "expectation"
            and r["instance"] == profile.name and r["collective"] == collective
            and r["nodes"] == nodes]


def reference_rows(profile: Profile) -> list[dict]:
    return [r for r in table()["published"] if r["instance"] == profile.name]


def derived_floor(profile: Profile, collective: str, size: int, ranks: int,
                  nodes: int) -> float | None:
    """The derived busbw floor in GB/s at `size` bytes (bandwidth.yaml states the model).

    None where it does not apply: no EFA, one node (no network), fewer ranks than nodes.
    """
    if collective == GATHER_OR_ALLTOALL:
        values = [derived_floor(profile, c, size, ranks, nodes) for c in
                  ("all_gather", "alltoall")]
        return None if None in values else min(values)  # type: ignore[type-var]
    if not profile.efa_gbps or nodes < 2 or ranks < nodes:
        return None
    model = table()["derived"]
    lat = model["latency_us"]
    per_node = ranks / nodes
    share = profile.efa_gbps / 8 * min(1.0, per_node / profile.gpu_count)
    if collective == "all_reduce":
        factor, steps, inter, bnet = 2 * (ranks - 1) / ranks, 2 * (ranks - 1), \
            2 * (nodes - 1), share
    elif collective == "alltoall":
        factor, steps, inter = (ranks - 1) / ranks, ranks, nodes
        bnet = share * (ranks - 1) / (per_node * (ranks - per_node))
    else:
        factor, steps, inter, bnet = (ranks - 1) / ranks, ranks - 1, nodes - 1, share
    latency_s = model["latency_factor"] * (lat["base"] + (steps - inter) * lat["intra"]
                                           + inter * lat["net"]) * 1e-6
    seconds = factor * size / (model["efficiency"] * bnet * 1e9) + latency_s
    return factor * size / seconds / 1e9


@dataclass
class Judged:
    """One nccl-tests table with what it ran on, ready to compare."""

    test: object  # logparse.model.TestRun (file, rows)
    shape: Shape
    nodes: int

    def rows(self, min_size: int = 0) -> list[dict]:
        return [r for r in self.test.rows  # type: ignore[attr-defined]
                if (r["size"] or 0) >= min_size and busbw_of(r) is not None]

    def label(self) -> str:
        return f"{self.shape.collective} on {self.shape.ranks} ranks, {self.nodes} nodes"

    def evidence(self, row: dict, expected: float | None = None) -> Evidence:
        text = f"{self.shape.collective} size {row['size']} B busbw {busbw_of(row)} GB/s"
        if expected is not None:
            text += f" (expected >= {expected:.1f})"
        return Evidence(self.test.file, row["line"], None, text)  # type: ignore[attr-defined]


def judge_tables(tests: list, ranks: int | None, nodes: int | None,
                 given: str | None) -> tuple[list[Judged], str | None]:
    """The tables that can be judged, or why none can (None: there is nothing to judge)."""
    tables = [t for t in tests if t.rows]
    if not tables:
        return [], None
    judged = []
    for test in tables:
        shape = shape_of(test.rows, ranks, given)
        if shape is None or not shape.ranks:
            return [], "the rank count is unknown (no comm line, no busbw/algbw to count from)"
        if shape.ranks == 1:
            return [], ("single-rank run: bus bandwidth is 0 by definition and says "
                        "nothing about the network")
        if nodes is None:
            return [], ("the node count is unknown: the log names no nodes; pass "
                        "--expect-nodes")
        judged.append(Judged(test, shape, nodes))
    return judged, ""


def published_check(judged: list[Judged], profile: Profile) -> Check:
    """Against the lowest published expectation for this instance, collective and node count."""
    results, evidence, curves = [], [], []
    fraction = table()["fraction"]
    for item in judged:
        rows = expectation_rows(profile, item.shape.collective, item.nodes)
        if not rows:
            continue
        figure = min(rows, key=lambda r: r["busbw_GBps"])
        bar = figure["busbw_GBps"] * fraction
        big = item.rows(figure["size_bytes"])
        curves.append({"kind": "published", "collective": item.shape.collective,
                       "nodes": item.nodes, "ranks": item.shape.ranks,
                       "points": [[figure["size_bytes"], bar]], "figure": figure["busbw_GBps"],
                       "source": figure["source"], "url": figure.get("url")})
        if not big:
            results.append(("unknown", f"{item.label()}: no row at >= "
                            f"{human_size(figure['size_bytes'])} to compare with the "
                            f"published {figure['busbw_GBps']:g} GB/s"))
            continue
        best = max(big, key=busbw_of)
        got = busbw_of(best)
        evidence.append(item.evidence(best, bar))
        results.append(("pass" if got >= bar else "fail",
                        f"{item.label()}: {got:.1f} GB/s at {human_size(best['size'])} vs "
                        f"{bar:.1f} ({fraction:.0%} of the published {figure['busbw_GBps']:g} "
                        f"GB/s, {figure['source']})"))
    if not results:
        what = ", ".join(sorted({f"{j.shape.collective} at {j.nodes} nodes" for j in judged}))
        return Check("bandwidth", "skip", True, f"no published figure for {profile.name} "
                     f"{what}: judged by bandwidth_derived")
    return Check("bandwidth", worst_status(s for s, _ in results), True,
                 "; ".join(m for _, m in results), evidence[:4], detail={"curves": curves})


def derived_check(judged: list[Judged], profile: Profile) -> Check:
    """Every judged size against the derived floor (a model: labelled `derived`)."""
    model = table()["derived"]
    results, evidence, curves = [], [], []
    for item in judged:
        ranks, coll = item.shape.ranks, item.shape.collective
        if derived_floor(profile, coll, 1 << 30, ranks, item.nodes) is None:
            why = "no EFA" if not profile.efa_gbps else "one node: no network traffic"
            results.append(("skip", f"{item.label()}: {why}, no derived floor"))
            continue
        points = [[r["size"], derived_floor(profile, coll, r["size"], ranks, item.nodes)]
                  for r in item.rows()]
        curves.append({"kind": "derived", "collective": coll, "nodes": item.nodes,
                       "ranks": ranks, "points": points, "min_size": model["min_size_bytes"]})
        rows = item.rows(model["min_size_bytes"])
        if not rows:
            results.append(("unknown", f"{item.label()}: no row at >= "
                            f"{human_size(model['min_size_bytes'])} (sweep further)"))
            continue
        short = []
        for row in rows:
            floor = derived_floor(profile, coll, row["size"], ranks, item.nodes)
            if busbw_of(row) < floor:
                short.append((row, floor))
        if short:
            evidence += [item.evidence(r, f) for r, f in short]
            names = ", ".join(f"{human_size(r['size'])} {busbw_of(r):g} < {f:.1f}"
                              for r, f in short)
            results.append(("fail", f"{item.label()}: below the derived floor at {names} GB/s"))
        else:
            best = max(rows, key=lambda r: r["size"])
            floor = derived_floor(profile, coll, best["size"], ranks, item.nodes)
            evidence.append(item.evidence(best, floor))
            results.append(("pass", f"{item.label()}: every size >= "
                            f"{human_size(model['min_size_bytes'])} above the derived floor "
                            f"({busbw_of(best):g} >= {floor:.1f} GB/s at "
                            f"{human_size(best['size'])})"))
    share = f"{profile.efa_gbps} Gbps EFA x {model['efficiency']:g}"
    return Check("bandwidth_derived", worst_status(s for s, _ in results), True,
                 "derived floor (a model, not a measurement; " + share + "): "
                 + "; ".join(m for _, m in results), evidence[:4], detail={"curves": curves})


def worst_status(statuses) -> str:
    """One status for several judged curves: fail over unknown over pass; none: skip."""
    statuses = set(statuses)
    for status in ("fail", "unknown", "pass"):
        if status in statuses:
            return status
    return "skip"
