"""hugetlbsim: an executable model of Linux HugeTLB reservation accounting.

Layers, bottom up: the reservation map (`resv_map`, `region_store`); the global pool
(`hstate`), hugetlbfs subpools (`subpool`) and hugetlb cgroups (`hugetlb_cgroup`); pages
(`folio`), inodes (`inode`) and mappings (`vma`); the flows that call down into them
(`reserve`, `fault`, `unmap`, `fileops`); the `System` facade (`system`); and on top the
scenario runner, the backends and the CLI.

`__all__` is the stable Python API (docs/api.md): build a scenario (`ScenarioBuilder`, or
`Scenario`/`Step`, or `load`), run it on a backend (`run`, `ModelBackend`, `KernelBackend`),
read the trace (`Run`, `StepRecord`, `compare`), and plan a workload (`load_composition`,
`expand`, `plan`).  Names are imported when first used, so ``import hugetlbsim`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hugetlbsim.backends.kernel import KernelBackend
    from hugetlbsim.backends.model import ModelBackend
    from hugetlbsim.format.loader import ScenarioError, dump_scenario, load, load_text
    from hugetlbsim.format.scenario import Scenario, Step
    from hugetlbsim.runner import Run, run
    from hugetlbsim.trace import StepRecord, Trace, compare
    from hugetlbsim.workloads import (
        Composition,
        Expansion,
        Failure,
        KernelPlan,
        Plan,
        ScenarioBuilder,
        Simulation,
        emit,
        expand,
        load_composition,
        load_composition_text,
        plan,
        simulate,
    )

__version__ = "0.1.0"

_WHERE = {
    "KernelBackend": "hugetlbsim.backends.kernel",
    "ModelBackend": "hugetlbsim.backends.model",
    "ScenarioError": "hugetlbsim.format.loader",
    "dump_scenario": "hugetlbsim.format.loader",
    "load": "hugetlbsim.format.loader",
    "load_text": "hugetlbsim.format.loader",
    "Scenario": "hugetlbsim.format.scenario",
    "Step": "hugetlbsim.format.scenario",
    "Run": "hugetlbsim.runner",
    "run": "hugetlbsim.runner",
    "StepRecord": "hugetlbsim.trace",
    "Trace": "hugetlbsim.trace",
    "compare": "hugetlbsim.trace",
    **dict.fromkeys(("Composition", "Expansion", "Failure", "KernelPlan", "Plan",
                     "ScenarioBuilder", "Simulation", "emit", "expand", "load_composition",
                     "load_composition_text", "plan", "simulate"), "hugetlbsim.workloads"),
}
"""Public name → the module that defines it."""

__all__ = ["Composition", "Expansion", "Failure", "KernelBackend", "KernelPlan",
           "ModelBackend", "Plan", "Run", "Scenario", "ScenarioBuilder", "ScenarioError",
           "Simulation", "Step", "StepRecord", "Trace", "__version__", "compare",
           "dump_scenario", "emit", "expand", "load", "load_composition",
           "load_composition_text", "load_text", "plan", "run", "simulate"]


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    if name not in _WHERE:
        raise AttributeError(f"module 'hugetlbsim' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
