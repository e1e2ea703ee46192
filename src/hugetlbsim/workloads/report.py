"""Plans and workload runs as text for people (the ``plan`` and ``workload`` commands)."""

from __future__ import annotations

from hugetlbsim.workloads.compose import Composition
from hugetlbsim.workloads.expand import pod_limit
from hugetlbsim.workloads.plan import KernelPlan, Plan, Simulation
from hugetlbsim.workloads.units import show_pages

__all__ = ["plan_text", "summary_text"]


def _limit(comp: Composition, pages: int | None) -> str:
    return "max" if pages is None else show_pages(pages, comp.pagesize)


def plan_text(p: Plan) -> str:
    """The plan as a few lines per kernel line."""
    comp = p.composition
    pods = ", ".join(f"{pod.name} ({pod.runtime}, limit "
                     f"{_limit(comp, pod_limit(comp, pod))})" for pod in comp.pods)
    lines = [f"{comp.path}: {comp.name}: pool {show_pages(comp.pool, comp.pagesize)}, "
             f"cgroup {comp.cgroups}" + (f", pods {pods}" if pods else "")]
    for k in p.kernels:
        lines.extend(_kernel_lines(comp, k, len(p.kernels) > 1))
    lines.append(f"  planned in {p.seconds:.2f} s ({p.runs} model runs)")
    return "\n".join(lines)


def _kernel_lines(comp: Composition, k: KernelPlan, many: bool) -> list[str]:
    pre = f"  [{k.line}] " if many else "  "
    out = []
    if k.given.fits:
        out.append(f"{pre}fits: every step succeeds")
    else:
        first, *rest = k.given.failures
        out.append(f"{pre}does not fit: {first.describe()}")
        out.extend(f"{pre}  also: {f.describe()}" for f in rest)
    if k.impossible:
        out.append(f"{pre}no pool or limit makes it fit: {k.impossible[0].describe()}")
        return out
    if k.min_pool is not None:
        out.append(f"{pre}smallest pool: {show_pages(k.min_pool, comp.pagesize)}"
                   + ("" if k.verified else " (not confirmed with the limits below)"))
    for pod in comp.pods:
        if pod.name in k.min_limits:
            what = "max and rsvd.max" if pod.runtime == "runc" else "max"
            out.append(f"{pre}smallest limit for pod {pod.name} ({pod.runtime}, {what}): "
                       f"{show_pages(k.min_limits[pod.name], comp.pagesize)}")
    return out


def summary_text(sim: Simulation) -> str:
    """A workload run: per program, its steps' outcome, then the counters at the end."""
    exp = sim.expansion
    comp = exp.composition
    lines = [f"{comp.path}: {comp.name}: {len(exp.scenario.steps)} steps on the model "
             f"(pool {show_pages(comp.pool, comp.pagesize)})"]
    failed = {f.note.program: f for f in sim.failures}
    for _, prog in comp.all_programs():
        steps = [n for n in exp.notes if n.program == prog.name]
        f = failed.get(prog.name)
        status = "ok" if f is None else f"{f.stage} {f.result}"
        lines.append(f"  {prog.name} ({prog.kind}): {len(steps)} steps, {status}")
        if f is not None:
            lines.append(f"    {f.describe()}")
    if sim.states:
        s = sim.states[-1]
        lines.append(f"  at the end: HugePages_Total {s['total']}, Free {s['free']}, "
                     f"Rsvd {s['rsvd']}, Surp {s['surp']}")
        for pod in comp.pods:
            cg = s["cgroups"].get(f"pod-{pod.name}", {})
            lines.append(f"  pod {pod.name}: usage {cg.get('usage')}, rsvd {cg.get('rsvd')}")
    lines.append(f"  peak need: {show_pages(sim.peak_pool, comp.pagesize)}")
    return "\n".join(lines)
