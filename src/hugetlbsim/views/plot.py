"""``hugetlbsim plot``: the counters of a trace over its steps, as a picture.

One panel shows the pool (Total, Free, Rsvd, Surp), the other each cgroup's fault usage and
reservation usage (and, where the trace has them, cgroup v2's ``events`` and the memory
controller's hugetlb charge), as step plots: the value drawn at a step's tick is the state
after that step.  Ticks are labelled with the steps' operations; failed steps (result not
``ok``) are shaded red.  Given two traces of one scenario (model and kernel), the first is
drawn as thin lines over the second's wide translucent bands, and the steps where they differ
(`compare`) are shaded orange.  Everything drawn comes from the traces; an underflowed counter
(2^64 - n) is drawn as -n.

matplotlib is imported only here, and only through `Figure` (no pyplot, no global state).
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from hugetlbsim.format.loader import short_op
from hugetlbsim.format.scenario import UNSIGNED_MAX
from hugetlbsim.trace import StepRecord, Trace, compare, show_value

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "CGROUP_LINES", "FORMATS", "POOL_LINES", "figure", "html_page", "plotted", "save",
    "svg_text", "tick_label"
]

POOL_LINES: Final = (("total", "Total"), ("free", "Free"), ("rsvd", "Rsvd"), ("surp", "Surp"))
CGROUP_LINES: Final = (("usage", "usage", "-", 1.0, 0), ("rsvd", "rsvd", "--", 0.6, 1),
                       ("memory", "memory", "-.", 0.5, 0), ("events", "events", ":", 0.5, 1))
"""Cgroup counter, label suffix, line style, width and shade (0 dark, 1 light, of the cgroup's
tab20 pair): a thin light rsvd line stays visible on a thick dark usage line.  ``memory`` and
``events`` (cgroup v2) are drawn only for the cgroups whose states have them."""
FORMATS: Final = (".png", ".svg", ".html")
FAILED_COLOUR, DIVERGED_COLOUR = "tab:red", "tab:orange"

_METADATA: Final[dict[str, dict[str, Any]]] = {".png": {"Software": None},
                                              ".svg": {"Date": None, "Creator": None}}
"""No dates or versions in the files, so regenerating an unchanged plot changes nothing."""


def plotted(value: Any) -> float:
    """A trace counter as drawn: unsigned underflows as negative numbers, absent as a gap."""
    if value is None:
        return float("nan")
    return float(value - UNSIGNED_MAX - 1 if value > UNSIGNED_MAX >> 1 else value)


def tick_label(step: StepRecord) -> str:
    """``4 touch proc=p1 map=m page=0 → SIGBUS``: the step, and its result if it failed."""
    label = f"{step.index} {short_op(step.op, step.args)}"
    return label if step.result == "ok" else f"{label} → {step.result}"


def figure(traces: Sequence[Trace]) -> Figure:
    """The two panels for one trace, or for two traces of one scenario drawn together."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    if not 1 <= len(traces) <= 2:
        raise ValueError(f"plot one trace or two (model and kernel), not {len(traces)}")
    steps = traces[0].steps
    xs = list(range(len(steps)))
    fig = Figure(figsize=(max(8.0, 0.5 * len(steps) + 3), 9), layout="constrained")
    pool, cgroups = fig.subplots(2, 1, sharex=True)
    names = list(dict.fromkeys(n for t in traces for s in t.steps for n in s.state["cgroups"]))
    pairs = colormaps["tab20"]
    for n, trace in enumerate(reversed(traces)):
        band = len(traces) == 2 and n == 0
        suffix = f" ({trace.backend})" if len(traces) == 2 else ""
        for number, (key, label) in enumerate(POOL_LINES):
            pool.step(xs, [plotted(s.state[key]) for s in trace.steps], where="mid",
                      color=f"C{number}", label=label + suffix, **_style(band, number))
        for number, name in enumerate(names):
            for key, label, dash, width, shade in CGROUP_LINES:
                values = [s.state["cgroups"].get(name, {}).get(key) for s in trace.steps]
                if key not in ("usage", "rsvd") and all(v is None for v in values):
                    continue
                ys = [plotted(v) for v in values]
                cgroups.step(xs, ys, where="mid", color=pairs((2 * number + shade) % 20),
                             linestyle=dash,
                             label=f"{name} {label}{suffix}", **_style(band, number, width))
    failed = {s.index for t in traces for s in t.steps if s.result != "ok"}
    diverged = {d.index for d in compare(*traces)} if len(traces) == 2 else set()
    for ax in (pool, cgroups):
        for index in failed:
            ax.axvspan(index - 0.5, index + 0.5, color=FAILED_COLOUR, alpha=0.12, linewidth=0)
        for index in diverged:
            ax.axvspan(index - 0.5, index + 0.5, color=DIVERGED_COLOUR, alpha=0.3, hatch="//",
                       linewidth=0)
    title = " and ".join(f"{t.backend} {t.kernel}" for t in traces)
    pool.set_title(f"{traces[0].scenario} on {title}" + (
        f": {len(diverged)} divergent steps (orange)" if len(traces) == 2 else ""))
    pool.set_ylabel("huge pages (pool)")
    cgroups.set_ylabel("huge pages (hugetlb cgroup)")
    for ax in (pool, cgroups):
        _finish(ax)
    cgroups.set_xticks(xs, [tick_label(s) for s in steps], rotation=60, ha="right",
                       fontsize=8)
    for label, step in zip(cgroups.get_xticklabels(), steps, strict=True):
        if step.index in failed:
            label.set_color(FAILED_COLOUR)
    return fig


