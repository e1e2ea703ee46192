"""Real workloads: recipes for PostgreSQL, QEMU, DPDK and the JVM, pods around them, a
composition format that expands into a scenario, and capacity planning on the model."""

from hugetlbsim.workloads.builder import ScenarioBuilder
from hugetlbsim.workloads.compose import (
           Composition,
           Pod,
           Program,
           load_composition,
           load_composition_text,
)
from hugetlbsim.workloads.expand import Expansion, emit, expand
from hugetlbsim.workloads.plan import Failure, KernelPlan, Plan, Simulation, plan, simulate

__all__ = ["Composition", "Expansion", "Failure", "KernelPlan", "Plan", "Pod", "Program",
           "ScenarioBuilder", "Simulation", "emit", "expand", "load_composition",
           "load_composition_text", "plan", "simulate"]
