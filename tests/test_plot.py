"""Plots of a trace: the lines carry the trace's columns, failed and divergent steps are marked,
PNG/SVG/HTML files are written, and the ``plot`` command (with ``--compare``)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from hugetlbsim import cli
from hugetlbsim.backends.base import Backend
from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.loader import load_text
from hugetlbsim.runner import run
from hugetlbsim.trace import Trace
from hugetlbsim.views.plot import figure, html_page, plotted, save, svg_text, tick_label

SCENARIO = """\
format: 1
name: plotted
pool: {pages: 4}
steps:
  - cgroup: {name: a, limit: 1}
  - spawn: {proc: p, cgroup: a}
  - mmap: {proc: p, map: m, anon: true, length: 2}
  - touch: {proc: p, map: m, page: 0, count: 2}
  - mmap: {proc: init, map: big, anon: true, length: 9}
  - munmap: {proc: p, map: m}
"""


@pytest.fixture
def trace() -> Trace:
    return run(load_text(SCENARIO), ModelBackend())


def line(ax: Axes, label: str) -> Line2D:
    (found,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return found


def test_lines_are_the_trace_columns(trace: Trace) -> None:
    pool, cgroups = figure([trace]).axes
    for label in ("Total", "Free", "Rsvd", "Surp"):
        ys = list(line(pool, label).get_ydata())
        assert ys == [s.state[label.lower()] for s in trace.steps]
    assert list(line(pool, "Rsvd").get_ydata()) == [0, 0, 2, 1, 1, 0]
    for name in ("root", "a"):
        for key in ("usage", "rsvd"):
            ys = list(line(cgroups, f"{name} {key}").get_ydata())
            expected = [s.state["cgroups"].get(name, {}).get(key) for s in trace.steps]
            assert [None if y != y else y for y in ys] == expected  # NaN: no cgroup yet
    assert list(line(pool, "Rsvd").get_xdata()) == list(range(len(trace.steps)))


def test_ticks_name_the_steps_and_failures_are_marked(trace: Trace) -> None:
    fig = figure([trace])
    labels = fig.axes[1].get_xticklabels()
    assert [t.get_text() for t in labels] == [tick_label(s) for s in trace.steps]
    assert labels[3].get_text() == "3 touch proc=p map=m page=0 count=2 → SIGBUS"
    assert labels[4].get_text().endswith("→ ENOMEM")
    failed = [n for n, t in enumerate(labels) if t.get_color() == "tab:red"]
    assert failed == [3, 4]
    spans = [p for p in fig.axes[0].patches if p.get_facecolor()[:3] != (1.0, 1.0, 1.0)]
    assert len(spans) == 2


def test_underflow_drawn_negative_and_absent_as_gap() -> None:
    assert plotted((1 << 64) - 2) == -2.0
    assert plotted(7) == 7.0
    assert plotted(None) != plotted(None)


def test_compare_marks_divergent_steps(trace: Trace) -> None:
    steps = list(trace.steps)
    steps[2] = dataclasses.replace(steps[2], state={**steps[2].state, "rsvd": 5})
    other = dataclasses.replace(trace, backend="kernel", steps=steps)
    fig = figure([trace, other])
    pool = fig.axes[0]
    assert list(line(pool, "Rsvd (kernel)").get_ydata())[2] == 5
    assert list(line(pool, "Rsvd (model)").get_ydata())[2] == 2
    assert line(pool, "Rsvd (kernel)").get_linewidth() > line(pool, "Rsvd (model)").get_linewidth()
    assert "1 divergent steps" in pool.get_title()
    hatched = [p for p in pool.patches if p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_x() == pytest.approx(1.5)


def test_files(trace: Trace, tmp_path: Path) -> None:
    save([trace], tmp_path / "p.png")
    save([trace], tmp_path / "p.svg")
    save([trace], tmp_path / "p.html")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert "<svg" in (tmp_path / "p.svg").read_text()
    page = (tmp_path / "p.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<?xml" not in page
    assert "<script" not in page and "@import" not in page
    assert not re.search(r"""(?:href|src)=["'](?!#)|url\((?!#)""", page), "an outside reference"
    assert "fault limit is 1 pages with 1 in use" in page
    with pytest.raises(ValueError, match=re.escape("use one of .png, .svg, .html")):
        save([trace], tmp_path / "p.pdf")


def test_svg_is_reproducible(trace: Trace) -> None:
    assert svg_text(figure([trace])) == svg_text(figure([trace]))


def test_html_compare_table(trace: Trace) -> None:
    steps = list(trace.steps)
    steps[2] = dataclasses.replace(steps[2], state={**steps[2].state, "rsvd": 5})
    other = dataclasses.replace(trace, backend="kernel", steps=steps)
    page = html_page([trace, other], "<svg></svg>")
    assert "<th>model</th><th>kernel</th>" in page
    assert "<td>2 / 5</td>" in page


def test_plot_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)

    def model_as_kernel(policy: str, line: str | None = None) -> Backend:
        backend = ModelBackend()
        backend.name = "kernel"
        return backend

    monkeypatch.setitem(cli.BACKENDS, "kernel", model_as_kernel)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["plot", str(path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.png").stat().st_size > 10_000
    out = tmp_path / "both.html"
    result = CliRunner().invoke(cli.main, ["plot", str(path), "--compare", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "plotted: model 6.18 and kernel 6.18" in out.read_text()
    result = CliRunner().invoke(cli.main, ["plot", str(path), "-o", str(tmp_path / "x.jpg")])
    assert result.exit_code == 2 and "use a name ending in .png, .svg, .html" in result.output


V2 = """\
format: 1
name: plotted-v2
cgroups: v2
memory_accounting: true
pool: {pages: 4}
steps:
  - cgroup: {name: a, limit: 1}
  - spawn: {proc: p, cgroup: a}
  - mmap: {proc: p, map: m, anon: true, length: 2}
  - touch: {proc: p, map: m, page: 0, count: 2}
"""


def test_v2_events_and_memory_are_drawn_where_the_trace_has_them(trace: Trace) -> None:
    v2 = run(load_text(V2), ModelBackend())
    _, cgroups = figure([v2]).axes
    # The second page's fault is refused by a's limit of 1: one max event on a, one page
    # charged to a's memory controller (memory accounting), none to the root's own count.
    assert list(line(cgroups, "a events").get_ydata())[-1] == 1
    assert list(line(cgroups, "a memory").get_ydata())[-1] == 1
    assert list(line(cgroups, "root memory").get_ydata())[-1] == 1  # hierarchical
    _, v1 = figure([trace]).axes
    assert not [ln for ln in v1.get_lines() if ln.get_label().endswith(("events", "memory"))]
