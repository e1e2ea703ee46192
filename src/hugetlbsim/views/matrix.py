"""The kernel matrix: the same scenarios on several real kernels, where they differ, and
whether the model follows each one.

Each kernel runs every scenario (a batching backend boots once for all of them).  Per
scenario, the kernels' traces are lined up step by step against the first kernel's: the first
step where any kernel differs, and there every counter that differs with each kernel's value.
With model rows, the model at each kernel's line is compared with that kernel's trace.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from rich.text import Text

from hugetlbsim.backends.base import Backend, prepare
from hugetlbsim.format.loader import short_op
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.runner import run
from hugetlbsim.trace import ABSENT, StepDiff, Trace, compare, show_value

__all__ = ["Column", "Matrix", "Row", "markdown", "matrix", "page", "table"]


@dataclass
class Column:
    """One real kernel of the matrix, and the model at its line (if asked for)."""

    label: str
    backend: Backend
    model: Backend | None = None


@dataclass
class Row:
    """One scenario across the kernels."""

    name: str
    traces: list[Trace | str]
    """Per kernel, its trace, or why the scenario did not run there."""
    first: StepDiff | None = None
    """The first step where the kernels differ (the differing kernel's values in `values`)."""
    values: dict[str, list[str]] = field(default_factory=dict)
    """At `first`: counter → each kernel's value, as people read it."""
    model: list[str] = field(default_factory=list)
    """Per kernel: ``same``, ``differs from step N (K steps)`` or why it could not run."""

    @property
    def kernels_differ(self) -> bool:
        return self.first is not None


@dataclass
class Matrix:
    """Every scenario's row, and the kernels' labels."""

    labels: list[str]
    rows: list[Row]
    with_model: bool

    def summary(self) -> str:
        """One line: how many scenarios the kernels disagree on, and how the model follows."""
        differ = sum(r.kernels_differ for r in self.rows)
        text = (f"{len(self.rows)} scenarios on {len(self.labels)} kernels: the kernels differ "
                f"on {differ}")
        if self.with_model:
            follows = [sum(r.model[i] == "same" for r in self.rows)
                       for i in range(len(self.labels))]
            text += "; the model follows " + ", ".join(
                f"{label} on {n}/{len(self.rows)}" for label, n in zip(self.labels, follows,
                                                                      strict=True))
        return text


def _run(scenario: Scenario, backend: Backend) -> Trace | str:
    try:
        return run(scenario, backend)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # one scenario a kernel could not run is a cell, not the end
        return f"could not run: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def matrix(scenarios: Sequence[tuple[str, Scenario]], columns: Sequence[Column],
           progress: Callable[[str], None] = lambda text: None) -> Matrix:
    """Run every scenario on every kernel (and the model at its line) and line them up."""
    traces: list[list[Trace | str]] = []
    models: list[list[Trace | str]] = []
    for column in columns:
        progress(f"running {len(scenarios)} scenarios on {column.label}")
        prepare(column.backend, [s for _, s in scenarios])
        traces.append([_run(s, column.backend) for _, s in scenarios])
        if column.model is not None:
            models.append([_run(s, column.model) for _, s in scenarios])
    rows = []
    for i, (name, _) in enumerate(scenarios):
        row = Row(name, [t[i] for t in traces])
        _first_difference(row, [c.label for c in columns])
        for k, real in enumerate(row.traces):
            if k < len(models):
                row.model.append(_follows(models[k][i], real))
        rows.append(row)
    return Matrix([c.label for c in columns], rows, bool(models))


def _first_difference(row: Row, labels: list[str]) -> None:
    ran = [(label, t) for label, t in zip(labels, row.traces, strict=True)
           if isinstance(t, Trace)]
    if len(ran) < 2:
        return
    base = ran[0][1]
    diffs = [d for _, t in ran[1:] if (d := compare(base, t))]
    if not diffs:
        return
    index = min(d[0].index for d in diffs)
    row.first = next(d[0] for d in diffs if d[0].index == index)
    keys = dict.fromkeys(x.key for d in diffs for s in d if s.index == index
                         for x in s.differences)
    for key in keys:
        row.values[key] = [_value(t, index, key) for t in row.traces]


def _value(trace: Trace | str, index: int, key: str) -> str:
    if not isinstance(trace, Trace):
        return "-"
    path = tuple(key.split("."))  # scenario names never hold a dot
    value: Any = trace.steps[index].observed(path)
    if value is ABSENT:
        return "absent"
    return "present" if len(path) == 2 else show_value(value)


def _follows(model: Trace | str, real: Trace | str) -> str:
    if not isinstance(real, Trace):
        return "-"
    if not isinstance(model, Trace):
        return f"model {model}"
    diffs = compare(model, real)
    if not diffs:
        return "same"
    return f"differs from step {diffs[0].index} ({len(diffs)} steps)"


def table(result: Matrix) -> Table:
    """The matrix for a terminal: a row per scenario, a column per kernel."""
    grid = Table(title=result.summary())
    grid.add_column("scenario")
    grid.add_column("first difference")
    for label in result.labels:
        grid.add_column(label)
    for row in result.rows:
        cells = _cells(row, result)
        grid.add_row(Text(row.name), Text(cells[0]), *map(Text, cells[1:]),
                     style="red" if row.kernels_differ else None)
    return grid


def _cells(row: Row, result: Matrix) -> list[str]:
    """The first-difference cell, then each kernel's cell (values, then the model's verdict)."""
    if row.first is None:
        lead = "kernels agree"
        per = ["" if isinstance(t, Trace) else t for t in row.traces]
    else:
        lead = (f"step {row.first.index} ({short_op(row.first.op, row.first.args)})\n"
                + "\n".join(row.values))
        per = ["\n".join(v[k] for v in row.values.values()) for k in range(len(row.traces))]
    if result.with_model:
        per = [f"{p}\nmodel: {m}".strip() for p, m in zip(per, row.model, strict=True)]
    return [lead, *per]


def markdown(result: Matrix) -> str:
    """The matrix as a Markdown report."""
    out = [f"# Kernel matrix\n\n{result.summary()}.\n",
           "| scenario | first difference | " + " | ".join(result.labels) + " |",
           "|---|---|" + "---|" * len(result.labels)]
    for row in result.rows:
        cells = [c.replace("|", "\\|").replace("\n", "<br>") for c in _cells(row, result)]
        out.append(f"| {row.name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def page(result: Matrix) -> str:
    """The matrix as a standalone HTML page."""
    head = "".join(f"<th>{html.escape(x)}</th>"
                   for x in ("scenario", "first difference", *result.labels))
    body = []
    for row in result.rows:
        style = ' class="differ"' if row.kernels_differ else ""
        cells = "".join(f"<td>{html.escape(c).replace(chr(10), '<br>')}</td>"
                        for c in (row.name, *_cells(row, result)))
        body.append(f"<tr{style}>{cells}</tr>")
    return ("<!doctype html><meta charset=utf-8><title>hugetlbsim kernel matrix</title>"
            "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px;"
            "vertical-align:top;font-size:13px}table{border-collapse:collapse}"
            ".differ td{background:#fff0f0}</style>"
            f"<h1>Kernel matrix</h1><p>{html.escape(result.summary())}.</p>"
            f"<table><tr>{head}</tr>{''.join(body)}</table>\n")
