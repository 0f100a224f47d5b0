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


@cache
def table() -> dict:
    """bandwidth.yaml, validated on load."""
    data = load_table("bandwidth")
    names = set(data["collectives"])
    for i, row in enumerate(data["published"]):
        missing = {"instance", "collective", "size_bytes", "nodes", "busbw_GBps", "use",
                   "source"} - set(row)
        if missing or row["collective"] not in names or \
                row["use"] not in ("expectation", "reference"):
            raise ValueError(f"bandwidth.yaml: published[{i}] is malformed "
                             f"({', '.join(sorted(missing)) or 'collective/use'})")
    return data


# The collectives efa-verify runs and judges (bandwidth.yaml `collectives`, named as
# run.yaml's benchmarks are).
COLLECTIVES = tuple(table()["collectives"])
# A table that cannot tell collectives apart names each; the lowest floor applies.
EITHER = " or "
# nccl-tests prints bandwidths with two decimals (src/util.cu, %6.2f): half a unit.
HALF_UNIT = 0.005


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

    collective: str  # one of COLLECTIVES, or several joined by EITHER
    ranks: int | None
    how: str


def factor(collective: str, ranks: int) -> float:
    """busbw / algbw of a collective on `ranks` ranks (nccl-tests' <coll>GetBw)."""
    a, b = table()["collectives"][collective]["busbw_factor"]
    return a * (ranks - b) / ranks


def _ratio_bounds(rows: list[dict]) -> tuple[float, float, dict | None]:
    """The busbw/algbw ratio the table allows, from its most precise row (largest
    algbw), widened by the printed rounding; (0, inf, None) when no row moved data."""
    best: tuple[float, dict, str] | None = None
    for row in rows:
        for side in ("oop", "ip"):
            alg, bus = row[side]["algbw_GBps"], row[side]["busbw_GBps"]
            if alg is not None and bus is not None and alg > 0 and \
                    (best is None or alg > best[0]):
                best = (alg, row, side)
    if best is None:
        return 0.0, float("inf"), None
    alg, row, side = best
    bus = row[side]["busbw_GBps"]
    low = max(bus - HALF_UNIT, 0.0) / (alg + HALF_UNIT)
    high = (bus + HALF_UNIT) / (alg - HALF_UNIT) if alg > HALF_UNIT else float("inf")
    return low, high, row


def _candidates(row: dict | None, rows: list[dict], given: str | None) -> list[str]:
    """Collectives whose table columns fit: the redop (an operation or `none`) and the
    root (a rank, or -1; old tables print no root column)."""
    sample = row or (rows[-1] if rows else {})
    redop, root = sample.get("redop"), sample.get("root")
    out = []
    for name, spec in table()["collectives"].items():
        if redop is not None and spec["reduces"] != (redop != "none"):
            continue
        if root is not None and spec["rooted"] != (root >= 0):
            continue
        out.append(name)
    return [given] if given in out else out


def _counted(candidates: list[str], low: float, high: float) -> tuple[list[str], int | None]:
    """The rank count a precise ratio implies: n = a*b / (a - ratio), for the collectives
    whose factor at that n is inside the bounds.  None near a factor's limit a (it then
    fits any large n) or where collectives disagree."""
    ratio = (low + high) / 2
    counts: dict[int, list[str]] = {}
    for name in candidates:
        a, b = table()["collectives"][name]["busbw_factor"]
        if b == 0 or ratio >= a * (1 - HALF_UNIT) or high - low > 0.01 * a:
            continue
        n = round(a * b / (a - ratio))
        if n >= 2 and low <= factor(name, n) <= high:
            counts.setdefault(n, []).append(name)
    if len(counts) != 1:
        return candidates, None
    (n, names), = counts.items()
    return names, n