def _style(band: bool, number: int, width: float = 1.0) -> dict[str, Any]:
    """A wide translucent band, or a line: earlier lines wider, so equal values stay visible."""
    if band:
        return {"linewidth": 9, "alpha": 0.25}
    return {"linewidth": width * max(1.5, 3.5 - 0.7 * number), "alpha": 0.9}


def _finish(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.01)
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)


def save(traces: Sequence[Trace], path: str | Path) -> None:
    """Write the plot as PNG or SVG, or as a self-contained HTML page (by the suffix)."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise ValueError(f"cannot write {path.name}: use one of {', '.join(FORMATS)}")
    fig = figure(traces)
    if path.suffix == ".html":
        path.write_text(html_page(traces, svg_text(fig)), encoding="utf-8")
    else:
        fig.savefig(path, format=path.suffix[1:], metadata=_METADATA[path.suffix])


def svg_text(fig: Figure) -> str:
    """The figure as an ``<svg>`` element, without XML prolog or DOCTYPE (for inlining)."""
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "hugetlbsim"}):
        fig.savefig(out, format="svg", metadata=_METADATA[".svg"])
    text = out.getvalue()
    return text[text.index("<svg"):]


def html_page(traces: Sequence[Trace], svg: str) -> str:
    """A page with the plot inline and a table of the steps (result, counters, explanation):
    no scripts, no external references."""
    head = ("<tr><th>#</th><th>op</th>"
            + "".join(f"<th>{html.escape(t.backend)}</th>" for t in traces)
            + "".join(f"<th>{label}</th>" for _, label in POOL_LINES)
            + "<th>explanation</th></tr>")
    rows = []
    for records in zip(*(t.steps for t in traces), strict=True):
        first = records[0]
        cls = ' class="failed"' if any(r.result != "ok" for r in records) else ""
        cells = [str(first.index), short_op(first.op, first.args),
                 *(r.result for r in records),
                 *(" / ".join(dict.fromkeys(show_value(r.state[k]) for r in records))
                   for k, _ in POOL_LINES),
                 "; ".join(r.explain for r in records if r.explain)]
        rows.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
                    + "</tr>")
    title = html.escape(f"{traces[0].scenario}: " + " and ".join(
        f"{t.backend} {t.kernel}" for t in traces))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em 2em; }}
svg {{ max-width: 100%; height: auto; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; }}
tr.failed td {{ background: #fde8e8; }}
</style></head>
<body><h1>{title}</h1>
{svg}
<table>
{head}
{chr(10).join(rows)}
</table></body></html>
"""
