"""``hugetlbsim regions``: one file's reservation map after each step, as a strip of pages.

A strip has one cell per page index, separated by a column that shows ``|`` where a
`file_region` entry starts or ends, so the entry shapes of the coalescing policies differ at a
glance (``|▒ ▒ ▒|`` is one entry of three pages, ``|▒|▒|▒|`` three entries of one).  A cell is
``█`` (page in the page cache), ``▒`` (reserved, no page yet), ``·`` (not reserved, inside the
file size) or blank; it is coloured by the cgroup charged for its entry's reservation (none
for entries added by a fault).  The data are the trace of the model backend: the
regions of the model's snapshot and the cached indexes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from hugetlbsim.format.loader import short_op
from hugetlbsim.trace import Trace

__all__ = [
    "COLOURS", "FORMATS", "MapRow", "Region", "cgroup_colours", "map_rows", "ruler",
    "save_image", "strip", "table", "width"
]

CACHED, RESERVED, UNRESERVED, BEYOND, BOUNDARY = "█", "▒", "·", " ", "|"
COLOURS: Final = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan",
                  "bright_magenta")
"""Rich colours given to cgroups in order of appearance (entries without one: default)."""

FORMATS: Final = (".png", ".svg")
Region = tuple[int, int, str | None]
"""``[from, to)`` and the cgroup charged for the entry (None: none)."""


@dataclass(frozen=True)
class MapRow:
    """The file's map after one step (``regions`` None: the file does not exist then)."""

    index: int
    op: str
    result: str
    regions: tuple[Region, ...] | None
    cached: frozenset[int]
    size: int


def map_rows(trace: Trace, file: str) -> list[MapRow]:
    """The file's map after each step of a model trace."""
    rows = []
    for step in trace.steps:
        state = step.state["files"].get(file)
        rows.append(MapRow(
            step.index, short_op(step.op, step.args), step.result,
            None if state is None else tuple((f, t, cg) for f, t, cg in state["regions"]),
            frozenset(() if state is None else (
                page for f, t in state["cached"] for page in range(f, t))),
            0 if state is None else state["size"]))
    return rows


def width(rows: Sequence[MapRow]) -> int:
    """Pages drawn: enough for every file size and region end of the rows (at least one)."""
    return max([1, *(max([r.size, *(t for _, t, _ in r.regions)])
                     for r in rows if r.regions is not None)])


def cgroup_colours(rows: Sequence[MapRow]) -> dict[str, str]:
    """A colour per cgroup charged by some entry, in order of appearance."""
    names = dict.fromkeys(cg for r in rows for _, _, cg in r.regions or () if cg is not None)
    return {name: COLOURS[n % len(COLOURS)] for n, name in enumerate(names)}


def strip(row: MapRow, pages: int, colours: dict[str, str]) -> Text:
    """The row's strip: ``2 * pages + 1`` characters, boundary columns around each cell."""
    text = Text()
    if row.regions is None:
        return text
    owner: dict[int, str | None] = {}
    edges: set[int] = set()
    for f, t, cg in row.regions:
        owner.update(dict.fromkeys(range(f, t), cg))
        edges.update((f, t))
    for page in range(pages):
        text.append(BOUNDARY if page in edges else " ", style="bold")
        if page in row.cached:
            cell = CACHED
        elif page in owner:
            cell = RESERVED
        else:
            cell = UNRESERVED if page < row.size else BEYOND
        text.append(cell, style=colours.get(owner.get(page) or "", ""))
    text.append(BOUNDARY if pages in edges else " ", style="bold")
    return text


def ruler(pages: int) -> Text:
    """Page indexes above the cells: tens (from 10 on) over units."""
    units = "".join(f" {p % 10}" for p in range(pages))
    if pages <= 10:
        return Text(units)
    tens = "".join(f" {p // 10}" if p % 10 == 0 and p else "  " for p in range(pages))
    return Text(f"{tens}\n{units}")


def table(trace: Trace, file: str, title: str) -> RenderableType:
    """The strips of every step with a legend."""
    rows = map_rows(trace, file)
    pages, colours = width(rows), cgroup_colours(rows)
    out = Table(title=title, title_justify="left")
    out.add_column("#", justify="right")
    out.add_column("op")
    out.add_column("result")
    out.add_column(ruler(pages), no_wrap=True)
    out.add_column("entries", justify="right")
    for row in rows:
        out.add_row(str(row.index), row.op, Text(row.result, style="" if row.result == "ok"
                                                 else "red"),
                    strip(row, pages, colours),
                    "-" if row.regions is None else str(len(row.regions)))
    legend = Text(f"{CACHED} page in the page cache  {RESERVED} reserved, no page yet  "
                  f"{UNRESERVED} not reserved  {BOUNDARY} entry boundary  colour: cgroup "
                  "charged for the entry: ")
    for name, colour in colours.items():
        legend.append(f"{name} ", style=colour)
    legend.append("(none)")
    return Group(out, legend)


def save_image(trace: Trace, file: str, title: str, path: str | Path) -> None:
    """Draw the strips with matplotlib (PNG or SVG by the suffix): one bar per entry, its
    cached pages darker."""
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = map_rows(trace, file)
    pages = width(rows)
    names = list(cgroup_colours(rows))
    colour = {name: f"C{n}" for n, name in enumerate(names)}
    fig = Figure(figsize=(max(6.0, 0.35 * pages + 4), 0.32 * len(rows) + 1.6),
                 layout="constrained")
    ax = fig.subplots()
    for y, row in enumerate(rows):
        for f, t, cg in row.regions or ():
            base = colour.get(cg or "", "tab:gray")
            ax.broken_barh([(f, t - f)], (y - 0.4, 0.8), facecolors=to_rgba(base, 0.3),
                           edgecolors="black", linewidth=1.2)
            cached = [(p, 1) for p in sorted(row.cached) if f <= p < t]
            ax.broken_barh(cached, (y - 0.25, 0.5), facecolors=to_rgba(base, 0.9))
        if row.regions is not None:
            ax.plot([row.size, row.size], [y - 0.45, y + 0.45], color="black", linestyle=":")
    ax.set_yticks(range(len(rows)), [f"{r.index} {r.op}" + ("" if r.result == "ok" else
                                                            f" → {r.result}") for r in rows],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, pages)
    ax.set_xticks(range(pages + 1))
    ax.set_xlabel("page index (dotted: file size)")
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    handles = [Patch(facecolor=to_rgba(colour.get(n, "tab:gray"), 0.3), edgecolor="black",
                     label=f"reserved ({n})") for n in [*names, "no cgroup"]]
    handles.append(Patch(facecolor="dimgray", label="page in the page cache"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.savefig(path, format=Path(path).suffix[1:])