def shape_of(rows: list[dict], ranks: int | None, given: str | None = None) -> Shape | None:
    """Collective and rank count from everything the table says.

    The redop and root columns narrow the collective (bandwidth.yaml `collectives`);
    the busbw/algbw ratio, read within its printed rounding, picks among them at the
    rank count the log states (comm lines, nccl-tests' device list), or counts the
    ranks itself when the log states none.  all_gather and alltoall cannot be told
    apart from a table; neither can any two when no row moved enough data to read
    the ratio: the shape then names each, and the lowest floor applies.
    """
    low, high, row = _ratio_bounds(rows)
    candidates = _candidates(row, rows, given)
    if not candidates:
        return None
    where = f" at {human_size(row['size'])}" if row else ""
    if row is not None and row.get("redop") is None:
        # nccl-tests before 2.0: no redop column, and all_gather's busbw printed as its
        # algbw, so the ratio says nothing; such tables are all_gather-like.
        spec = table()["collectives"]
        legacy = [c for c in candidates if not spec[c]["reduces"] and not spec[c]["rooted"]]
        return Shape(EITHER.join(legacy), ranks, "no redop column (nccl-tests < 2.0)") \
            if legacy and ranks and ranks >= 2 else None
    if row is not None and low == 0 and busbw_of(row) == 0:  # data moved, busbw 0: factor 0
        return Shape(given or candidates[0], 1, f"busbw 0{where}")
    if ranks and ranks >= 2:
        fits = [c for c in candidates if low <= factor(c, ranks) <= high]
        if fits:
            how = f"{ranks} ranks from the log; busbw/algbw in [{low:.3f}, " \
                  f"{min(high, 99):.3f}]{where}, redop {row and row.get('redop')}"
            return Shape(EITHER.join(fits), ranks, how)
    names, counted = _counted(candidates, low, high)
    how = f"busbw/algbw {(low + high) / 2:.3f}{where}, redop {row and row.get('redop')}"
    if counted:
        return Shape(EITHER.join(names), counted, how)
    if ranks and given:
        return Shape(given, ranks, "--test")
    return None


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
    Several collectives (EITHER): the lowest of their floors.
    """
    if EITHER in collective:
        values = [derived_floor(profile, c, size, ranks, nodes)
                  for c in collective.split(EITHER)]
        return None if None in values else min(values)  # type: ignore[type-var]
    if not profile.efa_gbps or nodes < 2 or ranks < nodes:
        return None
    model = table()["derived"]
    spec = table()["collectives"][collective]
    lat = model["latency_us"]
    per_node = ranks / nodes
    share = profile.efa_gbps / 8 * min(1.0, per_node / profile.gpu_count)
    k = factor(collective, ranks)
    a, b = spec["ring_steps"]
    steps, inter = a * (ranks - b), a * (nodes - b)
    bnet = share * (ranks - 1) / (per_node * (ranks - per_node)) \
        if spec["traffic"] == "alltoall" else share
    latency_s = model["latency_factor"] * (lat["base"] + (steps - inter) * lat["intra"]
                                           + inter * lat["net"]) * 1e-6
    seconds = k * size / (model["efficiency"] * bnet * 1e9) + latency_s
    return k * size / seconds / 1e9


def ceiling(profile: Profile | None) -> float:
    """The most busbw any table on this instance can show, GB/s (bandwidth.yaml `ceiling`);
    without an instance, the most of any profile."""
    from verify.profiles import all_profiles

    spec = table()["ceiling"]
    profiles = [profile] if profile else list(all_profiles().values())
    line = max(max((p.efa_gbps or 0) / 8, p.gpu_link_gbps) for p in profiles)
    return spec["factor"] * spec["margin"] * line


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
    """The tables that can be judged, or why none can (None: there is nothing to judge).

    One table that cannot be judged does not hide the others: a slow table is judged
    whatever an earlier one lacked."""
    tables = [t for t in tests if t.rows]
    if not tables:
        return [], None
    judged, why = [], ""
    for test in tables:
        shape = shape_of(test.rows, ranks, given)
        if shape is None or not shape.ranks:
            why = why or ("the rank count is unknown (no comm line, no nccl-tests device "
                          "list, no busbw/algbw to count from)")
        elif shape.ranks == 1:
            why = why or ("single-rank run: bus bandwidth is 0 by definition and says "
                          "nothing about the network")
        elif nodes is None:
            why = why or ("the node count is unknown: the log names no nodes; pass "
                          "--expect-nodes")
        else:
            judged.append(Judged(test, shape, nodes))
    return judged, ("" if judged else why)


def impossible_rows(test, limit: float) -> list[tuple[dict | None, str]]:
    """A table's rows (None: its average line) whose bandwidth is not a finite number
    between 0 and `limit` GB/s: a corrupt or edited log, never a figure to judge."""
    out: list[tuple[dict | None, str]] = []
    for row in test.rows:
        bad = [f"{side} {col.split('_')[0]} {row[side][col]!r}"
               for side in ("oop", "ip") for col in ("algbw_GBps", "busbw_GBps")
               if row[side][col] is not None
               and not 0 <= row[side][col] <= limit]  # False for nan too
        if bad:
            out.append((row, f"size {row['size']} B: {', '.join(bad)} GB/s"))
    avg = test.avg_busbw
    if avg is not None and not 0 <= avg <= limit:
        out.append((None, f"Avg bus bandwidth {avg!r} GB/s"))
    return out


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
            why = "EFA bandwidth unknown (instances.yaml)" if profile.efa_gbps is None \
                else "no EFA" if not profile.efa_gbps else "one node: no network traffic"
            results.append(("skip", f"{item.label()}: {why}, no derived floor"))
            continue
        points = [[r["size"], derived_floor(profile, coll, r["size"], ranks, item.nodes)]
                  for r in item.rows()]
        curves.append({"kind": "derived", "collective": coll, "nodes": item.nodes,
                       "ranks": ranks, "points": points, "min_size": model["min_size_bytes"]})
        rows = item.rows(model["min_size_bytes"])
        if not rows:
            status, message, ev = _far_below(item, profile)
            results.append((status, message))
            evidence += ev
            continue
        short = []
        for row in rows:
            floor = derived_floor(profile, coll, row["size"], ranks, item.nodes)
            if busbw_of(row) < floor:
                short.append((row, floor))
        if short:
            evidence += [item.evidence(r, f) for r, f in short]
            far = table()["far_below"]
            if len(short) == len(rows) and all(busbw_of(r) < far["fraction"] * f
                                               for r, f in short):
                row, floor = max(short, key=lambda pair: pair[0]["size"])
                results.append(("fail", f"{item.label()}: {busbw_of(row):g} GB/s at "
                                f"{human_size(row['size'])} against a derived floor of "
                                f"{floor:.1f} ({far['hint']})"))
            else:
                names = ", ".join(f"{human_size(r['size'])} {busbw_of(r):g} < {f:.1f}"
                                  for r, f in short)
                results.append(("fail", f"{item.label()}: below the derived floor at "
                                f"{names} GB/s"))
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


def _far_below(item: Judged, profile: Profile) -> tuple[str, str, list[Evidence]]:
    """A table that stops below the judged sizes: fail where every row from
    far_below.min_size_bytes up is under far_below.fraction of the floor at its size
    (socket speed is that far below), else unknown."""
    model, far = table()["derived"], table()["far_below"]
    rows = item.rows(far["min_size_bytes"])
    if rows and all(busbw_of(r) < far["fraction"] * (derived_floor(
            profile, item.shape.collective, r["size"], item.shape.ranks, item.nodes) or 0.0)
            for r in rows):
        best = max(rows, key=busbw_of)
        return "fail", (f"{item.label()}: no row at >= {human_size(model['min_size_bytes'])}, "
                        f"and every row from {human_size(far['min_size_bytes'])} up is under "
                        f"{far['fraction']:.0%} of the derived floor (best "
                        f"{busbw_of(best):g} GB/s at {human_size(best['size'])}; "
                        f"{far['hint'].split(': ', 1)[1]})"), [item.evidence(best)]
    return "unknown", (f"{item.label()}: no row at >= {human_size(model['min_size_bytes'])} "
                       "(sweep further)"), []


def worst_status(statuses) -> str:
    """One status for several judged curves: fail over unknown over pass; none: skip."""
    statuses = set(statuses)
    for status in ("fail", "unknown", "pass"):
        if status in statuses:
            return status
    return "skip"
