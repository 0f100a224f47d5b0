"""Draw bus bandwidth against message size from an efa-verify result, on the host.

Kept out of the verifier so the image stays light: matplotlib is the host's
`efakit[plot]` extra.  The plot shows what the verdict compared: the measured
curve, and each expected curve the bandwidth checks recorded (published,
derived or baseline), titled with instance, nodes, ranks, collective and verdict.
"""

from __future__ import annotations

import io
from pathlib import Path

from verify.bandwidth import human_size
from verify.boundary.files import write_atomic
from verify.boundary.values import printable

EXPECTED_STYLE = {"published": ("grey", "--"), "derived": ("tab:red", ":"),
                  "baseline": ("tab:green", "-.")}


class PlotError(RuntimeError):
    """The plot cannot be drawn (no matplotlib, no results)."""


def expected_curves(result: dict) -> list[dict]:
    """The expectation curves the result's bandwidth checks recorded."""
    return [curve for check in result.get("checks", [])
            if check.get("name", "").startswith("bandwidth")
            for curve in (check.get("detail") or {}).get("curves", [])]


def _text(value: object) -> str:
    """Text from a result as matplotlib draws it: printable (no control characters or
    lone surrogates, which its font code cannot encode) and with `$` escaped, since a
    pair of them starts mathtext and an odd one is a parse error."""
    return printable(str(value)).replace("$", r"\$")


def title(result: dict, curves: list[dict]) -> str:
    """`p4d.24xlarge, 2 nodes, 16 ranks, all_reduce: PASS` (unknowns said as such)."""
    instance = (result.get("instance") or {}).get("name") or "instance unknown"
    first = curves[0] if curves else {}
    nodes = result.get("nodes") or first.get("nodes")
    ranks = first.get("ranks") or result.get("ranks")
    parts = [instance, f"{nodes} nodes" if nodes else "nodes unknown",
             f"{ranks} ranks" if ranks else "ranks unknown",
             first.get("collective") or "collective unknown"]
    return _text(f"{', '.join(map(str, parts))}: {str(result.get('verdict', 'unknown')).upper()}")


def plot_busbw(result: dict, out: Path, inputs: tuple[Path, ...] = ()) -> Path:
    """Draw the PNG into `out` (never over one of `inputs`, the files it was drawn from)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator
    except ImportError:
        raise PlotError("matplotlib is not installed: pip install 'efakit[plot]'") from None
    tests = [t for t in result.get("tests", []) if t.get("rows")]
    if not tests:
        raise PlotError("the result holds no nccl-tests rows to plot")
    test = next((t for t in reversed(tests) if t.get("complete")), tests[-1])
    rows = [r for r in test["rows"] if r.get("size")]
    sizes = [r["size"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for side, label in (("oop", "out-of-place"), ("ip", "in-place")):
        values = [r[side]["busbw_GBps"] for r in rows]
        if any(v is not None for v in values):
            ax.plot(sizes, values, marker="o", markersize=3, label=f"busbw {label}")
    curves = expected_curves(result)
    for curve in curves:
        colour, style = EXPECTED_STYLE[curve["kind"]]
        points = sorted(p for p in curve["points"] if p[1] is not None)
        label = {"published": f"published {curve.get('figure', 0):g} GB/s x 80%",
                 "derived": "derived floor (model, not a measurement)",
                 "baseline": f"baseline {curve.get('name', '')} less tolerance"}[curve["kind"]]
        label = _text(label)
        if len(points) == 1:  # a published figure is one size: draw it from there on
            ax.hlines(points[0][1], points[0][0], max(sizes), colors=colour,
                      linestyles=style, label=label)
        elif points:
            ax.plot([p[0] for p in points], [p[1] for p in points], color=colour,
                    linestyle=style, label=label)
        if curve.get("min_size"):
            ax.axvline(curve["min_size"], color=colour, alpha=0.3, linewidth=0.8,
                       label=f"judged from {human_size(curve['min_size'])}")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(LogLocator(base=2, numticks=12))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: human_size(int(x)) if x >= 1
                                               else ""))
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.set_xlabel("message size")
    ax.set_ylabel("bus bandwidth (GB/s)")
    ax.set_title(title(result, curves), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    write_atomic(out, png.getvalue(), inputs)  # a WriteError is one line, like every report's
    return Path(out)
