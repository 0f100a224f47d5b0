"""Draw bus bandwidth against message size from an efa-verify result, on the host.

Kept out of the verifier so the image stays light: matplotlib is the host's
`efakit[plot]` extra.
"""

from __future__ import annotations

import io
from pathlib import Path

from verify.profiles import UnknownInstance, resolve
from verify.report import write_atomic


class PlotError(RuntimeError):
    """The plot cannot be drawn (no matplotlib, no results)."""


def plot_busbw(result: dict, out: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
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
    instance = result.get("instance") or {}
    expected = None
    if instance.get("name"):
        try:
            expected = resolve(instance["name"]).expected_busbw(result.get("nodes"))
        except UnknownInstance:
            expected = None
    if expected:
        ax.axhline(expected, color="grey", linestyle="--",
                   label=f"{instance['name']} published ({expected:g} GB/s)")
        ax.axhline(expected * 0.8, color="red", linestyle=":", label="bar (80%)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("bus bandwidth (GB/s)")
    ax.set_title(f"efa-verify: {result.get('verdict', '?').upper()} "
                 f"({result.get('nodes') or '?'} nodes, {result.get('ranks') or '?'} ranks)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    write_atomic(out, png.getvalue())  # a WriteError is one line, like every report's
    return Path(out)
