"""File-level entry points the ``workload`` and ``plan`` commands call: each reads a
composition, does the work through `expand`, `plan` and `sweep`, and returns text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from hugetlbsim.workloads.compose import load_composition
from hugetlbsim.workloads.expand import emit, expand, pod_limit
from hugetlbsim.workloads.plan import plan, simulate
from hugetlbsim.workloads.report import plan_text, summary_text
from hugetlbsim.workloads.sweep import axis_values, draw, sweep

__all__ = ["emit_file", "plan_files", "summary_file", "sweep_file"]


def emit_file(path: str, line: str | None = None) -> str:
    """The composition's scenario as commented YAML."""
    return emit(expand(load_composition(path), kernel=line))


def summary_file(path: str, line: str | None = None) -> str:
    """Run the composition on the model and summarise it per program."""
    comp = load_composition(path)
    return summary_text(simulate(expand(comp, kernel=line), line, keep_states=True))


def plan_files(paths: Sequence[str], lines: Sequence[str | None], as_json: bool = False) -> str:
    """Plan each composition on each kernel line."""
    plans = [plan(load_composition(p), lines) for p in paths]
    if as_json:
        return json.dumps([p.as_dict() for p in plans])
    return "\n".join(plan_text(p) for p in plans)


def sweep_file(path: str, axis: str, output: str, line: str | None = None) -> None:
    """Sweep the pool or a pod's limit from 0 to 1.25 times what the composition needs (or
    its own setting, whichever is larger) and draw it."""
    comp = load_composition(path)
    if Path(output).suffix not in (".png", ".svg"):
        raise ValueError(f"-o {output}: use a name ending in .png or .svg")
    need = plan(comp, [line]).kernels[0]
    if axis == "pool":
        hi = max(comp.pool, need.min_pool or 0)
    else:
        pod = axis.partition(":")[2]
        own = [pod_limit(comp, p) for p in comp.pods if p.name == pod]
        hi = max([*own, need.min_limits.get(pod, 0)])
    draw(comp, axis, sweep(comp, axis, axis_values(max(4, hi * 5 // 4)), line), output)
