"""Tables for people: a trace step by step, and the steps where two traces differ."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from rich.table import Table
from rich.text import Text

from hugetlbsim.format.loader import short_op
from hugetlbsim.format.scenario import CGROUP_KEYS, CGROUP_V2_KEYS
from hugetlbsim.runner import Run
from hugetlbsim.trace import ABSENT, WATERMARKS, StepDiff, show_value

__all__ = ["cgroup_changes", "diff_table", "trace_table"]

SHOWN_CGROUP_KEYS: Final = (*(k for k in CGROUP_KEYS if k not in WATERMARKS),
                            *(k for k in CGROUP_V2_KEYS if k not in CGROUP_KEYS))


def trace_table(trace: Run) -> Table:
    """One row per step: result, pool counters, changed cgroup counters, failed expectations."""
    table = Table(title=f"{trace.scenario} on {trace.backend} {trace.kernel}")
    for name in ("#", "op", "result", "Total", "Free", "Rsvd", "Surp", "cgroups", "notes"):
        table.add_column(name, justify="right" if name in ("#", "Total", "Free", "Rsvd", "Surp")
                         else "left")
    failures: dict[int, list[str]] = {}
    for failure in trace.failures:
        failures.setdefault(failure.index, []).append(
            f"{failure.key}: expected {show_value(failure.expected)}, "
            f"got {show_value(failure.actual)}")
    before: Mapping[str, Any] | None = None
    for step in trace.steps:
        cgroups = step.state.get("cgroups", {})
        notes = Text("; ".join(failures.get(step.index, [])), style="bold red")
        if step.explain and step.result != "ok":
            notes.append(("  " if notes else "") + step.explain, style="dim")
        pool = (show_value(step.state.get(k, ABSENT)) for k in ("total", "free", "rsvd", "surp"))
        table.add_row(Text(str(step.index)), Text(short_op(step.op, step.args)),
                      Text(step.result), *map(Text, pool), Text(cgroup_changes(before, cgroups)),
                      notes, style="red" if step.index in failures else None)
        before = cgroups
    return table


def cgroup_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> str:
    """``a: usage 0→2 rsvd 2→1``: the counters (not watermarks) that changed, per cgroup;
    for the first step (no ``before``), the counters that are not zero."""
    parts = []
    for name, counters in after.items():
        old = None if before is None else before.get(name)
        if old is None:
            values = " ".join(f"{k}={_limit(k, v)}" for k, v in counters.items()
                              if k in SHOWN_CGROUP_KEYS and v not in (0, None))
            label = name if before is None else f"{name} (new)"
            if values or before is not None:
                parts.append(f"{label}: {values}" if values else label)
            continue
        changed = [f"{k} {_limit(k, old.get(k))}→{_limit(k, v)}" for k, v in counters.items()
                   if k in SHOWN_CGROUP_KEYS and old.get(k) != v]
        if changed:
            parts.append(f"{name}: {' '.join(changed)}")
    parts.extend(f"{name} (gone)" for name in before or {} if name not in after)
    return "\n".join(parts)


def _limit(key: str, value: Any) -> str:
    return "max" if value is None and key.endswith("limit") else show_value(value)


def diff_table(diffs: Sequence[StepDiff]) -> Table:
    """The differing values of each step, model beside kernel."""
    table = Table()
    for name in ("#", "op", "key", "model", "kernel"):
        table.add_column(name, justify="right" if name == "#" else "left")
    for step in diffs:
        for n, difference in enumerate(step.differences):
            cells = (str(step.index) if n == 0 else "", short_op(step.op, step.args) if n == 0
                     else "", difference.key, show_value(difference.a), show_value(difference.b))
            table.add_row(*map(Text, cells), end_section=n == len(step.differences) - 1)
    return table
